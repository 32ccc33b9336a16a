"""Document stores: what the cache keeps outside its in-memory indexes.

Two implementations behind one async interface: `MemoryStore` (process-local,
the default when no Redis is configured) and `RedisStore` (cache/redis_store.py:
shared by gateway replicas, survives restarts). A store holds each entry's
response, vector and metadata, its expiry, the per-(tenant, category) recency or
frequency order used for quota eviction, and (Redis only) the event stream the
replicas tail to keep their indexes in step.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field

import numpy as np

from cache.index import EntryMeta


@dataclass
class Event:
    """A change another replica made: add an entry, delete ids, or drop a tenant/category."""

    op: str  # "add" | "del" | "inval"
    seq: int = 0
    meta: EntryMeta | None = None
    vector: np.ndarray | None = None
    ids: list[int] = field(default_factory=list)
    tenant: str = ""  # "" = every tenant (inval)
    category: str = ""  # "" = every category (inval)


@dataclass
class Stored:
    meta: EntryMeta
    vector: np.ndarray
    response: str  # JSON
    score: float  # LRU: last use time; LFU: hits + age tie-break


def lfu_start(now: float) -> float:
    # Integer part = hits; the fraction orders equal counts oldest first.
    return now / 1e10


class MemoryStore:
    """Process-local store: one gateway replica, nothing survives a restart."""

    healthy = True
    failures = 0
    shared = False

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._docs: dict[int, Stored] = {}
        self._parts: dict[tuple[str, str], set[int]] = {}

    async def next_id(self) -> int | None:
        return next(self._ids)

    async def insert(self, meta: EntryMeta, vector: np.ndarray, response: dict, quota: int,
                     lfu: bool) -> list[int] | None:
        now = time.time()
        part = self._parts.setdefault((meta.tenant, meta.category), set())
        for i in [i for i in part if self._docs[i].meta.expires_at <= now]:
            self._drop(i)
        self._docs[meta.id] = Stored(meta, vector, json.dumps(response), lfu_start(now) if lfu else now)
        part.add(meta.id)
        over = len(part) - quota
        if over <= 0:
            return []
        victims = sorted((i for i in part if i != meta.id), key=lambda i: self._docs[i].score)[:over]
        for i in victims:
            self._drop(i)
        return victims

    async def fetch(self, meta: EntryMeta, lfu: bool) -> dict | None:
        doc = self._docs.get(meta.id)
        if doc is None or doc.meta.expires_at <= time.time():
            return None
        doc.score = doc.score + 1 if lfu else time.time()
        return json.loads(doc.response)

    async def delete(self, entry_id: int) -> bool:
        return self._drop(entry_id)

    async def invalidate(self, tenant: str, category: str) -> int:
        ids = [i for (t, c), part in self._parts.items() if tenant in ("", t) and category in ("", c)
               for i in part]
        for i in ids:
            self._drop(i)
        return len(ids)

    async def load_all(self) -> list[tuple[EntryMeta, np.ndarray]]:
        now = time.time()
        return [(d.meta, d.vector) for d in self._docs.values() if d.meta.expires_at > now]

    async def snapshot(self) -> int:
        return 0

    async def poll(self, block_ms: int) -> list[Event] | None:
        return []  # a single process applies its own changes directly

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    def _drop(self, entry_id: int) -> bool:
        doc = self._docs.pop(entry_id, None)
        if doc is None:
            return False
        self._parts.get((doc.meta.tenant, doc.meta.category), set()).discard(entry_id)
        return True
