"""Live-migration metrics: started, completed, aborted, bytes moved, downtime."""

from __future__ import annotations

from replicas.telemetry import counter, gauge, histogram

LABELS = ("model", "reason")
STARTED = counter("turnout_migration_started", "Migrations started, by policy reason.", LABELS)
COMPLETED = counter("turnout_migration_completed", "Migrations that handed the request over.", LABELS)
ABORTED = counter("turnout_migration_aborted",
                  "Migrations rolled back (the request went on at the source).",
                  ("model", "reason", "cause"))
BYTES = counter("turnout_migration_transferred_bytes", "KV bytes sent between replicas.", ("model",))
DOWNTIME = histogram("turnout_migration_downtime_seconds",
                     "Stop-and-copy pause: source stops the request to destination's next token.",
                     ("model",), (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
DURATION = histogram("turnout_migration_duration_seconds",
                     "Whole migration, first pre-copy stage to handover.", ("model",))
IN_FLIGHT = gauge("turnout_migration_in_flight", "Migrations under way.", ("model",))


def record_started(model: str, reason: str) -> None:
    """`reason`: the policy that asked (balance, defrag, priority, drain, manual)."""
    STARTED.inc(model=model, reason=reason)


def record_completed(model: str, reason: str, *, bytes_sent: int, downtime_s: float,
                     duration_s: float) -> None:
    COMPLETED.inc(model=model, reason=reason)
    BYTES.inc(bytes_sent, model=model)
    DOWNTIME.observe(downtime_s, model=model)
    DURATION.observe(duration_s, model=model)


def record_aborted(model: str, reason: str, cause: str, bytes_sent: int = 0) -> None:
    """`cause`: why it rolled back (no_space, destination_died, timeout, source_died, ...)."""
    ABORTED.inc(model=model, reason=reason, cause=cause)
    BYTES.inc(bytes_sent, model=model)


def record_in_flight(model: str, count: int) -> None:
    IN_FLIGHT.set(count, model=model)
