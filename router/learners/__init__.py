"""Quality predictors: an embedding in, one predicted score in [0, 1] per model out.

Every learner fits on a score matrix with a mask (records may score only some
models), predicts with numpy alone (torch and scikit-learn are needed only to
train), and saves itself as JSON-able params plus named numpy arrays (no pickle).
Learners get the question texts beside the embeddings; `text` (and so `blend`)
reads them, the others ignore them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Learner(Protocol):
    name: str

    def fit(self, x: np.ndarray, scores: np.ndarray, mask: np.ndarray,
            texts: Sequence[str] | None = None) -> Learner: ...

    def predict(self, x: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray: ...

    def state(self) -> tuple[dict, dict[str, np.ndarray]]: ...


def _registry() -> dict[str, type]:
    from router.learners.blend import BlendLearner
    from router.learners.knn import KnnLearner
    from router.learners.mf import MfLearner
    from router.learners.mlp import MlpLearner
    from router.learners.text import TextLearner

    return {"knn": KnnLearner, "mf": MfLearner, "mlp": MlpLearner, "logistic": MlpLearner,
            "text": TextLearner, "blend": BlendLearner}


LEARNERS = ("knn", "mf", "mlp", "logistic", "text", "blend")


def make_learner(name: str, **params) -> Learner:
    if name not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}; known: {', '.join(LEARNERS)}")
    if name == "logistic":
        params = {"hidden": 0, **params}
    learner = _registry()[name](**params)
    learner.name = name
    return learner


def learner_from_state(name: str, params: dict, arrays: dict[str, np.ndarray],
                       siblings: dict[str, Learner] | None = None) -> Learner:
    """`siblings`: the artifact's other learners (a blend may be built from them)."""
    learner = _registry()[name].from_state(params, arrays, siblings)
    learner.name = name
    return learner


def column_prior(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean observed score per model (0.5 for a model with no data)."""
    counts = mask.sum(0)
    return np.where(counts > 0, (scores * mask).sum(0) / np.maximum(counts, 1), 0.5).astype(np.float32)
