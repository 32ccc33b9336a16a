"""One in-memory HNSW index (hnswlib, inner product on unit vectors).

Labels are the cache's global entry ids, so an id means the same entry in every
gateway replica. Deleted labels are marked and their slots reused; the index
doubles its capacity when full.
"""

from __future__ import annotations

from dataclasses import dataclass

import hnswlib
import numpy as np

from cache.embedder import DIM


@dataclass(frozen=True)
class EntryMeta:
    """What a replica keeps in memory per entry: enough to accept or skip a candidate."""

    id: int
    tenant: str
    category: str
    model: str  # partition: the model requested ("auto" for routed requests)
    served_model: str
    xkey: str  # exact-tier hash of the normalized request
    ctx: str  # hash of the context around the query (system prompt, history, limits)
    sig: str  # guard signature (numbers, relative dates) of the query
    created: float
    expires_at: float  # hard expiry (the longest TTL the adaptive policy may stretch to)


class VectorIndex:
    def __init__(self, m: int = 16, ef_construction: int = 100, ef_search: int = 64,
                 capacity: int = 1024, dim: int = DIM) -> None:
        self._index = hnswlib.Index(space="ip", dim=dim)
        self._index.init_index(max_elements=capacity, M=m, ef_construction=ef_construction,
                               allow_replace_deleted=True)
        self._index.set_ef(ef_search)
        self._index.set_num_threads(1)  # single queries: threads only add overhead
        self.meta: dict[int, EntryMeta] = {}
        self._ef = ef_search

    def __len__(self) -> int:
        return len(self.meta)

    def add(self, vector: np.ndarray, meta: EntryMeta) -> None:
        if meta.id in self.meta:
            return
        cap = self._index.get_max_elements()
        # Deleted slots are reused, so only live entries count towards capacity.
        if len(self.meta) >= cap:
            self._index.resize_index(cap * 2)
        self._index.add_items(vector.reshape(1, -1), np.array([meta.id]), replace_deleted=True)
        self.meta[meta.id] = meta

    def add_many(self, vectors: np.ndarray, metas: list[EntryMeta]) -> None:
        """Bulk insert (rebuild, benchmarks); uses hnswlib's own threads."""
        fresh = [i for i, m in enumerate(metas) if m.id not in self.meta]
        if not fresh:
            return
        need = len(self.meta) + len(fresh)
        if need > self._index.get_max_elements():
            self._index.resize_index(max(need, self._index.get_max_elements() * 2))
        self._index.set_num_threads(0)
        self._index.add_items(vectors[fresh], np.array([metas[i].id for i in fresh]), replace_deleted=True)
        self._index.set_num_threads(1)
        for i in fresh:
            self.meta[metas[i].id] = metas[i]

    def remove(self, entry_id: int) -> EntryMeta | None:
        meta = self.meta.pop(entry_id, None)
        if meta is not None:
            self._index.mark_deleted(entry_id)
        return meta

    def search(self, vector: np.ndarray, k: int) -> list[tuple[EntryMeta, float]]:
        """Nearest live entries, most similar first, as (meta, cosine similarity)."""
        k = min(k, len(self.meta))
        if k == 0:
            return []
        if self._ef < k:
            self._index.set_ef(k)
        labels, dists = self._index.knn_query(vector.reshape(1, -1), k=k)
        return [(self.meta[int(lbl)], 1.0 - float(d)) for lbl, d in zip(labels[0], dists[0], strict=True)
                if int(lbl) in self.meta]
