"""Pure policy functions: cacheability, and the load-adaptive threshold and TTL.

No I/O here: the live cache, the tests and simulators call the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

from cache.config import AdaptiveSpec, CacheabilityRules, CategoryPolicy


@dataclass(frozen=True)
class EffectivePolicy:
    threshold: float
    ttl_s: float
    level: float  # 0 = configured values, 1 = at the adaptive bounds


def cacheable(params: dict, policy: CategoryPolicy, rules: CacheabilityRules,
              messages: int = 1) -> tuple[bool, str]:
    """Whether a request may be served from / stored into the cache, and why not."""
    if params.get("cache") is False:
        return False, "client opted out"
    if not policy.cacheable:
        return False, "category not cacheable"
    temp = params.get("temperature")
    temp = 1.0 if temp is None else float(temp)  # OpenAI's default temperature is 1
    if temp > rules.max_temperature:
        return False, "temperature above limit"
    if not rules.allow_tools and (params.get("tools") or params.get("functions")):
        return False, "tools"
    if not rules.allow_n_above_1 and ((params.get("n") or 1) > 1 or (params.get("best_of") or 1) > 1):
        return False, "n > 1"
    if not rules.allow_logprobs and (params.get("logprobs") or params.get("top_logprobs")):
        return False, "logprobs"
    if messages > rules.max_messages:
        return False, "conversation too long"
    return True, ""


def next_level(prev: float, load: float, spec: AdaptiveSpec) -> float:
    """Adaptation level for a category from its model's load, with hysteresis.

    Overload starts at `overload_at`; once on, it stays on until load falls to
    `restore_below`. While on, the level grows linearly from restore_below to
    saturate_at (so it never jumps to 0 at the moment overload begins is
    detected, and falls back smoothly as load drops).
    """
    if not spec.enabled:
        return 0.0
    overloaded = load >= spec.overload_at or (prev > 0.0 and load > spec.restore_below)
    if not overloaded:
        return 0.0
    span = spec.saturate_at - spec.restore_below
    return min(max((load - spec.restore_below) / span, 0.0), 1.0)


def effective(policy: CategoryPolicy, level: float) -> EffectivePolicy:
    """Loosen the threshold towards its floor and stretch the TTL towards its bound."""
    threshold = policy.threshold - level * (policy.threshold - policy.floor)
    ttl = policy.ttl_s * (1.0 + level * (policy.max_ttl_factor - 1.0))
    return EffectivePolicy(threshold=threshold, ttl_s=ttl, level=level)


def category_load(served: dict[str, float], load_by_model: dict[str, float]) -> float:
    """A category's load: its models' loads weighted by how often each answered it.

    With no observations yet, the busiest model stands in (be safe, not sorry).
    """
    known = {m: w for m, w in served.items() if m in load_by_model and w > 0}
    if not known:
        return max(load_by_model.values(), default=0.0)
    total = sum(known.values())
    return sum(load_by_model[m] * w for m, w in known.items()) / total


def load_from_stats(stats: list) -> dict[str, float]:
    """Model load from replica stats: mean KV usage plus what the queue needs (1.0 = full)."""
    per: dict[str, list[float]] = {}
    for s in stats:
        total = max(s.kv_blocks_total, 1)
        per.setdefault(s.model, []).append((s.kv_blocks_used + s.waiting_blocks_needed) / total)
    return {m: sum(v) / len(v) for m, v in per.items()}
