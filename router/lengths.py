"""Output-length predictor: how many tokens each model will generate for a query.

The shipped dcrouter data has no answer lengths, so for its models the estimate is
a documented constant (`default_tokens`, 256 by default: a few sentences of
reasoning plus an answer). Where the data records real lengths (`turnout router
probe` stores each answer's completion_tokens), a per-model fit
log(out) = a + b * log(1 + prompt_tokens) is learned by least squares; models with
too few observations fall back to a fit pooled over all models, then to the constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_OBS = 5


def _fit_loglinear(prompt: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    a = np.stack([np.ones_like(prompt), np.log1p(prompt)], axis=1)
    # ridge keeps the slope sane when prompts barely vary (a probe set)
    coef = np.linalg.solve(a.T @ a + 1e-1 * np.eye(2), a.T @ np.log(np.maximum(out, 1.0)))
    return float(coef[0]), float(coef[1])


@dataclass
class LengthModel:
    default_tokens: float = 256.0
    max_tokens: float = 4096.0
    coefs: dict[str, tuple[float, float]] = field(default_factory=dict)
    pooled: tuple[float, float] | None = None

    def fit(self, models: list[str], prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> LengthModel:
        """output_tokens: (n, m) with nan where unknown."""
        seen = ~np.isnan(output_tokens)
        if seen.sum() >= MIN_OBS:
            rows, cols = np.nonzero(seen)
            self.pooled = _fit_loglinear(prompt_tokens[rows], output_tokens[rows, cols])
        for j, m in enumerate(models):
            if seen[:, j].sum() >= MIN_OBS:
                self.coefs[m] = _fit_loglinear(prompt_tokens[seen[:, j]], output_tokens[seen[:, j], j])
        return self

    def source(self, model: str) -> str:
        return "fitted" if model in self.coefs else "pooled" if self.pooled else "default"

    def predict(self, models: list[str], prompt_tokens: float | np.ndarray) -> np.ndarray:
        """(m,) for a scalar prompt length, (n, m) for an array of them."""
        p = np.asarray(prompt_tokens, dtype=np.float64)
        cols = []
        for m in models:
            coef = self.coefs.get(m, self.pooled)
            if coef is None:
                cols.append(np.full(p.shape, self.default_tokens))
            else:
                cols.append(np.clip(np.exp(coef[0] + coef[1] * np.log1p(p)), 1.0, self.max_tokens))
        return np.stack(cols, axis=-1).astype(np.float32)

    def to_json(self) -> dict:
        return {"default_tokens": self.default_tokens, "max_tokens": self.max_tokens,
                "coefs": {m: list(c) for m, c in self.coefs.items()},
                "pooled": list(self.pooled) if self.pooled else None}

    @classmethod
    def from_json(cls, d: dict) -> LengthModel:
        return cls(float(d["default_tokens"]), float(d["max_tokens"]),
                   {m: (float(a), float(b)) for m, (a, b) in d["coefs"].items()},
                   tuple(d["pooled"]) if d.get("pooled") else None)
