"""Cache counters per (tenant, category), kept by each gateway replica."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass


@dataclass
class Counters:
    lookups: int = 0
    hits_exact: int = 0
    hits_semantic: int = 0
    misses: int = 0
    bypassed: int = 0  # not cacheable
    stores: int = 0
    stores_dropped: int = 0  # store unavailable
    evictions: int = 0
    expired: int = 0

    @property
    def hit_rate(self) -> float:
        served = self.hits_exact + self.hits_semantic + self.misses
        return (self.hits_exact + self.hits_semantic) / served if served else 0.0


class CacheStats:
    def __init__(self) -> None:
        self.by_part: dict[tuple[str, str], Counters] = defaultdict(Counters)

    def of(self, tenant: str, category: str) -> Counters:
        return self.by_part[(tenant, category)]

    def report(self, tenant: str | None, entries: dict[tuple[str, str], int]) -> dict:
        """Nested {tenant: {category: counters + entries + hit_rate}} plus totals."""
        out: dict[str, dict] = {}
        total = Counters()
        keys = set(self.by_part) | set(entries)
        for t, c in sorted(keys):
            if tenant is not None and t != tenant:
                continue
            cnt = self.by_part.get((t, c), Counters())
            out.setdefault(t, {})[c] = asdict(cnt) | {"hit_rate": round(cnt.hit_rate, 4),
                                                       "entries": entries.get((t, c), 0)}
            for k, v in asdict(cnt).items():
                setattr(total, k, getattr(total, k) + v)
        return {"tenants": out, "total": asdict(total) | {"hit_rate": round(total.hit_rate, 4),
                                                            "entries": sum(entries.values())}}
