"""Metric definitions and record_* helpers, recorded through the local (no-Ray) fallback."""

from __future__ import annotations

import pickle

import pytest

from cache import metrics as cache_metrics
from deploy.metrics_catalog import load_all
from gateway import metrics as gateway_metrics
from migration import metrics as migration_metrics
from replicas import metrics as replica_metrics
from replicas import telemetry
from replicas.stats import ReplicaStats
from router import live_metrics as router_metrics


@pytest.fixture(autouse=True)
def local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests read the process-local fallback, even when a session Ray is up.
    monkeypatch.setattr(telemetry, "_ray_ready", lambda: False)


def value(name: str, **labels: str) -> float | None:
    return telemetry.LOCAL_REGISTRY.get_sample_value(name, labels)


def test_registry_names_follow_the_convention() -> None:
    specs = load_all()
    assert {s.component for s in specs.values()} == {"gateway", "replica", "router", "cache", "migration"}
    for spec in specs.values():
        assert spec.name.startswith("turnout_") and spec.exported.startswith("ray_turnout_")
        assert not telemetry.FORBIDDEN_LABELS & set(spec.labels)
        assert spec.description
        if spec.kind == "histogram":
            assert list(spec.buckets) == sorted(spec.buckets) and spec.buckets[0] > 0
    assert specs["turnout_gateway_requests"].exported == "ray_turnout_gateway_requests_total"
    assert specs["turnout_replica_running_requests"].series == ("ray_turnout_replica_running_requests",)


def test_definitions_refuse_secret_labels_and_bad_names() -> None:
    with pytest.raises(ValueError, match="secret"):
        telemetry.counter("turnout_test_leaky", "x", ("tenant", "api_key"))
    with pytest.raises(ValueError, match="_total"):
        telemetry.counter("turnout_test_things_total", "x")
    with pytest.raises(ValueError, match="turnout_"):
        telemetry.gauge("other_thing", "x")


def test_gateway_request_records_latencies_and_tokens() -> None:
    before = value("ray_turnout_gateway_requests_total", model="m1", tenant="acme", endpoint="chat",
                   status="200") or 0
    gateway_metrics.record_request("m1", "acme", "chat", ttft_s=0.2, latency_s=1.2, prompt_tokens=10,
                                   completion_tokens=11)
    assert value("ray_turnout_gateway_requests_total", model="m1", tenant="acme", endpoint="chat",
                 status="200") == before + 1
    assert value("ray_turnout_gateway_completion_tokens_total", model="m1", tenant="acme") >= 11
    # TPOT = (1.2 - 0.2) / (11 - 1) = 0.1 s lands in the 0.16 bucket, not the 0.08 one.
    assert value("ray_turnout_gateway_time_per_output_token_seconds_bucket", model="m1", tenant="acme",
                 le="0.16") == 1
    assert value("ray_turnout_gateway_time_per_output_token_seconds_bucket", model="m1", tenant="acme",
                 le="0.08") == 0
    assert gateway_metrics.time_per_output_token(0.5, 0.4, 5) is None
    assert gateway_metrics.time_per_output_token(0.5, 1.0, 1) is None
    gateway_metrics.record_error("", "acme", "chat", 404, "model_not_found")
    assert value("ray_turnout_gateway_errors_total", model="", tenant="acme", status="404",
                 code="model_not_found") >= 1


def test_replica_stats_set_the_load_gauges() -> None:
    stats = ReplicaStats("r1", "m1", running=3, waiting=2, kv_blocks_used=30, kv_blocks_total=120,
                         tokens_in_flight=900, waiting_blocks_needed=6)
    replica_metrics.record_replica_stats(stats)
    labels = {"model": "m1", "replica": "r1"}
    assert value("ray_turnout_replica_running_requests", **labels) == 3
    assert value("ray_turnout_replica_waiting_requests", **labels) == 2
    assert value("ray_turnout_replica_kv_usage_ratio", **labels) == pytest.approx(0.25)
    assert value("ray_turnout_replica_freeness_blocks", **labels) == pytest.approx((90 - 6) / 3)
    assert value("ray_turnout_replica_draining", **labels) == 0
    replica_metrics.record_replica_stats(ReplicaStats("r1", "m1", running=1, kv_blocks_total=120,
                                                      draining=True))
    assert value("ray_turnout_replica_draining", **labels) == 1
    # -inf never reaches Prometheus: the last finite freeness stays until the series lapses.
    assert value("ray_turnout_replica_freeness_blocks", **labels) == pytest.approx(28)


def test_router_cache_and_migration_helpers() -> None:
    cost = router_metrics.request_cost_usd(1000, 500, price_input_per_m=2.0, price_output_per_m=4.0)
    assert cost == pytest.approx(0.004)
    router_metrics.record_decision("cheap", "math", "acme", predicted_cost_usd=0.001, latency_s=0.003)
    router_metrics.record_outcome("cheap", realised_cost_usd=0.002, baseline_cost_usd=0.010)
    assert value("ray_turnout_router_decisions_total", model="cheap", category="math", tenant="acme",
                 mode="auto") >= 1
    assert value("ray_turnout_router_baseline_cost_usd_total", model="cheap") >= 0.010
    cache_metrics.record_lookup("acme", "code", "semantic", 0.002)
    cache_metrics.record_lookup("acme", "code", None, 0.001)
    assert value("ray_turnout_cache_hits_total", tenant="acme", category="code", tier="semantic") >= 1
    assert value("ray_turnout_cache_misses_total", tenant="acme", category="code") >= 1
    cache_metrics.record_entries({("acme", "code"): 42})
    assert value("ray_turnout_cache_entries", tenant="acme", category="code") == 42
    migration_metrics.record_started("m1", "balance")
    migration_metrics.record_completed("m1", "balance", bytes_sent=4096, downtime_s=0.02, duration_s=0.5)
    migration_metrics.record_aborted("m1", "drain", "no_space")
    assert value("ray_turnout_migration_transferred_bytes_total", model="m1") >= 4096
    assert value("ray_turnout_migration_aborted_total", model="m1", reason="drain", cause="no_space") >= 1


def test_recording_never_raises() -> None:
    m = gateway_metrics.REQUESTS
    m.inc(0, model="m")  # Ray rejects zero increments: skipped
    m.inc(1)  # missing labels become ""
    m.inc(1, model=object(), tenant=None, endpoint="x", status=500, extra="ignored")
    gateway_metrics.TTFT.observe(None, model="m", tenant="t")
    copy = pickle.loads(pickle.dumps(m))  # handles travel without their backend
    assert copy.spec == m.spec and copy._local is None
    assert "ray_turnout_gateway_requests_total" in telemetry.local_exposition()
