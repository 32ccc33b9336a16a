"""Turnout metrics recorded inside a Ray worker appear on the node's Prometheus endpoint."""

from __future__ import annotations

import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from deploy.metrics_catalog import exported_series


def record_everything() -> int:
    """Runs in a Ray worker: every component records through its record_* helpers."""
    from cache import metrics as cache
    from gateway import metrics as gateway
    from migration import metrics as migration
    from replicas import metrics as replica
    from replicas.stats import ReplicaStats
    from router import live_metrics as router

    gateway.record_request("tiny-a", "acme", "chat", ttft_s=0.05, latency_s=0.5, prompt_tokens=12,
                           completion_tokens=10)
    gateway.record_error("tiny-a", "acme", "chat", 400, "context_length_exceeded")
    gateway.record_cache_hit("tiny-a", "acme", "math", "semantic", 0.004)
    gateway.record_failover("tiny-a", "retried")
    replica.record_replica_stats(ReplicaStats("r1", "tiny-a", running=3, waiting=1, kv_blocks_used=40,
                                              kv_blocks_total=100, tokens_in_flight=700))
    replica.record_aborted("tiny-a", "r1")
    router.record_decision("tiny-a", "math", "acme", predicted_cost_usd=0.002, latency_s=0.004)
    router.record_outcome("tiny-a", realised_cost_usd=0.003, baseline_cost_usd=0.009)
    cache.record_lookup("acme", "math", "exact", 0.001)
    cache.record_lookup("acme", "math", None, 0.002)
    cache.record_store("acme", "math")
    cache.record_entries({("acme", "math"): 5})
    cache.record_evictions("math", "quota", 2)
    cache.record_redis_failure("get")
    cache.record_threshold("math", 0.85)
    migration.record_started("tiny-a", "balance")
    migration.record_completed("tiny-a", "balance", bytes_sent=1 << 20, downtime_s=0.03, duration_s=0.4)
    migration.record_aborted("tiny-a", "drain", "timeout", bytes_sent=4096)
    migration.record_in_flight("tiny-a", 1)
    from gateway.limits import UNAVAILABLE

    UNAVAILABLE.inc(tenant="acme", outcome="open")
    return 1


def scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("ray_turnout_"):
                samples.setdefault(s.name, []).append(s)
    return samples


def test_every_metric_reaches_the_ray_metrics_endpoint(serve_port: int) -> None:
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    # Workers cannot import this test module: ship record_everything by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    assert ray.get(ray.remote(num_cpus=0)(record_everything).remote()) == 1
    want = exported_series()
    deadline = time.time() + 45  # workers report every 10 s
    record = ray.remote(num_cpus=0)(record_everything)
    while True:
        samples = scrape(port)
        if want <= set(samples) or time.time() > deadline:
            break
        # Ray drops a gauge series nobody set for ~20 s: keep them fresh, as live code does.
        ray.get(record.remote())
        time.sleep(1)
    assert not want - set(samples), f"missing from the scrape: {sorted(want - set(samples))}"

    def one(name: str, **labels: str) -> float:
        hits = [s.value for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())]
        assert hits, (name, labels)
        return sum(hits)

    assert one("ray_turnout_gateway_requests_total", model="tiny-a", tenant="acme", status="200") >= 1
    assert one("ray_turnout_replica_running_requests", model="tiny-a", replica="r1") == 3
    assert one("ray_turnout_replica_kv_usage_ratio", replica="r1") == 0.4
    assert one("ray_turnout_router_baseline_cost_usd_total", model="tiny-a") >= 0.009
    assert one("ray_turnout_cache_hits_total", category="math", tier="exact") >= 1
    assert one("ray_turnout_gateway_replica_failovers_total", model="tiny-a", outcome="retried") >= 1
    assert one("ray_turnout_migration_downtime_seconds_count", model="tiny-a") >= 1
    assert one("ray_turnout_migration_transferred_bytes_total", model="tiny-a") >= (1 << 20) + 4096
