"""Dispatch policies: which replica takes a new request. Pure functions over ReplicaStats.

The live request router, the tests and the fleet simulator call these same functions.
- round_robin: the next replica in turn (the caller keeps the counter).
- power_of_two: two random replicas, the one with fewer ongoing requests wins
  (Ray Serve's default request router behaves this way).
- freeness: the replica with the most Llumnix freeness (free KV blocks per running
  request, after what its queue needs); ties go to fewer running requests, then the
  smaller replica id. When the stats are stale it falls back to power_of_two, because
  freeness read from old numbers herds every request onto one replica.
Priorities: a high-priority request may use the headroom blocks a replica holds back,
so its freeness counts them and normal requests' freeness does not.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from replicas.stats import ReplicaStats

# Requests at or above this priority may use the headroom blocks.
HIGH_PRIORITY = 1
# Stats older than this (seconds) are stale: the live stats period is 0.1 s.
MAX_STATS_AGE_S = 0.5


def _accepting(stats: Sequence[ReplicaStats]) -> list[ReplicaStats]:
    """Replicas that may take new work: not draining (all of them if every one drains)."""
    if not stats:
        raise ValueError("no replicas to dispatch to")
    open_ = [s for s in stats if not s.draining]
    return open_ or list(stats)


def round_robin(stats: Sequence[ReplicaStats], counter: int) -> tuple[str, int]:
    """The replica at `counter` (mod the fleet) and the next counter value."""
    pool = _accepting(stats)
    return pool[counter % len(pool)].replica_id, counter + 1


def ongoing(s: ReplicaStats) -> int:
    return s.running + s.waiting


def power_of_two(stats: Sequence[ReplicaStats], rng: random.Random,
                 ongoing_requests: Mapping[str, int] | None = None) -> str:
    """Two random candidates; fewer ongoing requests wins (a coin flip breaks ties).

    `ongoing_requests` overrides the counts with the caller's own view (Ray Serve's
    router counts the requests it sent and has not seen finish)."""
    pool = _accepting(stats)
    if len(pool) == 1:
        return pool[0].replica_id
    a, b = rng.sample(pool, 2)

    def load(s: ReplicaStats) -> int:
        return ongoing_requests.get(s.replica_id, 0) if ongoing_requests is not None else ongoing(s)

    if load(a) == load(b):
        return (a if rng.random() < 0.5 else b).replica_id
    return (a if load(a) < load(b) else b).replica_id


def freeness_for(s: ReplicaStats, priority: int = 0) -> float:
    """Freeness as a request of this priority sees it: high priority counts the headroom."""
    if s.draining:
        return float("-inf")
    extra = s.headroom_blocks if priority >= HIGH_PRIORITY else 0
    return s.freeness + extra / max(s.running, 1)


def is_stale(s: ReplicaStats, now: float, max_age_s: float = MAX_STATS_AGE_S) -> bool:
    return s.age(now) > max_age_s


def rank_by_freeness(stats: Sequence[ReplicaStats], now: float, rng: random.Random,
                     priority: int = 0, max_age_s: float = MAX_STATS_AGE_S) -> list[str]:
    """Replica ids, most free first (ties: fewer running, then id). With stale stats the
    power-of-two choice comes first and the rest follow in freeness order."""
    pool = _accepting(stats)
    order = sorted(pool, key=lambda s: (-freeness_for(s, priority), s.running, s.replica_id))
    ids = [s.replica_id for s in order]
    if any(is_stale(s, now, max_age_s) for s in pool):
        first = power_of_two(pool, rng)
        ids.remove(first)
        ids.insert(0, first)
    return ids


def freeness(stats: Sequence[ReplicaStats], now: float, rng: random.Random, priority: int = 0,
             max_age_s: float = MAX_STATS_AGE_S) -> str:
    """The freest replica; power_of_two when any replica's stats are stale."""
    return rank_by_freeness(stats, now, rng, priority, max_age_s)[0]


def dispatch(policy: str, stats: Sequence[ReplicaStats], now: float, rng: random.Random,
             counter: int = 0, priority: int = 0) -> tuple[str, int]:
    """One entry point by policy name; returns (replica id, next round-robin counter)."""
    if policy == "round_robin":
        return round_robin(stats, counter)
    if policy == "power_of_two":
        return power_of_two(stats, rng), counter
    if policy in ("freeness", "freeness_migration"):
        return freeness(stats, now, rng, priority), counter
    raise ValueError(f"unknown dispatch policy {policy!r}")
