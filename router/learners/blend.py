"""The mean of several learners' predictions.

Neighbours and a linear model on text make different mistakes: the kNN average is
smooth within a topic, the logistic model keys on surface form. Averaging their
predicted scores routes better than either on held-out data (see router/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class BlendLearner:
    name = "blend"

    def __init__(self, parts: Sequence[str] = ("knn", "text"), part_params: dict | None = None,
                 learners: Sequence | None = None) -> None:
        from router.learners import make_learner

        self.parts = list(parts)
        self.part_params = {p: dict((part_params or {}).get(p, {})) for p in self.parts}
        # Given fitted learners that live beside it (training, an artifact's siblings), the
        # artifact stores those once and this blend by their names only.
        self.shared = learners is not None
        self.learners = list(learners) if learners is not None else [
            make_learner(p, **self.part_params[p]) for p in self.parts]

    @classmethod
    def of(cls, learners: dict) -> BlendLearner:
        return cls(list(learners), learners=list(learners.values()))

    def fit(self, x: np.ndarray, scores: np.ndarray, mask: np.ndarray,
            texts: Sequence[str] | None = None) -> BlendLearner:
        for lr in self.learners:
            lr.fit(x, scores, mask, texts=texts)
        return self

    def predict(self, x: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        return self.combine([lr.predict(x, texts=texts) for lr in self.learners])

    @staticmethod
    def combine(parts: Sequence[np.ndarray]) -> np.ndarray:
        """The blend of its parts' predictions (an evaluation that has them already
        need not predict again)."""
        out = np.array(parts[0], dtype=np.float32)
        for p in parts[1:]:
            out += p
        return out / np.float32(len(parts))

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        if self.shared:
            return {"parts": self.parts, "shared": True}, {}
        params, arrays = {"parts": self.parts, "part_params": {}}, {}
        for p, lr in zip(self.parts, self.learners, strict=True):
            params["part_params"][p], own = lr.state()
            arrays.update({f"{p}.{k}": v for k, v in own.items()})
        return params, arrays

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray], siblings: dict | None = None) -> BlendLearner:
        from router.learners import learner_from_state

        if params.get("shared"):
            return cls.of({p: (siblings or {})[p] for p in params["parts"]})
        self = cls(params["parts"], params["part_params"])
        self.learners = [learner_from_state(p, self.part_params[p],
                                            {k.split(".", 1)[1]: v for k, v in arrays.items()
                                             if k.startswith(p + ".")})
                         for p in self.parts]
        return self
