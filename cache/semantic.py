"""SemanticCache: the in-process API the gateway calls on every request.

Each gateway replica holds its own HNSW indexes, one per (tenant, category,
model partition), plus an exact-match map; the store (Redis, or process memory)
holds the documents. A lookup touches the store only on a hit (one round trip:
fetch the response, bump its LRU/LFU score). Replicas stay in step by tailing
the store's event stream; a gap in the event sequence, or Redis coming back
after an outage, triggers a rebuild from the documents.

Partition key: (tenant, category, model) where model is the model the request
asked for. A request naming a model only sees answers stored by requests naming
that model (so produced by it); `auto` requests share all routed answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np

from cache.classifier import CategoryClassifier, load_classifier
from cache.config import CacheSpec
from cache.guard import signature
from cache.index import EntryMeta
from cache.keys import context_hash, exact_hash, message_count, query_text
from cache.local import LocalIndexes
from cache.policy import EffectivePolicy, cacheable, category_load, effective, next_level
from cache.redis_store import RedisStore
from cache.responses import CacheHit, hit_response
from cache.stats import CacheStats
from cache.store import Event, MemoryStore

log = logging.getLogger(__name__)


class CacheUnavailable(RuntimeError):
    """An admin operation could not reach the store."""


def storable(response: dict) -> bool:
    choices = response.get("choices") or []
    if not choices or "error" in response:
        return False
    for c in choices:
        if c.get("finish_reason") not in ("stop", "length"):
            return False
        if (c.get("message") or {}).get("tool_calls"):
            return False
    return True


class SemanticCache:
    def __init__(self, spec: CacheSpec, store, classifier: CategoryClassifier) -> None:
        self.spec = spec
        self.docs = store
        self.classifier = classifier
        self.counters = CacheStats()
        self.local = LocalIndexes(spec.hnsw)
        self._levels: dict[str, float] = {}
        self._served: dict[str, dict[str, float]] = {}
        self._seq = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._started = False
        self._closing = False

    @classmethod
    def from_spec(cls, spec: CacheSpec, classifier: CategoryClassifier | None = None,
                  key_prefix: str | None = None) -> SemanticCache:
        if spec.redis_url:
            store = RedisStore(spec.redis_url, key_prefix or spec.key_prefix, spec.redis_timeout_s,
                               spec.stream_maxlen)
        else:
            store = MemoryStore()
        return cls(spec, store, classifier or load_classifier(spec.classifier))

    # ---- policy ---------------------------------------------------------------------------
    def classify(self, embedding: np.ndarray) -> str:
        label = self.classifier.predict(embedding)
        return label if label in self.spec.categories else self.spec.default_category

    def policy(self, category: str) -> EffectivePolicy:
        return effective(self.spec.policy(category), self._levels.get(category, 0.0))

    def adapt(self, load_by_model: dict[str, float]) -> dict[str, EffectivePolicy]:
        """Move each category's threshold and TTL with the load of the models answering it."""
        for cat in self.spec.categories:
            load = category_load(self._served.get(cat, {}), load_by_model)
            self._levels[cat] = next_level(self._levels.get(cat, 0.0), load, self.spec.adaptive)
        return {cat: self.policy(cat) for cat in self.spec.categories}

    # ---- request path ---------------------------------------------------------------------
    async def lookup_exact(self, tenant: str, request_key: dict, params: dict) -> CacheHit | None:
        """Exact tier only; needs no embedding, so the gateway may try it before embedding."""
        if not cacheable(params, self.spec.policy(""), self.spec.rules, message_count(request_key))[0]:
            return None
        await self.start()
        hit = await self._exact_hit(tenant, request_key)
        if hit:
            c = self.counters.of(tenant, hit.category)
            c.lookups += 1
            c.hits_exact += 1
        return hit

    async def lookup(self, tenant: str, model: str, category: str, embedding: np.ndarray | None,
                     request_key: dict, params: dict) -> CacheHit | None:
        c = self.counters.of(tenant, category)
        c.lookups += 1
        if not cacheable(params, self.spec.policy(category), self.spec.rules, message_count(request_key))[0]:
            c.bypassed += 1
            return None
        await self.start()
        hit = await self._exact_hit(tenant, request_key)
        if hit is None and embedding is not None:
            hit = await self._semantic_hit(tenant, model, category, embedding, request_key)
        if hit is None:
            c.misses += 1
        elif hit.tier == "exact":
            c.hits_exact += 1
        else:
            c.hits_semantic += 1
        return hit

    async def _exact_hit(self, tenant: str, request_key: dict) -> CacheHit | None:
        meta = self.local.exact_meta(tenant, exact_hash(request_key))
        return await self._accept(meta, 1.0, "exact") if meta else None

    async def _semantic_hit(self, tenant: str, model: str, category: str, embedding: np.ndarray,
                            request_key: dict) -> CacheHit | None:
        index = self.local.indexes.get((tenant, category, model))
        if index is None:
            return None
        threshold = self.policy(category).threshold
        ctx, sig = context_hash(request_key), signature(query_text(request_key))
        for meta, sim in index.search(np.asarray(embedding, dtype=np.float32), self.spec.hnsw.k):
            if sim < threshold:
                break
            if meta.ctx == ctx and meta.sig == sig:
                hit = await self._accept(meta, sim, "semantic")
                if hit is not None or not self.docs.healthy:
                    return hit
        return None

    async def _accept(self, meta: EntryMeta, sim: float, tier: str) -> CacheHit | None:
        age = time.time() - meta.created
        if age >= self.policy(meta.category).ttl_s:
            return None
        lfu = self.spec.policy(meta.category).eviction == "lfu"
        stored = await self.docs.fetch(meta, lfu)
        if stored is None:
            if self.docs.healthy:  # evicted or invalidated elsewhere; the event is on its way
                self.local.delete(meta.id)
            return None
        resp = hit_response(stored, tier, sim, meta.id, meta.category, age)
        return CacheHit(resp, tier, sim, meta.id, meta.category, meta.served_model, age)

    async def store(self, tenant: str, model: str, category: str, embedding: np.ndarray,
                    request_key: dict, response: dict, params: dict) -> int | None:
        """Keep a model's answer; returns the entry id, or None when not cacheable or dropped."""
        base = self.spec.policy(category)
        ok, _ = cacheable(params, base, self.spec.rules, message_count(request_key))
        if not ok or not storable(response):
            return None
        await self.start()
        c = self.counters.of(tenant, category)
        entry_id = await self.docs.next_id()
        if entry_id is None:
            c.stores_dropped += 1
            return None
        now = time.time()
        stretch = base.max_ttl_factor if self.spec.adaptive.enabled else 1.0
        served = str(response.get("model") or model)
        meta = EntryMeta(entry_id, tenant, category, model, served, exact_hash(request_key),
                         context_hash(request_key), signature(query_text(request_key)), now,
                         now + base.ttl_s * stretch)
        clean = {k: v for k, v in response.items() if k != "turnout_cache"}
        vec = np.asarray(embedding, dtype=np.float32)
        victims = await self.docs.insert(meta, vec, clean, base.quota, base.eviction == "lfu")
        if victims is None:
            c.stores_dropped += 1
            return None
        self.local.add(meta, vec)
        for v in victims:
            self.local.delete(v)
        c.stores += 1
        c.evictions += len(victims)
        self._note_served(category, served)
        return entry_id

    def _note_served(self, category: str, model: str) -> None:
        counts = self._served.setdefault(category, {})
        for m in counts:
            counts[m] *= 0.99  # recent answers weigh more
        counts[model] = counts.get(model, 0.0) + 1.0

    # ---- admin ----------------------------------------------------------------------------
    async def invalidate(self, entry_id: int | None = None, category: str | None = None,
                         tenant: str | None = None) -> int:
        """Drop one entry, or every entry of a tenant and/or category (no arguments: everything)."""
        await self.start()
        if not self.docs.healthy:
            raise CacheUnavailable("cache store unreachable")
        if entry_id is not None:
            n = int(await self.docs.delete(int(entry_id)))
            self.local.delete(int(entry_id))
        else:
            n = await self.docs.invalidate(tenant or "", category or "")
            self.local.invalidate(tenant or "", category or "")
        if not self.docs.healthy:
            raise CacheUnavailable("cache store unreachable")
        return n

    def stats(self, tenant: str | None = None) -> dict:
        out = self.counters.report(tenant, self.local.entries())
        out["store"] = {"kind": "redis" if self.docs.shared else "memory",
                        "healthy": self.docs.healthy, "failures": self.docs.failures}
        out["policies"] = {c: vars(self.policy(c)) for c in self.spec.categories}
        return out

    # ---- replica sync ---------------------------------------------------------------------
    async def start(self) -> None:
        """Load the indexes from the store and start tailing it (idempotent; lookups call it)."""
        if self._started:
            return
        self._started = True
        if self.docs.shared:
            try:
                await self._rebuild()
            except Exception:  # Redis down at start: serve misses, the loop retries
                log.warning("semantic cache: store unreachable at start", exc_info=True)
                self.docs.healthy = False
                self.docs.failures += 1
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        self._closing = True  # redis-py may turn a cancelled XREAD into a timeout; the loop checks this
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.docs.close()

    async def sync(self) -> None:
        """Apply every event published so far (the background task does this continuously)."""
        await self.start()
        while self.docs.healthy:
            events = await self.docs.poll(0)
            if not events:
                return
            await self._handle(events)

    async def _run(self) -> None:
        while not self._closing:
            try:
                if not self.docs.healthy:
                    await asyncio.sleep(self.spec.retry_interval_s)
                    if await self.docs.ping():
                        await self._rebuild()
                elif not self.docs.shared:
                    await asyncio.sleep(0.5)
                else:
                    events = await self.docs.poll(500)
                    if events:
                        await self._handle(events)
                self._sweep(time.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("semantic cache: sync failed", exc_info=True)
                self.docs.healthy = False
                self.docs.failures += 1

    async def _handle(self, events: list[Event]) -> None:
        async with self._lock:
            for ev in events:
                if ev.seq <= self._seq:
                    continue
                if ev.seq != self._seq + 1:
                    break  # missed events: rebuild below
                self._seq = ev.seq
                if ev.op == "add" and ev.meta is not None and ev.vector is not None:
                    self.local.add(ev.meta, ev.vector)
                elif ev.op == "del":
                    for i in ev.ids:
                        self.local.delete(i)
                elif ev.op == "inval":
                    self.local.invalidate(ev.tenant, ev.category)
            else:
                return
        await self._rebuild()

    async def _rebuild(self) -> None:
        async with self._lock:
            seq = await self.docs.snapshot()
            rows = await self.docs.load_all()
            self.local = await asyncio.to_thread(LocalIndexes.build, self.spec.hnsw, rows)
            self._seq = seq

    def _sweep(self, now: float) -> None:
        for meta in self.local.expire(now):
            self.counters.of(meta.tenant, meta.category).expired += 1
