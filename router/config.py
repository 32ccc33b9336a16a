"""Config section for the learned router (owned by router/)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from router.latency import LatencyParams
from router.policy import RoutePolicy


class RoutePolicySpec(BaseModel):
    """A tenant's routing policy; every field can be overridden per request."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    # Quality points traded per USD per 1k requests; None takes the artifact's lambda
    # calibrated to match the best single model's quality at the least cost.
    lambda_: float | None = Field(None, alias="lambda", ge=0)
    mu: float = Field(0.1, ge=0, description="quality points per second of TTFT over the SLO")
    slo_s: float = Field(5.0, gt=0, description="time-to-first-token target, seconds")
    min_quality: float = Field(0.0, ge=0, le=1)
    # Empty: every model the tenant may use.
    allowed_models: list[str] = Field(default_factory=list)

    def to_policy(self, calibrated_lambda: float | None = None) -> RoutePolicy:
        lam = self.lambda_ if self.lambda_ is not None else calibrated_lambda
        return RoutePolicy(lam=0.5 if lam is None else float(lam), mu=self.mu, slo_s=self.slo_s,
                           min_quality=self.min_quality, allowed_models=tuple(self.allowed_models))


class LatencySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_s: float = Field(0.05, ge=0)
    prefill_tokens_per_s: float = Field(2000.0, gt=0)
    per_running_s: float = Field(0.02, ge=0)
    kv_wait_s: float = Field(2.0, ge=0)

    def to_params(self) -> LatencyParams:
        return LatencyParams(self.base_s, self.prefill_tokens_per_s, self.per_running_s, self.kv_wait_s)


class RouterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    # Path of a trained artifact; None loads the one shipped in router/data/.
    artifact: str | None = None
    # Learner to use from the artifact; None uses the one chosen at training.
    learner: str | None = None
    default_policy: RoutePolicySpec = Field(default_factory=RoutePolicySpec)
    # Per-tenant policies (tenant name -> policy); other tenants get default_policy.
    tenants: dict[str, RoutePolicySpec] = Field(default_factory=dict)
    # Composition-of-Experts: category -> model, taking precedence over the utility.
    category_rules: dict[str, str] = Field(default_factory=dict)
    # Latency model per live model name; models not listed use `default_latency`.
    default_latency: LatencySpec = Field(default_factory=LatencySpec)
    latency: dict[str, LatencySpec] = Field(default_factory=dict)
    # Predicted quality for a live model whose router_name has no column in the artifact.
    unknown_model_quality: float = Field(0.0, ge=0, le=1)
    # Where POST /v1/feedback stores scores (None: feedback disabled).
    feedback_redis_url: str | None = None
    feedback_prefix: str = "turnout:router:feedback:"

    def policy_spec(self, tenant: str | None) -> RoutePolicySpec:
        return self.tenants.get(tenant or "", self.default_policy)

    def latency_params(self, models: list[str]) -> dict[str, LatencyParams]:
        return {m: self.latency.get(m, self.default_latency).to_params() for m in models}
