"""Character n-gram TF-IDF plus the embedding, one logistic model per routed model.

MiniLM's sentence embedding blurs surface form: code syntax, lettered answer options,
puzzle templates, numbers. Those say which family a question comes from, and so which
model tends to answer it. Character n-grams (lower-cased, hashed into a fixed number
of features, so there is no vocabulary to store) keep them; the logistic model sees
both. Soft scores train as soft labels (each row counts once as positive with weight s
and once as negative with weight 1 - s); unscored models (probes, feedback) are masked
out per model.

Predicting needs the question text as well as its embedding. Without the text (an
empty string) only the embedding half of the model speaks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from router.learners.ngrams import BUCKETS, distinct_grams, tfidf_dot, tfidf_row, warm_up


class Tfidf:
    """Sublinear TF x smoothed IDF over hashed n-grams, rows L2-normalised; n-grams seen
    in fewer than min_df training questions get no weight."""

    def __init__(self, idf: np.ndarray, lo: int, hi: int) -> None:
        self.idf = np.asarray(idf, dtype=np.float32)
        self.lo, self.hi = lo, hi

    @classmethod
    def fit(cls, texts: Sequence[str], lo: int, hi: int, min_df: int) -> Tfidf:
        df = np.zeros(BUCKETS, np.int64)
        for t in texts:
            df[distinct_grams(t, lo, hi)] += 1
        n = len(texts)
        idf = np.where(df >= min_df, np.log((1 + n) / (1 + df)) + 1.0, 0.0)
        return cls(idf, lo, hi)

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(indices, values) of one text's normalised TF-IDF vector."""
        return tfidf_row(text, self.lo, self.hi, self.idf)

    def matrix(self, texts: Sequence[str]):
        from scipy.sparse import csr_matrix

        rows = [self.row(t) for t in texts]
        indptr = np.cumsum([0] + [len(i) for i, _ in rows])
        idx = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, np.int64)
        val = np.concatenate([v for _, v in rows]) if rows else np.zeros(0, np.float32)
        out = csr_matrix((val, idx, indptr), shape=(len(texts), BUCKETS))
        out.sort_indices()  # rows list their n-grams in first-seen order
        return out


class TextLearner:
    name = "text"

    def __init__(self, c: float = 0.3, lo: int = 2, hi: int = 5, min_df: int = 2) -> None:
        self.c, self.lo, self.hi, self.min_df = c, lo, hi, min_df
        self.tfidf: Tfidf | None = None
        self.w_text = self.w_emb = self.bias = None

    def fit(self, x: np.ndarray, scores: np.ndarray, mask: np.ndarray,
            texts: Sequence[str] | None = None) -> TextLearner:
        from scipy.sparse import csr_matrix, hstack, vstack
        from sklearn.linear_model import LogisticRegression

        if texts is None or len(texts) != len(x):
            raise ValueError("the text learner needs every training question's text")
        self.tfidf = Tfidf.fit(texts, self.lo, self.hi, self.min_df)
        feats = hstack([self.tfidf.matrix(texts), csr_matrix(x.astype(np.float32))]).tocsr()
        m, v = scores.shape[1], BUCKETS
        self.w_text = np.zeros((v, m), np.float32)
        self.w_emb = np.zeros((x.shape[1], m), np.float32)
        self.bias = np.zeros(m, np.float32)
        for j in range(m):
            rows = np.nonzero(mask[:, j])[0]
            s = scores[rows, j].astype(np.float64)
            if len(rows) == 0 or s.min() == s.max():
                # nothing to separate: a constant prediction at the observed mean
                p = float(np.clip(s.mean() if len(rows) else 0.5, 1e-4, 1 - 1e-4))
                self.bias[j] = math.log(p / (1 - p))
                continue
            f = feats[rows]
            clf = LogisticRegression(C=self.c, max_iter=2000)
            clf.fit(vstack([f, f]), np.r_[np.ones(len(rows)), np.zeros(len(rows))], sample_weight=np.r_[s, 1 - s])
            self.w_text[:, j], self.w_emb[:, j] = clf.coef_[0, :v], clf.coef_[0, v:]
            self.bias[j] = clf.intercept_[0]
        return self

    def predict(self, x: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        x = np.atleast_2d(x).astype(np.float32)
        z = x @ self.w_emb + self.bias
        for r, text in enumerate(texts or ()):
            if text:
                z[r] += tfidf_dot(text, self.tfidf.lo, self.tfidf.hi, self.tfidf.idf, self.w_text)
        return (0.5 + 0.5 * np.tanh(0.5 * z)).astype(np.float32, copy=False)  # the logistic, overflow-free

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        params = {"c": self.c, "lo": self.lo, "hi": self.hi, "min_df": self.min_df}
        rows = np.nonzero(self.tfidf.idf)[0].astype(np.int32)  # only n-grams seen in training carry weight
        return params, {"rows": rows, "idf": self.tfidf.idf[rows], "w_text": self.w_text[rows].astype(np.float16),
                        "w_emb": self.w_emb, "bias": self.bias}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], siblings=None) -> TextLearner:
        self = cls(**params)
        rows = arrays["rows"].astype(np.int64)
        idf = np.zeros(BUCKETS, np.float32)
        idf[rows] = arrays["idf"]
        self.tfidf = Tfidf(idf, self.lo, self.hi)
        self.w_text = np.zeros((BUCKETS, len(arrays["bias"])), np.float32)
        self.w_text[rows] = arrays["w_text"]
        self.w_emb, self.bias = arrays["w_emb"].astype(np.float32), arrays["bias"].astype(np.float32)
        warm_up()
        return self
