"""Config section for the semantic cache (owned by cache/).

Per-category policy: a similarity threshold, a TTL, a quota with its eviction
rule, whether the category is cacheable at all, and how far the load-adaptive
policy may loosen the threshold and stretch the TTL when the model serving the
category is overloaded. The default thresholds come from `turnout cache tune`
on cache/data/pairs_dev.jsonl (see cache/README.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CategoryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Cosine similarity a semantic hit needs (embeddings are unit vectors).
    threshold: float = Field(0.9, ge=0.0, le=1.0)
    ttl_s: float = Field(3600.0, gt=0)
    # Max entries per (tenant, category); the eviction rule picks the victim.
    quota: int = Field(10_000, ge=1)
    eviction: Literal["lru", "lfu"] = "lru"
    cacheable: bool = True
    # Adaptive bounds: under full overload the threshold drops to min_threshold
    # and the TTL grows to ttl_s * max_ttl_factor (never further).
    min_threshold: float | None = Field(None, ge=0.0, le=1.0)
    max_ttl_factor: float = Field(2.0, ge=1.0)

    @model_validator(mode="after")
    def _bounds(self) -> CategoryPolicy:
        if self.min_threshold is not None and self.min_threshold > self.threshold:
            raise ValueError("min_threshold must not exceed threshold")
        return self

    @property
    def floor(self) -> float:
        """The loosest threshold the adaptive policy may use (default: 0.04 below)."""
        return self.min_threshold if self.min_threshold is not None else max(self.threshold - 0.04, 0.0)


def _default_categories() -> dict[str, CategoryPolicy]:
    # Thresholds: `turnout cache tune` on cache/data/pairs_dev.jsonl (see cache/README.md).
    # Code and math answers stay valid for long; time-sensitive ones go stale in minutes.
    return {
        "code": CategoryPolicy(threshold=0.84, ttl_s=7 * 86400, quota=20_000, eviction="lfu"),
        "math": CategoryPolicy(threshold=0.85, ttl_s=30 * 86400, quota=20_000, eviction="lfu"),
        "knowledge": CategoryPolicy(threshold=0.87, ttl_s=86400, quota=50_000),
        "chat": CategoryPolicy(threshold=0.76, ttl_s=6 * 3600, quota=20_000),
        "time-sensitive": CategoryPolicy(threshold=0.84, ttl_s=300, quota=5_000, max_ttl_factor=3.0),
    }


class CacheabilityRules(BaseModel):
    """Which requests may be answered from (and stored in) the cache."""

    model_config = ConfigDict(extra="forbid")
    max_temperature: float = Field(0.0, ge=0.0)
    allow_tools: bool = False
    allow_n_above_1: bool = False
    allow_logprobs: bool = False
    # Longest conversation (messages) the cache considers; longer ones are unique.
    max_messages: int = Field(8, ge=1)


class AdaptiveSpec(BaseModel):
    """Load-adaptive policy: hysteresis between overload_at and restore_below."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    overload_at: float = Field(0.85, gt=0)
    restore_below: float = Field(0.6, ge=0)
    # Load at which the loosening reaches its bound.
    saturate_at: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _order(self) -> AdaptiveSpec:
        if not self.restore_below < self.overload_at <= self.saturate_at:
            raise ValueError("need restore_below < overload_at <= saturate_at")
        return self


class HnswSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    m: int = Field(16, ge=4, le=64)
    ef_construction: int = Field(100, ge=10)
    ef_search: int = Field(64, ge=8)
    # Candidates examined per lookup (filtered by context and freshness).
    k: int = Field(8, ge=1, le=64)


class CacheSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    # redis://host:port/db; None keeps documents in process memory.
    redis_url: str | None = None
    key_prefix: str = Field("turnout:cache", min_length=1)
    categories: dict[str, CategoryPolicy] = Field(default_factory=_default_categories)
    # Used when the classifier's label is not a configured category.
    default_category: str = "chat"
    # A .npz classifier, or a JSONL of {"text", "category"} to train on at start-up;
    # None uses the shipped classifier (trained on cache/data/categories.jsonl).
    classifier: str | None = None
    rules: CacheabilityRules = Field(default_factory=CacheabilityRules)
    adaptive: AdaptiveSpec = Field(default_factory=AdaptiveSpec)
    hnsw: HnswSpec = Field(default_factory=HnswSpec)
    # Replica sync stream length kept in Redis (approximate trimming).
    stream_maxlen: int = Field(100_000, ge=100)
    # Redis socket timeout: a slow or dead Redis turns into a miss this fast.
    redis_timeout_s: float = Field(0.25, gt=0)
    # Seconds between reconnect attempts while Redis is down.
    retry_interval_s: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _default_known(self) -> CacheSpec:
        if not self.categories:
            raise ValueError("categories: at least one category is needed")
        if self.default_category not in self.categories:
            raise ValueError(f"default_category {self.default_category!r} is not a configured category")
        return self

    def policy(self, category: str) -> CategoryPolicy:
        return self.categories.get(category) or self.categories[self.default_category]
