"""Feedback storage: user scores of routed answers, kept in Redis for the next training run.

The gateway calls `remember` when it answers an auto-routed request (response id,
tenant, model, question) and `add_score` on POST /v1/feedback. `training_rows`
turns scored responses into training records ({"question", "scores": {model: s}}),
with live model names mapped to their router_name. The question text is kept so
training can embed it again (the embedding model may change between runs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import redis

DEFAULT_PREFIX = "turnout:router:feedback:"
DEFAULT_TTL_S = 30 * 24 * 3600


class FeedbackError(ValueError):
    """Bad feedback (unknown response, wrong tenant, score out of range); str() is one line."""


class FeedbackStore:
    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.prefix, self.ttl_s = prefix, ttl_s

    def _key(self, response_id: str) -> str:
        return f"{self.prefix}resp:{response_id}"

    @property
    def _scored(self) -> str:
        return f"{self.prefix}scored"

    def remember(self, response_id: str, tenant: str, model: str, question: str) -> None:
        key = self._key(response_id)
        self.redis.hset(key, mapping={"tenant": tenant, "model": model, "question": question,
                                      "created": time.time()})
        self.redis.expire(key, self.ttl_s)

    def add_score(self, response_id: str, score: float, tenant: str) -> None:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
                or not 0.0 <= score <= 1.0:
            raise FeedbackError("score must be a number in [0, 1]")
        key = self._key(response_id)
        owner = self.redis.hget(key, "tenant")
        if owner is None or owner != tenant:  # another tenant's response looks unknown too
            raise FeedbackError(f"unknown response id {response_id!r}")
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"score": float(score), "scored_at": time.time()})
        pipe.sadd(self._scored, response_id)
        pipe.execute()

    def get(self, response_id: str) -> dict[str, str]:
        return self.redis.hgetall(self._key(response_id))

    def training_rows(self, model_map: Mapping[str, str | None] | None = None) -> list[dict]:
        rows = []
        for rid in sorted(self.redis.smembers(self._scored)):
            doc = self.redis.hgetall(self._key(rid))
            if "score" not in doc:  # expired since it was scored
                continue
            name = (model_map or {}).get(doc["model"]) or doc["model"]
            rows.append({"question": doc["question"], "scores": {name: float(doc["score"])},
                         "response_id": rid, "tenant": doc["tenant"]})
        return rows

    def clear(self) -> int:
        keys = list(self.redis.scan_iter(match=f"{self.prefix}*"))
        return self.redis.delete(*keys) if keys else 0
