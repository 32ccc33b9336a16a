"""Rescheduling policies: which running requests to move where. Pure functions over snapshots.

`plan_migrations(snapshots, config, now)` composes, in this order of urgency:
1. draining: every request off a draining replica, each to the freest other replica;
2. priority: room for a queued high-priority request, and the configured headroom,
   by moving normal-priority requests off that replica;
3. de-fragmentation: a queued request that no replica can hold gets room on the replica
   it waits on, by moving that replica's requests to replicas that can hold them;
4. load balancing (Llumnix): pair the least free replica with the most free one and move
   the request that shrinks their freeness gap the most, while the gap shrinks.
A replica takes part in at most `max_migrations_per_replica` migrations at a time
(in flight ones included); a request already migrating never moves; stale snapshots
are left out. Each step updates a working copy of the fleet, so later steps see the
effect of earlier decisions. The live rescheduler and the fleet simulator call this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from migration.config import MigrationSpec
from replicas.stats import ReplicaStats, RequestLoad


@dataclass(frozen=True)
class Migration:
    request_id: str
    source: str
    destination: str
    reason: str  # "drain" | "priority" | "defrag" | "balance"


@dataclass
class _Replica:
    """A working copy of one replica: what the planned moves have left of it."""

    rid: str
    free: int
    running: int
    waiting_needed: int
    headroom: int
    draining: bool
    slots: int
    block_size: int
    requests: list[RequestLoad] = field(default_factory=list)
    # Running requests the policies may move (computed once, shrinks as moves are planned).
    candidates: list[RequestLoad] = field(default_factory=list)

    @property
    def freeness(self) -> float:
        if self.draining:
            return float("-inf")
        return (self.free - self.waiting_needed - self.headroom) / max(self.running, 1)

    def room(self) -> int:
        """Blocks a newcomer may take without eating the queue's needs or the headroom."""
        return self.free - self.waiting_needed - self.headroom

    def movable(self) -> list[RequestLoad]:
        return self.candidates

    def queued(self) -> list[RequestLoad]:
        return [r for r in self.requests if r.waiting and not r.migrating]

    def blocks_for(self, r: RequestLoad) -> int:
        return -(-r.num_tokens // self.block_size)


def _views(snapshots: Sequence[ReplicaStats], cfg: MigrationSpec, now: float,
           in_flight: Iterable[Migration]) -> list[_Replica]:
    busy: dict[str, int] = {}
    for m in in_flight:
        busy[m.source] = busy.get(m.source, 0) + 1
        busy[m.destination] = busy.get(m.destination, 0) + 1
    views = []
    for s in snapshots:
        if s.age(now) > cfg.max_stats_age_s:
            continue
        migrating = sum(1 for r in s.requests if r.migrating)
        used = max(busy.get(s.replica_id, 0), migrating)
        views.append(_Replica(
            rid=s.replica_id, free=s.free_blocks, running=s.running,
            waiting_needed=s.waiting_blocks_needed, headroom=max(s.headroom_blocks, cfg.headroom_blocks),
            draining=s.draining, slots=cfg.max_migrations_per_replica - used,
            block_size=s.block_size, requests=list(s.requests),
            candidates=[r for r in s.requests if _movable(r, cfg)]))
    return views


def _movable(r: RequestLoad, cfg: MigrationSpec) -> bool:
    return (not r.migrating and not r.waiting and r.num_blocks >= cfg.min_request_blocks
            and (cfg.max_request_blocks == 0 or r.num_blocks <= cfg.max_request_blocks))


def _move(src: _Replica, dst: _Replica, r: RequestLoad, reason: str, out: list[Migration]) -> None:
    """Record a move and update both working copies."""
    src.requests.remove(r)
    if r in src.candidates:
        src.candidates.remove(r)
    src.slots -= 1
    dst.slots -= 1
    if r.waiting:
        need = src.blocks_for(r)
        src.waiting_needed = max(src.waiting_needed - need, 0)
        dst.waiting_needed += need
    else:
        src.free += r.num_blocks
        src.running = max(src.running - 1, 0)
        dst.free -= r.num_blocks
        dst.running += 1
    out.append(Migration(r.request_id, src.rid, dst.rid, reason))


def _needs(r: RequestLoad, src: _Replica) -> int:
    return src.blocks_for(r) if r.waiting else r.num_blocks


def _freest_taker(views: list[_Replica], src: _Replica, blocks: int) -> _Replica | None:
    """The freest other replica with a free slot and room for `blocks`."""
    takers = [v for v in views if v is not src and not v.draining and v.slots > 0 and v.room() >= blocks]
    return max(takers, key=lambda v: (v.freeness, -v.running, v.rid), default=None)


def plan_drain(views: list[_Replica], out: list[Migration]) -> None:
    for src in (v for v in views if v.draining):
        for r in sorted(src.requests, key=lambda r: (r.migrating, r.waiting, r.num_blocks)):
            if src.slots <= 0 or r.migrating:
                break
            dst = _freest_taker(views, src, _needs(r, src))
            if dst is not None:
                _move(src, dst, r, "drain", out)


def _make_room(views: list[_Replica], src: _Replica, target: int, candidates: list[RequestLoad],
               reason: str, out: list[Migration]) -> None:
    """Move candidates (largest first: fewest moves) off src until it has `target` free blocks."""
    for r in sorted(candidates, key=lambda r: -r.num_blocks):
        if src.free >= target or src.slots <= 0:
            return
        dst = _freest_taker(views, src, r.num_blocks)
        if dst is not None:
            _move(src, dst, r, reason, out)


def plan_priority(views: list[_Replica], cfg: MigrationSpec, out: list[Migration]) -> None:
    for src in views:
        if src.draining or src.slots <= 0:
            continue
        urgent = [r for r in src.queued() if r.priority >= cfg.high_priority]
        target = max([src.blocks_for(r) for r in urgent[:1]] + [cfg.headroom_blocks])
        if src.free >= target or (not urgent and target == 0):
            continue
        normal = [r for r in src.movable() if r.priority < cfg.high_priority]
        _make_room(views, src, target, normal, "priority", out)


def plan_defrag(views: list[_Replica], cfg: MigrationSpec, out: list[Migration]) -> None:
    if not cfg.defragment:
        return
    for src in views:
        queued = src.queued()
        if src.draining or src.slots <= 0 or not queued:
            continue
        need = src.blocks_for(queued[0])
        if any(v.free >= need for v in views if not v.draining):
            continue  # some replica can hold it: dispatch and balancing handle that
        movable = src.movable()
        if src.free + sum(r.num_blocks for r in movable) < need:
            continue  # even an empty src could not hold it
        _make_room(views, src, need, movable, "defrag", out)


def plan_balance(views: list[_Replica], cfg: MigrationSpec, out: list[Migration]) -> None:
    while True:
        sources = [v for v in views if not v.draining and v.slots > 0 and v.movable()
                   and v.freeness < cfg.balance_source_freeness]
        if not sources:
            return
        src = min(sources, key=lambda v: (v.freeness, v.rid))
        dsts = [v for v in views if v is not src and not v.draining and v.slots > 0]
        if not dsts:
            return
        dst = max(dsts, key=lambda v: (v.freeness, -v.running, v.rid))
        gap = dst.freeness - src.freeness
        if gap <= cfg.balance_min_gap:
            return
        best = _best_move(src, dst, cfg, gap)
        if best is None:
            src.slots = 0  # nothing on it helps; let the next pair try
            continue
        _move(src, dst, best, "balance", out)


def _best_move(src: _Replica, dst: _Replica, cfg: MigrationSpec, gap: float) -> RequestLoad | None:
    """The request whose move shrinks the gap the most (fewer blocks on ties), if any does."""
    best, best_gap = None, gap
    for r in src.movable():
        if dst.room() < r.num_blocks:
            continue
        s_f = (src.free + r.num_blocks - src.waiting_needed - src.headroom) / max(src.running - 1, 1)
        d_f = (dst.free - r.num_blocks - dst.waiting_needed - dst.headroom) / (dst.running + 1)
        new_gap = abs(d_f - s_f)
        if new_gap < best_gap or (best is not None and new_gap == best_gap and r.num_blocks < best.num_blocks):
            best, best_gap = r, new_gap
    return best


def plan_migrations(snapshots: Sequence[ReplicaStats], config: MigrationSpec, now: float,
                    in_flight: Iterable[Migration] = ()) -> list[Migration]:
    views = _views(snapshots, config, now, in_flight)
    out: list[Migration] = []
    plan_drain(views, out)
    plan_priority(views, config, out)
    plan_defrag(views, config, out)
    plan_balance(views, config, out)
    return out
