"""Rescheduling policies on hand-built snapshots."""

from migration.config import MigrationSpec
from migration.policies import Migration, plan_migrations
from replicas.stats import ReplicaStats, RequestLoad

NOW = 500.0


def req(rid, blocks, priority=0, migrating=False, waiting=False, tokens=None):
    return RequestLoad(rid, tokens if tokens is not None else blocks * 16, 0 if waiting else blocks,
                       priority=priority, migrating=migrating, waiting=waiting)


def rep(rid, reqs=(), total=100, draining=False, age=0.0, headroom=0):
    running = [r for r in reqs if not r.waiting]
    queued = [r for r in reqs if r.waiting]
    return ReplicaStats(
        replica_id=rid, model="m", running=len(running), waiting=len(queued),
        kv_blocks_used=sum(r.num_blocks for r in running), kv_blocks_total=total,
        waiting_blocks_needed=sum(-(-r.num_tokens // 16) for r in queued), headroom_blocks=headroom,
        requests=tuple(reqs), draining=draining, timestamp=NOW - age)


def spec(**kw):
    return MigrationSpec(**{"balance_min_gap": 2.0, "balance_source_freeness": 10.0, **kw})


def test_balance_moves_from_least_free_to_most_free():
    full = rep("full", [req("x", 40), req("y", 30), req("z", 25)])  # 5 free / 3 = 1.7
    empty = rep("empty", [req("w", 10)])  # 90 free
    plan = plan_migrations([full, empty], spec(), NOW)
    assert len(plan) == 1
    m = plan[0]
    assert (m.source, m.destination, m.reason) == ("full", "empty", "balance")
    assert m.request_id == "x"  # moving the biggest shrinks this gap the most


def test_balance_leaves_balanced_fleet_alone():
    a = rep("a", [req("x", 40), req("y", 10)])
    b = rep("b", [req("z", 45), req("w", 10)])
    assert plan_migrations([a, b], spec(), NOW) == []


def test_balance_never_moves_a_migrating_request():
    full = rep("full", [req("x", 60, migrating=True), req("y", 35)])
    empty = rep("empty", [])
    plan = plan_migrations([full, empty], spec(max_migrations_per_replica=2), NOW)
    assert [m.request_id for m in plan] == ["y"]


def test_cap_limits_migrations_per_replica_including_in_flight():
    full = rep("full", [req(f"r{i}", 19) for i in range(5)])
    e1, e2 = rep("e1", []), rep("e2", [])
    plan = plan_migrations([full, e1, e2], spec(max_migrations_per_replica=1), NOW)
    assert len(plan) == 1
    busy = [Migration("old", "full", "e1", "balance")]
    assert plan_migrations([full, e1, e2], spec(max_migrations_per_replica=1), NOW, busy) == []


def test_stale_snapshots_are_left_out():
    full = rep("full", [req("x", 40), req("y", 30), req("z", 25)])
    stale_empty = rep("empty", [], age=10.0)
    assert plan_migrations([full, stale_empty], spec(), NOW) == []


def test_drain_moves_everything_by_freeness():
    d = rep("d", [req("a", 10), req("b", 20), req("q", 0, waiting=True, tokens=64)], draining=True)
    roomy = rep("roomy", [req("x", 10)])  # 90 free
    tight = rep("tight", [req("y", 60), req("z", 20)])  # 20 free / 2
    plan = plan_migrations([d, roomy, tight], spec(max_migrations_per_replica=10), NOW)
    moved = {m.request_id: m for m in plan if m.reason == "drain"}
    assert set(moved) == {"a", "b", "q"}
    assert all(m.source == "d" and m.destination in ("roomy", "tight") for m in moved.values())
    assert moved["a"].destination == "roomy"  # the freest first
    # nothing is sent to the draining replica
    assert all(m.destination != "d" for m in plan)


def test_drain_respects_the_cap_over_several_ticks():
    d = rep("d", [req(str(i), 5) for i in range(4)], draining=True)
    others = [rep(f"o{i}", []) for i in range(4)]
    plan = plan_migrations([d, *others], spec(max_migrations_per_replica=2), NOW)
    assert len([m for m in plan if m.reason == "drain"]) == 2


def test_defrag_makes_room_for_a_request_no_replica_can_hold():
    # "a" has a queued request needing 50 blocks; no replica has 50 free
    a = rep("a", [req("a1", 30), req("a2", 30), req("big", 0, waiting=True, tokens=50 * 16)])  # 40 free
    b = rep("b", [req("b1", 35), req("b2", 30)])  # 35 free
    c = rep("c", [req("c1", 35), req("c2", 30)])  # 35 free
    plan = plan_migrations([a, b, c], spec(max_migrations_per_replica=2, balance_min_gap=1e9), NOW)
    frag = [m for m in plan if m.reason == "defrag"]
    assert frag and all(m.source == "a" for m in frag)
    freed = sum(30 for _ in frag)
    assert 40 + freed >= 50


def test_defrag_not_needed_when_some_replica_can_hold_it():
    a = rep("a", [req("a1", 60), req("big", 0, waiting=True, tokens=50 * 16)])
    b = rep("b", [])
    plan = plan_migrations([a, b], spec(balance_min_gap=1e9), NOW)
    assert [m for m in plan if m.reason == "defrag"] == []


def test_priority_makes_room_for_a_queued_high_priority_request():
    a = rep("a", [req("n1", 45), req("n2", 45), req("vip", 0, priority=1, waiting=True, tokens=20 * 16)])
    b = rep("b", [req("n3", 10)])
    plan = plan_migrations([a, b], spec(balance_min_gap=1e9), NOW)
    assert [(m.source, m.destination, m.reason) for m in plan] == [("a", "b", "priority")]
    assert plan[0].request_id in ("n1", "n2")


def test_priority_headroom_moves_only_normal_requests():
    a = rep("a", [req("hi", 50, priority=1), req("lo", 45)])  # 5 free < headroom 20
    b = rep("b", [])
    plan = plan_migrations([a, b], spec(headroom_blocks=20, balance_min_gap=1e9), NOW)
    assert [m.request_id for m in plan] == ["lo"]
    assert plan[0].reason == "priority"
