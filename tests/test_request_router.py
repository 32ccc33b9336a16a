"""FreenessRequestRouter's choices on hand-built replica stats (Ray Serve's extension point,
driven here without Serve: the ranking and the in-transit charges are pure logic)."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace

from replicas.request_router import FreenessRequestRouter
from replicas.stats import ReplicaStats


def replica(rid: str, **stats) -> SimpleNamespace:
    raw = ReplicaStats(replica_id=rid, model="m", kv_blocks_total=160, block_size=32,
                       timestamp=time.time() - 0.05, **stats).to_dict()
    return SimpleNamespace(replica_id=SimpleNamespace(unique_id=rid), routing_stats=raw)


def pending(prompt: str = "hello " * 40, **extra) -> SimpleNamespace:
    return SimpleNamespace(args=[{"prompt": prompt, **extra}], kwargs={},
                           metadata=SimpleNamespace(internal_request_id=uuid.uuid4().hex),
                           routing_context=SimpleNamespace(should_backoff=False))


def router() -> FreenessRequestRouter:
    r = FreenessRequestRouter.__new__(FreenessRequestRouter)
    r.initialize_state(max_stats_age_s=60.0)  # about charges, not staleness (a slow CI step)
    return r


def first_choice(r: FreenessRequestRouter, replicas: list, req=None) -> str:
    ranks = asyncio.run(r.choose_replicas(replicas, req or pending()))
    return ranks[0][0].replica_id.unique_id


def test_a_burst_ranked_before_any_of_it_is_routed_spreads_over_the_replicas() -> None:
    r, fleet = router(), [replica("a"), replica("b"), replica("c")]
    picks = [first_choice(r, fleet) for _ in range(6)]
    assert sorted(picks) == ["a", "a", "b", "b", "c", "c"]


def test_the_charge_follows_the_replica_that_took_the_request() -> None:
    r, fleet = router(), [replica("a"), replica("b")]
    req = pending()
    assert first_choice(r, fleet, req) == "a"
    # Serve sent it to b after all: a is free again, b carries it.
    r.on_request_routed(req, SimpleNamespace(unique_id="b"), None)
    assert first_choice(r, fleet) == "a"


def test_freest_wins_draining_never_and_pinned_calls_go_where_named() -> None:
    r = router()
    fleet = [replica("busy", running=4, kv_blocks_used=120), replica("idle"),
             replica("drain", draining=True)]
    assert first_choice(r, fleet) == "idle"
    ranks = asyncio.run(r.choose_replicas(fleet, pending(replica_id="drain")))
    assert [x[0].replica_id.unique_id for x in ranks] == ["drain"]
    req = pending()
    ranks = asyncio.run(r.choose_replicas(fleet, req))
    assert [x[0].replica_id.unique_id for x in ranks] == ["idle", "busy"]  # never the draining one
    assert req.routing_context.should_backoff is True  # Serve backs off instead of spinning
