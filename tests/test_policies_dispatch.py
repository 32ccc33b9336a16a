"""Dispatch policies on hand-built replica stats."""

import random

import pytest

from replicas import dispatch
from replicas.stats import ReplicaStats

NOW = 1000.0


def rs(rid, running=0, waiting=0, used=0, total=100, need=0, headroom=0, draining=False, age=0.0):
    return ReplicaStats(replica_id=rid, model="m", running=running, waiting=waiting, kv_blocks_used=used,
                        kv_blocks_total=total, waiting_blocks_needed=need, headroom_blocks=headroom,
                        draining=draining, timestamp=NOW - age)


def test_round_robin_cycles_and_skips_draining():
    stats = [rs("a"), rs("b", draining=True), rs("c")]
    picks, counter = [], 0
    for _ in range(4):
        rid, counter = dispatch.round_robin(stats, counter)
        picks.append(rid)
    assert picks == ["a", "c", "a", "c"]


def test_power_of_two_prefers_fewer_ongoing():
    stats = [rs("busy", running=5, waiting=3), rs("idle", running=1)]
    rng = random.Random(0)
    assert {dispatch.power_of_two(stats, rng) for _ in range(20)} == {"idle"}
    # the caller's own counts override the stats
    assert dispatch.power_of_two(stats, rng, {"busy": 0, "idle": 4}) == "busy"


def test_power_of_two_samples_only_two():
    # the least loaded replica is not always found: only two candidates are compared
    stats = [rs(f"r{i}", running=10) for i in range(9)] + [rs("best", running=0)]
    rng = random.Random(1)
    picks = [dispatch.power_of_two(stats, rng) for _ in range(50)]
    assert "best" in picks and any(p != "best" for p in picks)


def test_freeness_picks_most_free_per_running_request():
    stats = [rs("a", running=4, used=60), rs("b", running=2, used=60), rs("c", running=1, used=90)]
    # free per running: a 10, b 20, c 10
    assert dispatch.freeness(stats, NOW, random.Random(0)) == "b"


def test_freeness_counts_the_queue():
    stats = [rs("a", running=1, used=20, need=70), rs("b", running=1, used=50)]
    assert dispatch.freeness(stats, NOW, random.Random(0)) == "b"


def test_freeness_ties_break_by_running_then_id():
    stats = [rs("b", running=2, used=60), rs("a", running=4, used=20), rs("c", running=2, used=60)]
    assert dispatch.freeness(stats, NOW, random.Random(0)) == "b"  # 20 each; fewer running; id
    stats = [rs("z", running=2, used=60), rs("y", running=2, used=60)]
    assert dispatch.freeness(stats, NOW, random.Random(0)) == "y"


def test_freeness_never_picks_draining():
    stats = [rs("a", running=1, draining=True), rs("b", running=9, used=95)]
    assert dispatch.freeness(stats, NOW, random.Random(0)) == "b"


def test_stale_stats_fall_back_to_power_of_two():
    # "a" looks freest but has more ongoing requests; with stale stats p2c picks "b"
    fresh = [rs("a", running=3, waiting=4, used=0), rs("b", running=1, used=90)]
    assert dispatch.freeness(fresh, NOW, random.Random(0)) == "a"
    stale = [rs("a", running=3, waiting=4, used=0, age=5.0), rs("b", running=1, used=90)]
    assert {dispatch.freeness(stale, NOW, random.Random(s)) for s in range(10)} == {"b"}


def test_high_priority_may_use_headroom():
    stats = [rs("a", running=1, used=40, headroom=50), rs("b", running=1, used=80)]
    # normal: a has 60-50=10, b 20 -> b; high priority counts a's headroom: 60 vs 20 -> a
    assert dispatch.freeness(stats, NOW, random.Random(0), priority=0) == "b"
    assert dispatch.freeness(stats, NOW, random.Random(0), priority=dispatch.HIGH_PRIORITY) == "a"


def test_dispatch_by_name_and_errors():
    stats = [rs("a"), rs("b")]
    assert dispatch.dispatch("round_robin", stats, NOW, random.Random(0), counter=1) == ("b", 2)
    with pytest.raises(ValueError):
        dispatch.dispatch("nope", stats, NOW, random.Random(0))
    with pytest.raises(ValueError):
        dispatch.round_robin([], 0)
