"""The discrete-event fleet simulator: a trace, N simulated engines, a dispatch policy and,
for freeness_migration, the rescheduler's policies with a migration cost model.

Dispatch and migration decisions come from replicas.dispatch and migration.policies, the
same functions the live system runs; the simulator only feeds them ReplicaStats snapshots.
At large fleets it pre-selects candidates with numpy (the freest replicas by the same
freeness formula) so one decision does not build a thousand snapshots.

Events (a heap): step ends of each replica (a decode-only run covers many steps),
arrivals (merged from the sorted trace), rescheduler ticks, migration copy done,
migrated request arriving. Migration: the destination reserves the request's blocks,
the KV is copied while the request keeps decoding (pre-copy), then the source drops it at
a step boundary and it resumes on the destination after the downtime; if it finished or
was preempted meanwhile the migration is cancelled and nothing is lost.
"""

from __future__ import annotations

import heapq
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from migration.config import MigrationSpec
from migration.policies import Migration, plan_migrations
from migration.sim.profile import Profile
from migration.sim.replica import Replica, Req
from migration.sim.trace import Trace
from replicas import dispatch

POLICIES = ("round_robin", "power_of_two", "freeness", "freeness_migration")
STEP, TICK, COPIED, LANDED = 0, 1, 2, 3
# Candidates handed to the pure policies per decision on large fleets.
TOP_K = 8


@dataclass
class SimConfig:
    policy: str
    replicas: int
    profile: Profile
    seed: int = 0
    migration: MigrationSpec = field(default_factory=MigrationSpec)
    high_priority_fraction: float = 0.0
    progress: bool = False


class Fleet:
    def __init__(self, cfg: SimConfig, trace: Trace) -> None:
        if cfg.policy not in POLICIES:
            raise ValueError(f"unknown policy {cfg.policy!r} (one of {', '.join(POLICIES)})")
        self.cfg = cfg
        self.trace = trace
        self.rng = random.Random(cfg.seed)
        spec = cfg.migration
        self.reps = [Replica(i, cfg.profile, spec.headroom_blocks, spec.high_priority)
                     for i in range(cfg.replicas)]
        self.by_id = {r.rid: r for r in self.reps}
        prio_rng = np.random.default_rng(cfg.seed + 1)
        high = prio_rng.random(len(trace)) < cfg.high_priority_fraction
        self.reqs = [Req(i, float(t), int(p), int(o), int(h)) for i, (t, p, o, h) in
                     enumerate(zip(trace.arrival_s, trace.prompt, trace.output, high, strict=True))]
        self.heap: list[tuple] = []
        self.seq = 0
        self.rr = 0
        self.in_flight: dict[int, tuple[Migration, int, int]] = {}  # req idx -> (m, reserved, epoch)
        self.migrations = 0
        self.completed = 0
        self.now = 0.0
        self.views = [_Light(p) for p in self.reps]
        # Per-replica columns for vectorized freeness: free blocks at the plan start, their
        # decline rate during a decode run (blocks/s) and its cap, queue needs + headroom.
        n = cfg.replicas
        self.free0 = np.full(n, float(cfg.profile.num_blocks))
        self.t0 = np.zeros(n)
        self.rate = np.zeros(n)
        self.cap = np.zeros(n)
        self.need = np.full(n, float(spec.headroom_blocks))
        self.nrun = np.ones(n)
        self.draining = np.zeros(n, dtype=bool)
        self.head_need = np.zeros(n)  # blocks the head of each queue needs

    # ---- events --------------------------------------------------------------------------
    def _push(self, t: float, kind: int, a: object, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    def _start(self, rep: Replica, now: float) -> None:
        for r in rep.incoming:
            rep.running.append(r)
        rep.incoming.clear()
        end = rep.begin(now)
        if end is not None:
            self._push(end, STEP, rep.index, rep.version)
        self._sync(rep)

    def _sync(self, rep: Replica) -> None:
        i = rep.index
        self.free0[i] = rep.free
        self.t0[i] = rep.t0
        n = len(rep.running)
        if rep.busy and rep.sched is None and rep.a > 0:
            self.rate[i] = n / rep.p.block_size / rep.a
            self.cap[i] = rep.k * n / rep.p.block_size
        else:
            self.rate[i] = self.cap[i] = 0.0
        self.need[i] = rep.waiting_blocks + rep.headroom
        self.nrun[i] = max(n, 1)
        self.draining[i] = rep.draining
        self.head_need[i] = -(-rep.waiting[0].todo // rep.p.block_size) if rep.waiting else 0

    def _poke(self, rep: Replica, now: float) -> None:
        """Something changed on rep: idle -> start now; in a decode run -> cut it short."""
        if not rep.busy:
            self._start(rep, now)
        else:
            end = rep.cut(now)
            if end is not None:
                self._push(end, STEP, rep.index, rep.version)
            self._sync(rep)

    def run(self) -> Fleet:
        arrivals = self.reqs
        n = len(arrivals)
        i = 0
        if self.cfg.policy == "freeness_migration":
            self._push(0.0, TICK, None)
        wall0, last_report = time.perf_counter(), time.perf_counter()
        while self.completed < n:
            if i < n and (not self.heap or arrivals[i].arrival <= self.heap[0][0]):
                self.now = arrivals[i].arrival
                self._arrive(arrivals[i])
                i += 1
                continue
            t, _, kind, a, b = heapq.heappop(self.heap)
            self.now = t
            if kind == STEP:
                self._step_end(self.reps[a], b)
            elif kind == TICK:
                self._tick()
            elif kind == COPIED:
                self._copied(a)
            else:
                self._landed(a)
            if self.cfg.progress and time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                print(f"  sim {self.cfg.policy}: t={t:,.0f}s completed {self.completed:,}/{n:,} "
                      f"wall {last_report - wall0:.0f}s", file=sys.stderr, flush=True)
        return self

    def _step_end(self, rep: Replica, version: int) -> None:
        if version != rep.version:
            return  # a cut plan: its new end is queued
        for r in rep.finish(self.now):
            if r.finish != self.now:
                raise RuntimeError(f"request {r.idx} completed twice")
            self.completed += 1
        for m in rep.outgoing:
            self._leave(rep, m)
        rep.outgoing.clear()
        self._start(rep, self.now)

    # ---- dispatch ------------------------------------------------------------------------
    def _arrive(self, r: Req) -> None:
        rep = self.by_id[self._choose(r)]
        rep.enqueue(r)
        self._poke(rep, self.now)

    def _choose(self, r: Req) -> str:
        policy = self.cfg.policy
        if policy == "round_robin":
            rid, self.rr = dispatch.round_robin(self._light(), self.rr)
            return rid
        if policy == "power_of_two":
            return dispatch.power_of_two(self._light(), self.rng)
        cands = self._freest(TOP_K)
        return dispatch.freeness([c.stats(self.now) for c in cands], self.now, self.rng, r.priority)

    def _light(self) -> list:
        return self.views

    def _freeness(self) -> np.ndarray:
        """Every replica's freeness now (the ReplicaStats formula, vectorized)."""
        free = self.free0 - np.minimum(self.rate * (self.now - self.t0), self.cap)
        f = (np.floor(free) - self.need) / self.nrun
        f[self.draining] = -np.inf
        return f

    def _freest(self, k: int) -> list[Replica]:
        if len(self.reps) <= k:
            return self.reps
        f = self._freeness()
        return [self.reps[j] for j in np.argpartition(-f, k)[:k]]

    # ---- rescheduling --------------------------------------------------------------------
    def _tick(self) -> None:
        spec = self.cfg.migration
        if self.completed < len(self.reqs):
            self._push(self.now + spec.rescheduler_interval_s, TICK, None)
        f = self._freeness()
        cands = self._candidates(f)
        if not cands:
            return
        # Requests only where a policy may take some (a source); the rest are destinations.
        low = self.cfg.migration.balance_source_freeness
        snaps = [p.stats(self.now, with_requests=f[p.index] < low or p.waiting or p.draining)
                 for p in cands]
        flying = [m for m, _, _ in self.in_flight.values()]
        for m in plan_migrations(snaps, spec, self.now, flying):
            self._migrate(m)

    def _candidates(self, f: np.ndarray) -> list[Replica]:
        """Replicas the policies could act on; none when no policy would act (a shortcut:
        the pure policies decide, this only skips ticks where they surely do nothing)."""
        spec = self.cfg.migration
        free = self.free0 - np.minimum(self.rate * (self.now - self.t0), self.cap)
        live = f[~self.draining]
        balance = len(live) > 1 and live.max() - live.min() > spec.balance_min_gap \
            and live.min() < spec.balance_source_freeness
        defrag = spec.defragment and self.head_need.max() > free.max()
        urgent = spec.headroom_blocks > 0 or self.cfg.high_priority_fraction > 0
        if not (balance or defrag or urgent or self.draining.any()):
            return []
        if len(self.reps) <= 4 * TOP_K:
            return self.reps
        pick = set(np.argpartition(f, TOP_K)[:TOP_K]) | set(np.argpartition(-f, TOP_K)[:TOP_K])
        pick |= set(np.argpartition(-free, TOP_K)[:TOP_K])
        pick |= set(np.flatnonzero(self.draining))
        return [self.reps[j] for j in sorted(pick)]

    def _migrate(self, m: Migration) -> None:
        r = self.reqs[int(m.request_id)]
        src, dst = self.by_id[m.source], self.by_id[m.destination]
        if r.rep != src.index or r.migrating or r.finish >= 0:
            return
        if r.blocks == 0 and r in src.waiting:  # queued: no KV, it just changes queue
            src.dequeue(r)
            dst.enqueue(r)
            self.migrations += 1
            self._sync(src)
            self._poke(dst, self.now)
            return
        reserve = r.blocks + 1
        if dst.free < reserve:
            return  # the destination cannot take it: it stays, nothing lost
        dst.free -= reserve
        r.migrating = True
        self.in_flight[r.idx] = (m, reserve, r.preemptions)
        self._poke(dst, self.now)
        self._push(self.now + self.cfg.profile.block_copy_s * r.blocks, COPIED, r)

    def _cancel(self, r: Req) -> None:
        m, reserve, _ = self.in_flight.pop(r.idx)
        self.by_id[m.destination].free += reserve
        r.migrating = False
        self._poke(self.by_id[m.destination], self.now)

    def _copied(self, r: Req) -> None:
        m, _, epoch = self.in_flight[r.idx]
        src = self.by_id[m.source]
        if r.finish >= 0 or r.preemptions != epoch or r not in src.running:
            self._cancel(r)
            return
        src.outgoing.append(r)
        self._poke(src, self.now)

    def _leave(self, src: Replica, r: Req) -> None:
        """At a source step boundary: stop-and-copy; the request lands after the downtime."""
        _, _, epoch = self.in_flight[r.idx]
        if r.finish >= 0 or r.preemptions != epoch or r not in src.running:
            self._cancel(r)
            return
        src.running.remove(r)
        src.free += r.blocks
        r.rep = -1
        self._push(self.now + self.cfg.profile.downtime_s, LANDED, r)

    def _landed(self, r: Req) -> None:
        m, reserve, _ = self.in_flight.pop(r.idx)
        dst = self.by_id[m.destination]
        dst.free += reserve - r.blocks
        dst.incoming.append(r)
        r.rep = dst.index
        r.migrating = False
        r.migrations += 1
        self.migrations += 1
        self._poke(dst, self.now)


class _Light:
    """A live view of what round-robin and power-of-two read (a ReplicaStats subset)."""

    __slots__ = ("rep", "replica_id")

    def __init__(self, rep: Replica) -> None:
        self.rep = rep
        self.replica_id = rep.rid

    @property
    def running(self) -> int:
        return len(self.rep.running) + len(self.rep.incoming)

    @property
    def waiting(self) -> int:
        return len(self.rep.waiting)

    @property
    def draining(self) -> bool:
        return self.rep.draining


def simulate(cfg: SimConfig, trace: Trace) -> Fleet:
    return Fleet(cfg, trace).run()
