"""dashboards.overview: the admin overview assembled from plain inputs (dashboards/API.md)."""

from __future__ import annotations

import json

import pytest

from dashboards.overview import RECENT_MIGRATIONS, RouterTally, build_overview
from replicas.stats import ReplicaStats, RequestLoad

MODELS = [{"name": "b-model", "price_input_per_m": 1, "price_output_per_m": 2}, {"name": "a-model"}]


def migration(i: int, state: str, started: float, finished: float | None = None) -> dict:
    return {"migration_id": f"m-{i}", "request_id": f"r{i}", "model": "b-model", "source": "x",
            "destination": "y", "reason": "balance", "state": state, "started_at": started,
            "finished_at": finished, "bytes": 10, "downtime_ms": 1.0 if state == "completed" else None,
            "cause": "timeout" if state == "aborted" else None}


def test_models_keep_config_order_and_sum_their_replicas() -> None:
    r1 = ReplicaStats("r2", "b-model", running=2, waiting=1, kv_blocks_used=30, kv_blocks_total=100,
                      tokens_in_flight=500, timestamp=99.0,
                      requests=(RequestLoad("q1", 300, 10, generated=5),))
    r2 = ReplicaStats("r1", "b-model", running=1, kv_blocks_used=10, kv_blocks_total=100, draining=True,
                      timestamp=100.0)
    ov = build_overview(MODELS, {"b-model": [r1.to_dict(), r2.to_dict()]}, [], {}, {}, now=100.0)
    b, a = ov["models"]
    assert (b["name"], a["name"]) == ("b-model", "a-model")
    assert a["replicas"] == [] and a["totals"]["replicas"] == 0 and a["totals"]["kv_usage"] == 0.0
    assert [r["replica_id"] for r in b["replicas"]] == ["r1", "r2"]
    assert b["totals"] == {"replicas": 2, "running": 3, "waiting": 1, "kv_blocks_used": 40,
                           "kv_blocks_total": 200, "tokens_in_flight": 500, "kv_usage": 0.2, "draining": 1}
    drained, busy = b["replicas"]
    assert drained["freeness"] is None and drained["draining"] is True  # -inf never reaches JSON
    assert busy["freeness"] == pytest.approx(70 / 2) and busy["age_s"] == 1.0
    assert busy["requests"] == [{"request_id": "q1", "num_tokens": 300, "generated": 5, "priority": 0,
                                 "migrating": False, "waiting": False}]
    json.dumps(ov, allow_nan=False)  # strict JSON: no inf/nan anywhere


def test_migrations_split_in_flight_and_recent() -> None:
    ms = [migration(0, "stop_and_copy", 5.0), migration(1, "precopy", 3.0)]
    ms += [migration(10 + i, "completed" if i % 4 else "aborted", i, i + 0.5) for i in range(60)]
    out = build_overview(MODELS, {}, ms, {}, {})["migrations"]
    assert [m["migration_id"] for m in out["in_flight"]] == ["m-1", "m-0"]  # oldest first
    assert len(out["recent"]) == RECENT_MIGRATIONS
    assert out["recent"][0]["migration_id"] == "m-69"  # newest first
    assert out["completed"] + out["aborted"] == RECENT_MIGRATIONS and out["aborted"] > 0


def test_cache_sums_tenants_per_category() -> None:
    report = {"tenants": {
        "t1": {"math": {"lookups": 10, "hits_exact": 1, "hits_semantic": 4, "misses": 5, "entries": 7}},
        "t2": {"math": {"lookups": 10, "hits_exact": 0, "hits_semantic": 2, "misses": 8, "entries": 3},
               "chat": {"lookups": 0, "misses": 0, "entries": 0}}}}
    cache = build_overview(MODELS, {}, [], report, {}, {"math": 0.85})["cache"]
    chat, math = cache["categories"]
    assert math["hits"] == 7 and math["misses"] == 13 and math["entries"] == 10
    assert math["hit_rate"] == pytest.approx(0.35) and math["threshold"] == 0.85
    assert chat["hit_rate"] == 0.0 and chat["threshold"] is None
    assert cache["total"] == {"lookups": 20, "hits": 7, "misses": 13, "hit_rate": 0.35, "entries": 10}


def test_router_tally_gives_money_saved() -> None:
    tally = RouterTally()
    for model, cat in [("cheap", "chat"), ("cheap", "chat"), ("best", "math")]:
        tally.add_decision(model, cat, 0.001)
        tally.add_outcome(0.001 if model == "cheap" else 0.004, 0.004)
    r = build_overview(MODELS, {}, [], {}, tally.to_dict())["router"]
    assert r["decisions"][0] == {"model": "cheap", "category": "chat", "count": 2}
    assert r["by_model"] == {"cheap": 2, "best": 1} and r["total_decisions"] == 3
    assert r["saved_usd"] == pytest.approx(0.006) and r["saved_ratio"] == pytest.approx(0.5)
    assert build_overview(MODELS, {}, [], {}, {})["router"]["saved_ratio"] == 0.0


def test_accepts_the_rescheduler_status_and_steering_stats() -> None:
    status = {"ticks": 3, "auto": True,
              "in_flight": [{"request_id": "q1", "source": "a", "destination": "b", "reason": "drain"}],
              "recent": [{"kind": "migration", "model": "m", "request_id": "q0", "source": "a",
                          "destination": "b", "reason": "balance", "stage": "done", "detail": "",
                          "bytes": 4096, "duration_s": 0.5, "at": 10.0},
                         {"kind": "migration", "model": "m", "request_id": "q2", "source": "a",
                          "destination": "c", "reason": "balance", "stage": "rolled_back",
                          "detail": "no space", "bytes": 0, "duration_s": 0.1, "at": 20.0}]}
    steering = {"decisions": {"m": 4}, "routed": 4, "predicted_cost_usd": 0.0021,
                "realised_cost_usd": 0.002, "baseline_cost_usd": 0.005, "saved_usd": 0.003}
    ov = build_overview(MODELS, {}, status, {}, steering)
    live, recent = ov["migrations"]["in_flight"], ov["migrations"]["recent"]
    assert live[0]["request_id"] == "q1" and live[0]["state"] == "running"
    assert [(m["request_id"], m["state"], m["cause"]) for m in recent] == [
        ("q2", "aborted", "no space"), ("q0", "completed", None)]
    assert recent[1]["finished_at"] == 10.5
    assert ov["router"]["saved_usd"] == pytest.approx(0.003) and ov["router"]["by_model"] == {"m": 4}
