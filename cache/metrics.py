"""Semantic cache metrics: lookups, hits, misses, latency, entries, evictions, Redis failures."""

from __future__ import annotations

from replicas.telemetry import LATENCY_BUCKETS_S, counter, gauge, histogram

LOOKUPS = counter("turnout_cache_lookups", "Cache lookups.", ("tenant", "category"))
HITS = counter("turnout_cache_hits", "Cache hits, by tier (exact or semantic).",
               ("tenant", "category", "tier"))
MISSES = counter("turnout_cache_misses", "Cache lookups that found nothing.", ("tenant", "category"))
LOOKUP_LATENCY = histogram("turnout_cache_lookup_latency_seconds",
                           "Cache lookup time (exact + semantic tiers).", ("category",),
                           (0.0005, 0.001,) + LATENCY_BUCKETS_S[:8])
STORES = counter("turnout_cache_stores", "Answers stored in the cache.", ("tenant", "category"))
ENTRIES = gauge("turnout_cache_entries", "Live cache entries.", ("tenant", "category"))
EVICTIONS = counter("turnout_cache_evictions", "Entries removed, by reason (quota, expired, invalidated).",
                    ("category", "reason"))
REDIS_FAILURES = counter("turnout_cache_redis_failures", "Redis operations that failed.",
                         ("operation",))
THRESHOLD = gauge("turnout_cache_similarity_threshold",
                  "Similarity threshold in force (moves under the load-adaptive policy).",
                  ("category",))


def record_lookup(tenant: str, category: str, hit_tier: str | None, latency_s: float) -> None:
    """One lookup; `hit_tier` is "exact", "semantic" or None for a miss."""
    LOOKUPS.inc(tenant=tenant, category=category)
    if hit_tier:
        HITS.inc(tenant=tenant, category=category, tier=hit_tier)
    else:
        MISSES.inc(tenant=tenant, category=category)
    LOOKUP_LATENCY.observe(latency_s, category=category)


def record_store(tenant: str, category: str) -> None:
    STORES.inc(tenant=tenant, category=category)


def record_entries(entries: dict[tuple[str, str], int]) -> None:
    """Entry counts per (tenant, category); call periodically (gauges lapse otherwise)."""
    for (tenant, category), n in entries.items():
        ENTRIES.set(n, tenant=tenant, category=category)


def record_evictions(category: str, reason: str, count: int = 1) -> None:
    EVICTIONS.inc(count, category=category, reason=reason)


def record_redis_failure(operation: str) -> None:
    REDIS_FAILURES.inc(operation=operation)


def record_threshold(category: str, threshold: float) -> None:
    THRESHOLD.set(threshold, category=category)
