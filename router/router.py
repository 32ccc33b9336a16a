"""The Router the gateway calls: predictors + cost + latency + policy, per request.

    router = Router.load(artifact_path, prices, model_map={live: router_name})
    decision = router.choose(embedding, category, prompt_tokens, stats_by_model, policy, question)

Candidates are the keys of `prices` (the live models, or the data's models for
evaluation). A live model reads the quality column named by its `router_name`
(model_map); a model with no column gets `unknown_quality`, so it is only chosen
by a category rule or when nothing else can serve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from replicas.config import ModelSpec
from replicas.stats import ReplicaStats
from router.artifact import Predictors, load_predictors
from router.config import RouterSpec
from router.cost import PER_1K_REQUESTS, price_arrays
from router.latency import LatencyParams, model_ttft
from router.policy import Decision, RoutePolicy, apply_overrides, decide


class Router:
    def __init__(self, predictors: Predictors, prices: Mapping[str, tuple[float, float]],
                 model_map: Mapping[str, str | None] | None = None, learner: str | None = None,
                 latency: Mapping[str, LatencyParams] | None = None, unknown_quality: float = 0.0,
                 category_rules: Mapping[str, str] | None = None) -> None:
        if learner and learner not in predictors.learners:
            raise ValueError(f"learner {learner!r} is not in the artifact ({', '.join(predictors.learners)})")
        self.predictors = predictors
        self.learner = predictors.learners[learner or predictors.chosen]
        self.models = list(prices)
        mapping = dict(model_map or {})
        col = {m: j for j, m in enumerate(predictors.models)}
        self._cols = np.array([col.get(mapping.get(m) or m, -1) for m in self.models])
        self._known = self._cols >= 0
        self._same_columns = bool(np.array_equal(self._cols, np.arange(len(predictors.models))))
        self._unknown_quality = float(unknown_quality)
        self._pin, self._pout = price_arrays(self.models, prices)
        self._lens_names = [mapping.get(m) or m for m in self.models]
        fitted = predictors.lengths.coefs or predictors.lengths.pooled
        self._const_out = None if fitted else predictors.lengths.predict(self._lens_names, 1.0)
        self._latency = {m: (latency or {}).get(m, LatencyParams()) for m in self.models}
        self.category_rules = dict(category_rules or {})

    @classmethod
    def load(cls, artifact_path: str | Path | None, prices: Mapping[str, tuple[float, float]],
             **kwargs) -> Router:
        """Load the artifact (None: the shipped one); raises ArtifactError when missing/corrupt."""
        return cls(load_predictors(artifact_path), prices, **kwargs)

    @classmethod
    def from_config(cls, spec: RouterSpec, models: Sequence[ModelSpec]) -> Router:
        """The live router: candidates are the configured models, priced from their specs."""
        names = [m.name for m in models]
        return cls.load(spec.artifact, {m.name: (m.price_input_per_m, m.price_output_per_m) for m in models},
                        model_map={m.name: m.router_name for m in models}, learner=spec.learner,
                        latency=spec.latency_params(names), unknown_quality=spec.unknown_model_quality,
                        category_rules=spec.category_rules)

    def policy_for(self, spec: RouterSpec, tenant: str | None, overrides: Mapping | None = None,
                   tenant_allowed: Sequence[str] = ()) -> RoutePolicy:
        """The tenant's policy with per-request overrides (extra_body "router"); ValueError on bad
        input. `tenant_allowed` (the gateway tenant's allowed_models) narrows the policy's list."""
        base = spec.policy_spec(tenant).to_policy(self.calibrated_lambda())
        gate = [m for m in tenant_allowed if m in self.models]
        if gate:
            narrowed = tuple(m for m in gate if not base.allowed_models or m in base.allowed_models)
            base = replace(base, allowed_models=narrowed or ("",))
        return apply_overrides(base, overrides)

    def calibrated_lambda(self, target: str = "lambda_at_best") -> float | None:
        """The lambda that matched the best single model's quality on held-out data."""
        return self.predictors.info.get(self.learner.name, {}).get(target)

    def predict_quality(self, embedding: np.ndarray, question: str = "") -> np.ndarray:
        """Text learners read `question` too (without it only their embedding half speaks)."""
        pred = self.learner.predict(np.asarray(embedding, dtype=np.float32).reshape(1, -1), texts=[question])[0]
        if self._same_columns:
            return pred
        return np.where(self._known, pred[np.maximum(self._cols, 0)], self._unknown_quality)

    def predict_cost(self, prompt_tokens: int) -> np.ndarray:
        lengths = self.predictors.lengths
        # with no fitted lengths the estimate is a constant: skip the per-model loop
        out = self._const_out if self._const_out is not None else lengths.predict(self._lens_names, prompt_tokens)
        return (prompt_tokens * self._pin + out * self._pout) * PER_1K_REQUESTS

    def predict_ttft(self, prompt_tokens: int,
                     stats_by_model: Mapping[str, Sequence[ReplicaStats]] | None) -> list[float]:
        if stats_by_model is None:  # offline: load is not part of the question
            return [0.0] * len(self.models)
        return [model_ttft(stats_by_model.get(m), prompt_tokens, self._latency[m]) for m in self.models]

    def choose(self, embedding: np.ndarray, category: str | None, prompt_tokens: int,
               stats_by_model: Mapping[str, Sequence[ReplicaStats]] | None,
               policy: RoutePolicy, question: str = "") -> Decision:
        """Raises router.policy.NoModelAvailable when no allowed model has a replica."""
        prompt_tokens = max(int(prompt_tokens), 1)
        quality = self.predict_quality(embedding, question)
        cost = self.predict_cost(prompt_tokens)
        ttft = self.predict_ttft(prompt_tokens, stats_by_model)
        return decide(self.models, quality.tolist(), cost.tolist(), ttft, policy, category,
                      self.category_rules)
