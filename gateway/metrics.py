"""Gateway metrics: requests, errors, latency histograms per model and tenant, cache hits.

Labels carry the tenant's name, never a key. `model` is the model that served the
request ("" when it failed before one was chosen).
"""

from __future__ import annotations

from replicas.telemetry import TOKEN_LATENCY_BUCKETS_S, counter, histogram

REQUESTS = counter("turnout_gateway_requests", "Requests answered by the gateway, by HTTP status.",
                   ("model", "tenant", "endpoint", "status"))
ERRORS = counter("turnout_gateway_errors", "Requests that ended in an error, by status and OpenAI code.",
                 ("model", "tenant", "status", "code"))
TTFT = histogram("turnout_gateway_time_to_first_token_seconds",
                 "Time from request arrival to the first token (or cached answer).",
                 ("model", "tenant"))
TPOT = histogram("turnout_gateway_time_per_output_token_seconds",
                 "Mean time between output tokens after the first, per request.",
                 ("model", "tenant"), TOKEN_LATENCY_BUCKETS_S)
LATENCY = histogram("turnout_gateway_request_latency_seconds",
                    "End-to-end request latency (arrival to last byte).", ("model", "tenant"))
PROMPT_TOKENS = counter("turnout_gateway_prompt_tokens", "Prompt tokens of answered requests.",
                        ("model", "tenant"))
COMPLETION_TOKENS = counter("turnout_gateway_completion_tokens",
                            "Generated tokens of answered requests.", ("model", "tenant"))
CACHE_HIT_RESPONSES = counter("turnout_gateway_cache_hit_responses",
                              "Responses served from the semantic cache (no engine touched).",
                              ("model", "tenant", "category", "tier"))
FAILOVERS = counter("turnout_gateway_replica_failovers",
                    "Requests whose replica died under them: retried elsewhere (nothing streamed "
                    "yet), resumed elsewhere (tokens sent), or failed after the last retry.",
                    ("model", "outcome"))


def time_per_output_token(ttft_s: float, latency_s: float, completion_tokens: int) -> float | None:
    """Mean inter-token time after the first token; None with fewer than two tokens."""
    if completion_tokens < 2 or latency_s < ttft_s:
        return None
    return (latency_s - ttft_s) / (completion_tokens - 1)


def record_request(model: str, tenant: str, endpoint: str, *, ttft_s: float | None,
                   latency_s: float, prompt_tokens: int = 0, completion_tokens: int = 0,
                   status: int = 200) -> None:
    """A request answered by a model (call once, when its last byte is sent)."""
    REQUESTS.inc(model=model, tenant=tenant, endpoint=endpoint, status=status)
    LATENCY.observe(latency_s, model=model, tenant=tenant)
    if ttft_s is not None:
        TTFT.observe(ttft_s, model=model, tenant=tenant)
        TPOT.observe(time_per_output_token(ttft_s, latency_s, completion_tokens),
                     model=model, tenant=tenant)
    PROMPT_TOKENS.inc(prompt_tokens, model=model, tenant=tenant)
    COMPLETION_TOKENS.inc(completion_tokens, model=model, tenant=tenant)


def record_cache_hit(model: str, tenant: str, category: str, tier: str, latency_s: float) -> None:
    """A request answered from the cache (`tier`: "exact" or "semantic")."""
    REQUESTS.inc(model=model, tenant=tenant, endpoint="cache", status=200)
    CACHE_HIT_RESPONSES.inc(model=model, tenant=tenant, category=category, tier=tier)
    LATENCY.observe(latency_s, model=model, tenant=tenant)
    TTFT.observe(latency_s, model=model, tenant=tenant)


def record_error(model: str, tenant: str, endpoint: str, status: int, code: str | None) -> None:
    """A request that failed (bad input, unknown model, timeout, engine error)."""
    REQUESTS.inc(model=model, tenant=tenant, endpoint=endpoint, status=status)
    ERRORS.inc(model=model, tenant=tenant, status=status, code=code or "")


def record_failover(model: str, outcome: str) -> None:
    """`outcome`: "retried", "resumed" or "exhausted"."""
    FAILOVERS.inc(model=model, outcome=outcome)
