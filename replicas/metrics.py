"""Replica load metrics (gauges per model and replica), set from a ReplicaStats snapshot.

Call `record_replica_stats` periodically (e.g. from `record_routing_stats` or the stats
poll): Ray drops a gauge not refreshed for two report intervals (~20 s by default).
"""

from __future__ import annotations

from replicas.stats import ReplicaStats
from replicas.telemetry import counter, gauge

LABELS = ("model", "replica")
RUNNING = gauge("turnout_replica_running_requests", "Requests the engine is running.", LABELS)
WAITING = gauge("turnout_replica_waiting_requests", "Requests queued in the engine.", LABELS)
KV_USED = gauge("turnout_replica_kv_used_blocks", "KV cache blocks in use.", LABELS)
KV_CAPACITY = gauge("turnout_replica_kv_capacity_blocks", "KV cache blocks in the engine.", LABELS)
KV_USAGE = gauge("turnout_replica_kv_usage_ratio", "Share of KV blocks in use (0..1).", LABELS)
FREENESS = gauge("turnout_replica_freeness_blocks",
                 "Llumnix freeness: free KV blocks per running request after the queue's needs "
                 "(absent while draining).", LABELS)
TOKENS_IN_FLIGHT = gauge("turnout_replica_in_flight_tokens",
                         "Prompt + generated tokens of the requests on the replica.", LABELS)
DRAINING = gauge("turnout_replica_draining", "1 while the replica is being drained.", LABELS)
ABORTED = counter("turnout_replica_aborted_requests",
                  "Requests aborted on the replica (client gone, drained, migrated away).", LABELS)


def record_replica_stats(stats: ReplicaStats) -> None:
    labels = {"model": stats.model, "replica": stats.replica_id}
    RUNNING.set(stats.running, **labels)
    WAITING.set(stats.waiting, **labels)
    KV_USED.set(stats.kv_blocks_used, **labels)
    KV_CAPACITY.set(stats.kv_blocks_total, **labels)
    KV_USAGE.set(stats.kv_usage, **labels)
    TOKENS_IN_FLIGHT.set(stats.tokens_in_flight, **labels)
    DRAINING.set(1 if stats.draining else 0, **labels)
    if not stats.draining:  # freeness is -inf while draining: let the series lapse
        FREENESS.set(stats.freeness, **labels)


def record_aborted(model: str, replica: str, count: int = 1) -> None:
    ABORTED.inc(count, model=model, replica=replica)
