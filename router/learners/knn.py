"""k-nearest-neighbour quality predictor: the scores of the most similar training questions.

Embeddings are unit vectors, so similarity is a dot product. Each model's
prediction averages the neighbours that have a score for that model, weighted by
similarity and shrunk towards the model's mean score (a few neighbours say little).

Above a few thousand training questions the neighbours come from an HNSW index
(hnswlib, built single-threaded with a fixed seed, so a reloaded artifact finds
the same neighbours): a brute-force scan reads megabytes per query, and on a
busy host its p99 is a scheduler tick (~4 ms) against ~0.2 ms for HNSW.
"""

from __future__ import annotations

import numpy as np

from router.learners import column_prior

HNSW_ABOVE = 2048


class KnnLearner:
    name = "knn"

    def __init__(self, k: int = 32, shrink: float = 2.0, ef: int = 96) -> None:
        self.k, self.shrink, self.ef = k, shrink, ef
        self.x = self.scores = self.mask = self.prior = None
        self._index = None

    def fit(self, x: np.ndarray, scores: np.ndarray, mask: np.ndarray, texts=None) -> KnnLearner:
        # float16 halves the artifact; cosine ranks barely move.
        self.x = x.astype(np.float16)
        self._x32 = self.x.astype(np.float32)  # the stored precision, so a reload predicts the same
        self.scores, self.mask = scores.astype(np.float32), mask.astype(bool)
        self.prior = column_prior(self.scores, self.mask)
        self._index = self._build_index() if len(x) > HNSW_ABOVE else None
        return self

    def _build_index(self):
        import hnswlib

        index = hnswlib.Index(space="ip", dim=self._x32.shape[1])
        index.init_index(max_elements=len(self._x32), ef_construction=100, M=16, random_seed=0)
        index.set_num_threads(1)
        index.add_items(self._x32, np.arange(len(self._x32)))
        index.set_ef(max(self.ef, self.k))
        return index

    def _neighbours(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = min(self.k, len(self._x32))
        if self._index is not None:
            idx, dist = self._index.knn_query(x, k=k)
            return idx.astype(np.int64), 1.0 - dist  # hnswlib's "ip" distance is 1 - dot
        sims = x @ self._x32.T
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        return idx, np.take_along_axis(sims, idx, axis=1)

    def predict(self, x: np.ndarray, texts=None) -> np.ndarray:
        idx, sims = self._neighbours(np.atleast_2d(x).astype(np.float32))
        w = np.maximum(sims, 0.0)[:, :, None]  # (n, k, 1)
        m = self.mask[idx]  # (n, k, models)
        num = (w * self.scores[idx] * m).sum(1) + self.shrink * self.prior
        den = (w * m).sum(1) + self.shrink
        return (num / den).astype(np.float32)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"k": self.k, "shrink": self.shrink, "ef": self.ef}, {
            "x": self.x, "scores": self.scores, "mask": self.mask,
        }

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], siblings=None) -> KnnLearner:
        return cls(**params).fit(arrays["x"], arrays["scores"], arrays["mask"])
