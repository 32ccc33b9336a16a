"""Shared helpers for the cache tests (not a test module)."""

from __future__ import annotations

import uuid

import numpy as np

from cache.config import CacheSpec, CategoryPolicy
from cache.keys import cache_params, request_key
from cache.semantic import SemanticCache

REDIS = "redis://127.0.0.1:6379/0"


def unit(seed: int, dim: int = 384) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, sim: float, seed: int = 99) -> np.ndarray:
    """A unit vector with cosine similarity `sim` to unit vector v."""
    r = unit(seed)
    r = r - (r @ v) * v
    r /= np.linalg.norm(r)
    return (sim * v + np.sqrt(1 - sim * sim) * r).astype(np.float32)


def body(text: str, model: str = "auto", **kw) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0} | kw


def keyed(text: str, model: str = "auto", **kw) -> tuple[dict, dict]:
    b = body(text, model, **kw)
    return request_key(b), cache_params(b)


def answer(text: str, model: str = "m1") -> dict:
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


def spec(redis_url: str | None = REDIS, **cats: CategoryPolicy) -> CacheSpec:
    categories = {"chat": CategoryPolicy(threshold=0.9), "code": CategoryPolicy(threshold=0.95)}
    categories.update(cats)
    return CacheSpec(enabled=True, redis_url=redis_url, categories=categories, retry_interval_s=0.2)


def prefix() -> str:
    return f"turnout-test:{uuid.uuid4().hex[:10]}"


async def make(s: CacheSpec, pfx: str) -> SemanticCache:
    c = SemanticCache.from_spec(s, key_prefix=pfx)
    await c.start()
    return c


async def wipe(url: str, pfx: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in r.scan_iter(match=f"{pfx}:*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()
