"""k-nearest-neighbour quality predictor: the scores of the most similar training questions.

Embeddings are unit vectors, so similarity is a dot product. Each model's
prediction averages the neighbours that have a score for that model, weighted by
similarity and shrunk towards the model's mean score (a few neighbours say little).

Neighbours are searched in the training embeddings' top principal axes (64 of 384
by default): on the dcrouter data that costs 0.001 of out-of-fold AIQ and makes an
exact scan of 5.5k questions ~3x cheaper than HNSW over the full vectors (the
decision has a 0.5 ms budget). Above HNSW_ABOVE training questions the neighbours
come from an HNSW index over the projected vectors (hnswlib, built single-threaded
with a fixed seed, so a reloaded artifact finds the same neighbours).
"""

from __future__ import annotations

import numpy as np

from router.learners import column_prior

HNSW_ABOVE = 16384


def principal_axes(x: np.ndarray, dims: int) -> np.ndarray | None:
    """(d, dims) projection onto x's top right singular vectors; None keeps every dimension."""
    if not dims or dims >= min(x.shape):
        return None
    return np.linalg.svd(x, full_matrices=False)[2][:dims].T.astype(np.float32).copy()


class KnnLearner:
    name = "knn"

    def __init__(self, k: int = 32, shrink: float = 2.0, ef: int = 96, dims: int = 64) -> None:
        self.k, self.shrink, self.ef, self.dims = k, shrink, ef, dims
        self.proj: np.ndarray | None = None
        self.xp = self.scores = self.mask = self.prior = None
        self._index = None

    def fit(self, x: np.ndarray, scores: np.ndarray, mask: np.ndarray, texts=None) -> KnnLearner:
        x = np.asarray(x, dtype=np.float32)
        self.proj = principal_axes(x, self.dims)
        return self._set(self._project(x), scores, mask)

    def _project(self, x: np.ndarray) -> np.ndarray:
        return x if self.proj is None else x @ self.proj

    def _set(self, xp: np.ndarray, scores: np.ndarray, mask: np.ndarray) -> KnnLearner:
        # float16 halves the artifact; cosine ranks barely move.
        self.xp = xp.astype(np.float16)
        self._xp32 = self.xp.astype(np.float32)  # the stored precision, so a reload predicts the same
        self.scores, self.mask = scores.astype(np.float32), mask.astype(bool)
        self.prior = column_prior(self.scores, self.mask)
        self._shrunk_prior = (self.shrink * self.prior).astype(np.float32)
        # masked scores beside the mask: one gather and one weighted sum give numerator and weight
        self._stacked = np.concatenate([self.scores * self.mask, self.mask.astype(np.float32)], axis=1)
        self._index = self._build_index() if len(xp) > HNSW_ABOVE else None
        return self

    def _build_index(self):
        import hnswlib

        index = hnswlib.Index(space="ip", dim=self._xp32.shape[1])
        index.init_index(max_elements=len(self._xp32), ef_construction=100, M=16, random_seed=0)
        index.set_num_threads(1)
        index.add_items(self._xp32, np.arange(len(self._xp32)))
        index.set_ef(max(self.ef, self.k))
        return index

    def _neighbours(self, xp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = min(self.k, len(self._xp32))
        if self._index is not None:
            idx, dist = self._index.knn_query(xp, k=k)
            return idx.astype(np.int64), 1.0 - dist  # hnswlib's "ip" distance is 1 - dot
        sims = xp @ self._xp32.T
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        return idx, sims[np.arange(len(sims))[:, None], idx]

    def predict(self, x: np.ndarray, texts=None) -> np.ndarray:
        idx, sims = self._neighbours(self._project(np.atleast_2d(x).astype(np.float32, copy=False)))
        w = np.maximum(sims, 0.0).astype(np.float32, copy=False)
        both = np.matmul(w[:, None, :], self._stacked[idx])[:, 0]  # (n, 2 * models)
        m = self.scores.shape[1]
        return (both[:, :m] + self._shrunk_prior) / (both[:, m:] + np.float32(self.shrink))

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {"xp": self.xp, "scores": self.scores, "mask": self.mask}
        if self.proj is not None:
            arrays["proj"] = self.proj
        return {"k": self.k, "shrink": self.shrink, "ef": self.ef, "dims": self.dims}, arrays

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], siblings=None) -> KnnLearner:
        self = cls(**params)
        self.proj = arrays.get("proj")
        return self._set(arrays["xp"], arrays["scores"], arrays["mask"])
