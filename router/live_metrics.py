"""Router metrics for the live system (router/metrics.py holds the offline eval metrics).

Money saved is derived in PromQL as baseline - realised, where the baseline is what the
always-best model would have charged for the same tokens (counters never go negative).
"""

from __future__ import annotations

from replicas.telemetry import LATENCY_BUCKETS_S, counter, histogram

DECISIONS = counter("turnout_router_decisions", "Routing decisions, by chosen model and category.",
                    ("model", "category", "tenant", "mode"))
PREDICTED_COST = counter("turnout_router_predicted_cost_usd",
                         "Cost the router predicted for its choices (USD).", ("model",))
REALISED_COST = counter("turnout_router_realised_cost_usd",
                        "Cost of the routed requests at the chosen model's prices (USD).", ("model",))
BASELINE_COST = counter("turnout_router_baseline_cost_usd",
                        "Cost the same requests would have had on the always-best model (USD).",
                        ("model",))
DECISION_LATENCY = histogram("turnout_router_decision_latency_seconds",
                             "Time to choose a model (predictors + policy).", (),
                             LATENCY_BUCKETS_S[:8])


def record_decision(model: str, category: str, tenant: str, predicted_cost_usd: float,
                    latency_s: float | None = None, mode: str = "auto") -> None:
    """One routing decision (`mode`: "auto" routed, "explicit" named by the client)."""
    DECISIONS.inc(model=model, category=category, tenant=tenant, mode=mode)
    PREDICTED_COST.inc(predicted_cost_usd, model=model)
    DECISION_LATENCY.observe(latency_s)


def record_outcome(model: str, realised_cost_usd: float, baseline_cost_usd: float) -> None:
    """After the response: what it cost, and what always-best would have cost."""
    REALISED_COST.inc(realised_cost_usd, model=model)
    BASELINE_COST.inc(baseline_cost_usd, model=model)


def request_cost_usd(prompt_tokens: int, completion_tokens: int, price_input_per_m: float,
                     price_output_per_m: float) -> float:
    return (prompt_tokens * price_input_per_m + completion_tokens * price_output_per_m) / 1e6
