"""k-nearest-neighbour quality predictor: the scores of the most similar training questions.

Embeddings are unit vectors, so similarity is a dot product. Each model's
prediction averages the neighbours that have a score for that model, weighted by
similarity and shrunk towards the model's mean score (a few neighbours say little).
"""

from __future__ import annotations

import numpy as np

from router.learners import column_prior


class KnnLearner:
    name = "knn"

    def __init__(self, k: int = 32, shrink: float = 2.0) -> None:
        self.k, self.shrink = k, shrink
        self.x = self.scores = self.mask = self.prior = None

    def fit(self, x: np.ndarray, scores: np.ndarray, mask: np.ndarray) -> KnnLearner:
        # float16 halves the artifact; cosine ranks barely move.
        self.x = x.astype(np.float16)
        self._x32 = self.x.astype(np.float32)  # the stored precision, so a reload predicts the same
        self.scores, self.mask = scores.astype(np.float32), mask.astype(bool)
        self.prior = column_prior(self.scores, self.mask)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x).astype(np.float32)
        sims = x @ self._x32.T
        k = min(self.k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(sims, idx, axis=1), 0.0)[:, :, None]  # (n, k, 1)
        m = self.mask[idx]  # (n, k, models)
        num = (w * self.scores[idx] * m).sum(1) + self.shrink * self.prior
        den = (w * m).sum(1) + self.shrink
        return (num / den).astype(np.float32)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"k": self.k, "shrink": self.shrink}, {
            "x": self.x, "scores": self.scores, "mask": self.mask,
        }

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> KnnLearner:
        return cls(**params).fit(arrays["x"], arrays["scores"], arrays["mask"])
