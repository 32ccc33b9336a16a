"""Assemble GET /admin/v1/overview (dashboards/API.md) from plain inputs.

Pure functions over plain dicts, so the gateway just gathers inputs and calls
`build_overview`, and tests need nothing running. `RouterTally` is the small
accumulator the gateway keeps for the router section.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

RECENT_MIGRATIONS = 50
FINISHED = ("completed", "aborted")
REQUEST_FIELDS = ("request_id", "num_tokens", "generated", "priority", "migrating", "waiting")


@dataclass
class RouterTally:
    """Router decisions and costs seen by one gateway replica (since it started)."""

    decisions: Counter = field(default_factory=Counter)  # (model, category) -> count
    predicted_cost_usd: float = 0.0
    realised_cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0

    def add_decision(self, model: str, category: str, predicted_cost_usd: float) -> None:
        self.decisions[(model, category)] += 1
        self.predicted_cost_usd += predicted_cost_usd

    def add_outcome(self, realised_cost_usd: float, baseline_cost_usd: float) -> None:
        self.realised_cost_usd += realised_cost_usd
        self.baseline_cost_usd += baseline_cost_usd

    def to_dict(self) -> dict:
        return {"decisions": [{"model": m, "category": c, "count": n}
                              for (m, c), n in self.decisions.items()],
                "predicted_cost_usd": self.predicted_cost_usd,
                "realised_cost_usd": self.realised_cost_usd,
                "baseline_cost_usd": self.baseline_cost_usd}


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def replica_view(stats: dict, now: float) -> dict:
    """One ReplicaStats.to_dict() -> the API's replica object."""
    used, total = int(stats.get("kv_blocks_used", 0)), int(stats.get("kv_blocks_total", 0))
    draining = bool(stats.get("draining", False))
    return {
        "replica_id": str(stats["replica_id"]),
        "running": int(stats.get("running", 0)), "waiting": int(stats.get("waiting", 0)),
        "kv_blocks_used": used, "kv_blocks_total": total,
        "kv_usage": round(used / total, 4) if total else 0.0,
        "freeness": None if draining else _finite(stats.get("freeness")),
        "tokens_in_flight": int(stats.get("tokens_in_flight", 0)), "draining": draining,
        "migrations_in": int(stats.get("migrations_in", 0)),
        "migrations_out": int(stats.get("migrations_out", 0)),
        "migration_stage": str(stats.get("migration_stage", "")),
        "age_s": round(max(now - float(stats.get("timestamp", now)), 0.0), 3),
        "requests": [{k: r.get(k) for k in REQUEST_FIELDS} for r in stats.get("requests", ())],
    }


def model_view(spec: dict, stats: list[dict], now: float) -> dict:
    replicas = sorted((replica_view(s, now) for s in stats), key=lambda r: r["replica_id"])
    used = sum(r["kv_blocks_used"] for r in replicas)
    total = sum(r["kv_blocks_total"] for r in replicas)
    totals = {"replicas": len(replicas),
              **{k: sum(r[k] for r in replicas) for k in ("running", "waiting", "kv_blocks_used",
                                                          "kv_blocks_total", "tokens_in_flight")},
              "kv_usage": round(used / total, 4) if total else 0.0,
              "draining": sum(r["draining"] for r in replicas)}
    return {"name": spec["name"], "price_input_per_m": float(spec.get("price_input_per_m", 0.0)),
            "price_output_per_m": float(spec.get("price_output_per_m", 0.0)),
            "totals": totals, "replicas": replicas}


# Migration stages as the migration package names them -> the API's `state`.
STAGE_STATE = {"done": "completed", "rolled_back": "aborted", "aborted": "aborted", "failed": "aborted"}


def from_rescheduler(status: dict) -> list[dict]:
    """The rescheduler's status() ({"in_flight": [Migration], "recent": [event]}) -> Migration dicts."""
    out = []
    for m in status.get("in_flight", []):
        out.append({"migration_id": m.get("migration_id", m["request_id"]), "request_id": m["request_id"],
                    "model": m.get("model", ""), "source": m.get("source", ""),
                    "destination": m.get("destination", ""), "reason": m.get("reason", ""),
                    "state": m.get("state", "running"), "started_at": m.get("started_at", m.get("at", 0.0)),
                    "finished_at": None, "bytes": m.get("bytes", 0), "downtime_ms": None, "cause": None})
    for e in status.get("recent", []):
        state = STAGE_STATE.get(str(e.get("stage")), str(e.get("stage")))
        started = float(e.get("at", 0.0))
        out.append({"migration_id": e.get("migration_id", f"{e['request_id']}@{started}"),
                    "request_id": e["request_id"], "model": e.get("model", ""),
                    "source": e.get("source", ""), "destination": e.get("destination", ""),
                    "reason": e.get("reason", ""), "state": state if state in FINISHED else "aborted",
                    "started_at": started, "finished_at": started + float(e.get("duration_s", 0.0)),
                    "bytes": e.get("bytes", 0), "downtime_ms": e.get("downtime_ms"),
                    "cause": (e.get("detail") or str(e.get("stage"))) if state != "completed" else None})
    return out


def migrations_view(migrations: list[dict] | dict) -> dict:
    if isinstance(migrations, dict):
        migrations = from_rescheduler(migrations)
    in_flight = sorted((m for m in migrations if m.get("state") not in FINISHED),
                       key=lambda m: m.get("started_at", 0.0))
    done = sorted((m for m in migrations if m.get("state") in FINISHED),
                  key=lambda m: m.get("finished_at") or 0.0, reverse=True)[:RECENT_MIGRATIONS]
    return {"in_flight": in_flight, "recent": done,
            "completed": sum(m["state"] == "completed" for m in done),
            "aborted": sum(m["state"] == "aborted" for m in done)}


def cache_view(report: dict, thresholds: dict[str, float] | None = None) -> dict:
    """The cache's stats report ({"tenants": {t: {category: counters}}}) summed over tenants."""
    per: dict[str, Counter] = {}
    for categories in (report.get("tenants") or {}).values():
        for cat, c in categories.items():
            acc = per.setdefault(cat, Counter())
            for k in ("lookups", "hits_exact", "hits_semantic", "misses", "entries", "evictions"):
                acc[k] += int(c.get(k, 0))
    rows = []
    for cat in sorted(per):
        c = per[cat]
        hits = c["hits_exact"] + c["hits_semantic"]
        served = hits + c["misses"]
        rows.append({"category": cat, "lookups": c["lookups"], "hits": hits,
                     "hits_exact": c["hits_exact"], "hits_semantic": c["hits_semantic"],
                     "misses": c["misses"], "hit_rate": round(hits / served, 4) if served else 0.0,
                     "entries": c["entries"], "evictions": c["evictions"],
                     "threshold": (thresholds or {}).get(cat)})
    hits, misses = sum(r["hits"] for r in rows), sum(r["misses"] for r in rows)
    total = {"lookups": sum(r["lookups"] for r in rows), "hits": hits, "misses": misses,
             "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
             "entries": sum(r["entries"] for r in rows)}
    return {"categories": rows, "total": total}


def router_view(tally: dict) -> dict:
    """RouterTally.to_dict(), or the gateway steering's stats() ({"decisions": {model: n},
    "predicted_cost_usd", "realised_cost_usd", "baseline_cost_usd"})."""
    if isinstance(tally.get("decisions"), dict):
        tally = {**tally, "decisions": [{"model": m, "category": "", "count": n}
                                        for m, n in tally["decisions"].items()]}
    decisions = sorted(tally.get("decisions", []), key=lambda d: (-d["count"], d["model"], d["category"]))
    by_model: Counter = Counter()
    for d in decisions:
        by_model[d["model"]] += d["count"]
    realised = float(tally.get("realised_cost_usd", 0.0))
    baseline = float(tally.get("baseline_cost_usd", 0.0))
    saved = baseline - realised
    return {"decisions": decisions, "by_model": dict(by_model), "total_decisions": sum(by_model.values()),
            "predicted_cost_usd": float(tally.get("predicted_cost_usd", 0.0)),
            "realised_cost_usd": realised, "baseline_cost_usd": baseline, "saved_usd": saved,
            "saved_ratio": round(saved / baseline, 4) if baseline > 0 else 0.0}


def build_overview(models: list[dict], replica_stats: dict[str, list[dict]], migrations: list[dict] | dict,
                   cache_report: dict, router_tally: dict, cache_thresholds: dict[str, float] | None = None,
                   now: float | None = None) -> dict:
    """models: [{"name", "price_input_per_m", "price_output_per_m"}] in config order;
    replica_stats: model -> [ReplicaStats.to_dict()]; migrations: Migration dicts (API.md) or
    the rescheduler's status(); cache_report: CacheStats.report() / SemanticCache.stats();
    router_tally: RouterTally.to_dict() or the steering's stats()."""
    now = time.time() if now is None else now
    return {"generated_at": now,
            "models": [model_view(m, replica_stats.get(m["name"], []), now) for m in models],
            "migrations": migrations_view(migrations),
            "cache": cache_view(cache_report, cache_thresholds),
            "router": router_view(router_tally)}
