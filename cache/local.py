"""One replica's in-memory view: HNSW indexes, the exact-match map, the expiry heap.

Changes arrive from this replica's own stores and from the store's event stream;
every operation is idempotent, so an event seen twice changes nothing.
"""

from __future__ import annotations

import heapq
import time

import numpy as np

from cache.config import HnswSpec
from cache.index import EntryMeta, VectorIndex

PartKey = tuple[str, str, str]  # tenant, category, model


class LocalIndexes:
    def __init__(self, hnsw: HnswSpec) -> None:
        self.hnsw = hnsw
        self.indexes: dict[PartKey, VectorIndex] = {}
        self.where: dict[int, PartKey] = {}
        self.exact: dict[tuple[str, str], int] = {}
        self.heap: list[tuple[float, int]] = []

    def _new_index(self, capacity: int = 1024) -> VectorIndex:
        h = self.hnsw
        return VectorIndex(h.m, h.ef_construction, h.ef_search, capacity=capacity)

    def meta(self, entry_id: int) -> EntryMeta | None:
        key = self.where.get(entry_id)
        return self.indexes[key].meta.get(entry_id) if key else None

    def exact_meta(self, tenant: str, xkey: str) -> EntryMeta | None:
        entry_id = self.exact.get((tenant, xkey))
        return self.meta(entry_id) if entry_id is not None else None

    def entries(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for (t, c, _), index in self.indexes.items():
            out[(t, c)] = out.get((t, c), 0) + len(index)
        return out

    def add(self, meta: EntryMeta, vector: np.ndarray) -> None:
        if meta.id in self.where or meta.expires_at <= time.time():
            return
        key = (meta.tenant, meta.category, meta.model)
        index = self.indexes.get(key)
        if index is None:
            index = self.indexes[key] = self._new_index()
        index.add(vector, meta)
        self._register(key, meta)
        heapq.heappush(self.heap, (meta.expires_at, meta.id))

    def _register(self, key: PartKey, meta: EntryMeta) -> None:
        self.where[meta.id] = key
        self.exact[(meta.tenant, meta.xkey)] = meta.id

    def delete(self, entry_id: int) -> EntryMeta | None:
        key = self.where.pop(entry_id, None)
        if key is None:
            return None
        meta = self.indexes[key].remove(entry_id)
        if meta is not None and self.exact.get((meta.tenant, meta.xkey)) == entry_id:
            del self.exact[(meta.tenant, meta.xkey)]
        return meta

    def invalidate(self, tenant: str, category: str) -> None:
        """Drop partitions of a tenant and/or category ("" matches all)."""
        for key in [k for k in self.indexes if tenant in ("", k[0]) and category in ("", k[1])]:
            for entry_id in list(self.indexes[key].meta):
                self.delete(entry_id)
            del self.indexes[key]

    def expire(self, now: float) -> list[EntryMeta]:
        gone = []
        while self.heap and self.heap[0][0] <= now:
            _, entry_id = heapq.heappop(self.heap)
            meta = self.delete(entry_id)
            if meta is not None:
                gone.append(meta)
        return gone

    @classmethod
    def build(cls, hnsw: HnswSpec, rows: list[tuple[EntryMeta, np.ndarray]]) -> LocalIndexes:
        """A fresh view from the store's documents (bulk insert; run it off the event loop)."""
        out, now = cls(hnsw), time.time()
        groups: dict[PartKey, list[tuple[EntryMeta, np.ndarray]]] = {}
        for meta, vec in rows:
            if meta.expires_at > now:
                groups.setdefault((meta.tenant, meta.category, meta.model), []).append((meta, vec))
        for key, items in groups.items():
            index = out.indexes[key] = out._new_index(capacity=max(1024, len(items)))
            index.add_many(np.stack([v for _, v in items]), [m for m, _ in items])
            for m, _ in items:
                out._register(key, m)
                out.heap.append((m.expires_at, m.id))
        heapq.heapify(out.heap)
        return out
