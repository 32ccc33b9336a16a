"""One simulated vLLM V1 engine: continuous batching, chunked prefill, KV blocks, preemption.

The scheduler follows vLLM V1: running requests first (decode 1 token, or the next chunk
of a prefill) within a token budget, preempting the newest lowest-priority running request
when a block cannot be allocated (recompute preemption: it loses its KV and goes back to
the front of the queue to prefill prompt + generated tokens again); then queued requests
in order while budget and blocks last (none after a preemption in the same step).

Speed: a step is simulated one at a time only while prefills or preemptions happen. A
batch that only decodes keeps its members until a request finishes or a block runs out,
and both are computed in closed form, so one event covers many steps (no per-token loop).
An outside change (arrival, migration) cuts such a run at the next step boundary.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

from migration.sim.profile import Profile
from replicas.stats import ReplicaStats, RequestLoad


class Req:
    __slots__ = ("idx", "arrival", "prompt", "output", "priority", "computed", "generated", "todo",
                 "blocks", "first_token", "finish", "preemptions", "migrating", "rep", "migrations")

    def __init__(self, idx: int, arrival: float, prompt: int, output: int, priority: int) -> None:
        self.idx, self.arrival, self.prompt, self.output, self.priority = idx, arrival, prompt, output, priority
        self.computed = 0  # tokens whose KV is in the cache
        self.generated = 0
        self.todo = prompt  # tokens still to prefill (prompt, or prompt + generated after preemption)
        self.blocks = 0
        self.first_token = -1.0
        self.finish = -1.0
        self.preemptions = 0
        self.migrations = 0
        self.migrating = False
        self.rep = -1


class Replica:
    def __init__(self, index: int, profile: Profile, headroom: int = 0, high_priority: int = 1) -> None:
        self.index = index
        self.rid = f"r{index}"
        self.p = profile
        self.headroom = headroom
        self.high_priority = high_priority
        self.running: list[Req] = []
        self.waiting: deque[Req] = deque()
        self.waiting_blocks = 0  # blocks the queue needs (sum over queued requests)
        self.free = profile.num_blocks
        self.draining = False
        self.preemptions = 0
        # The current plan: start, number of steps, step-time terms, the scheduled set.
        self.busy = False
        self.version = 0
        self.t0 = 0.0
        self.end = 0.0
        self.k = 0
        self.a = 0.0
        self.b = 0.0
        self.sched: list[tuple[Req, int]] | None = None  # None: a decode-only run of k steps
        self.outgoing: list[Req] = []  # migrated requests leaving at the next boundary
        self.incoming: list[Req] = []  # migrated requests joining at the next boundary

    # ---- queue -------------------------------------------------------------------------
    def _need(self, r: Req) -> int:
        return -(-r.todo // self.p.block_size)

    def enqueue(self, r: Req, front: bool = False) -> None:
        r.rep = self.index
        self.waiting_blocks += self._need(r)
        if front:
            self.waiting.appendleft(r)
        elif r.priority > 0 and self.waiting and self.waiting[-1].priority < r.priority:
            pos = next(i for i, w in enumerate(self.waiting) if w.priority < r.priority)
            self.waiting.insert(pos, r)
        else:
            self.waiting.append(r)

    def dequeue(self, r: Req) -> None:
        self.waiting.remove(r)
        self.waiting_blocks -= self._need(r)

    def _preempt(self, r: Req) -> None:
        self.running.remove(r)
        self.free += r.blocks
        r.blocks = 0
        r.computed = 0
        r.todo = r.prompt + r.generated
        r.preemptions += 1
        self.preemptions += 1
        self.enqueue(r, front=True)

    def _victim(self, start: int) -> Req:
        """The newest request with the lowest priority among running[start:]."""
        best = None
        for r in reversed(self.running[start:]):
            if best is None or r.priority < best.priority:
                best = r
        return best

    # ---- planning ------------------------------------------------------------------------
    def begin(self, now: float) -> float | None:
        """Plan the next step(s) from a boundary at `now`; returns when they end (None: idle)."""
        self.version += 1
        if not self._plan_decode_run():
            self._plan_step()
            if not self.sched and self.waiting:  # everything was preempted: admit next step
                self._plan_step()
        if self.sched is not None and not self.sched:
            self.busy = False
            return None
        self.busy = True
        self.t0 = now
        self.end = now + self.k * self.a + self.b * self.k * (self.k - 1) / 2
        return self.end

    def _admissible(self, budget: int) -> bool:
        if not self.waiting or budget <= 0 or len(self.running) >= self.p.max_num_seqs:
            return False
        r = self.waiting[0]
        limit = self.free
        if r.priority < self.high_priority and self.running:
            limit -= self.headroom
        return -(-min(r.todo, budget) // self.p.block_size) <= limit

    def _plan_decode_run(self) -> bool:
        run = self.running
        n = len(run)
        if not n or self.free < 0 or self._admissible(self.p.max_num_batched_tokens - n):
            return False
        bs = self.p.block_size
        ctx = 0
        left = 1 << 60
        firsts = []
        for r in run:
            if r.todo:
                return False
            ctx += r.computed
            left = min(left, r.output - r.generated)
            firsts.append(-r.computed % bs + 1)  # the step at which it needs its next block
        firsts.sort()
        cycles, rest = divmod(self.free, n)
        k = min(left, cycles * bs + firsts[rest] - 1)
        if k <= 1:
            return False
        self.k, self.sched = k, None
        self.a = self.p.step_time(0, n, ctx)
        self.b = self.p.context_token_s * n
        return True

    def _plan_step(self) -> None:
        bs = self.p.block_size
        budget = self.p.max_num_batched_tokens
        sched: list[tuple[Req, int]] = []
        preempted = False
        run = self.running
        i = 0
        while i < len(run) and budget > 0:
            r = run[i]
            ntok = min(r.todo, budget) if r.todo else 1
            need = -(-(r.computed + ntok) // bs) - r.blocks
            while need > self.free:
                victim = self._victim(i)
                self._preempt(victim)
                preempted = True
                if victim is r:
                    break
            if i < len(run) and run[i] is r:
                self.free -= need
                r.blocks += need
                budget -= ntok
                sched.append((r, ntok))
                i += 1
        while not preempted and self._admissible(budget):
            r = self.waiting.popleft()
            self.waiting_blocks -= self._need(r)
            ntok = min(r.todo, budget)
            need = -(-ntok // bs)
            self.free -= need
            r.blocks = need
            budget -= ntok
            run.append(r)
            sched.append((r, ntok))
        prefill = sum(n for r, n in sched if r.todo)
        decoding = [r for r, _ in sched if not r.todo]
        self.k, self.sched, self.b = 1, sched, 0.0
        self.a = self.p.step_time(prefill, len(decoding), sum(r.computed for r in decoding))

    # ---- progress ------------------------------------------------------------------------
    def cut(self, now: float) -> float | None:
        """End a decode run at the first step boundary at or after `now`; the new end if it moved."""
        if not self.busy or self.sched is not None or self.k <= 1:
            return None
        dt = now - self.t0
        a, b = self.a, self.b
        if b > 0:
            j = math.ceil((-(a - b / 2) + math.sqrt((a - b / 2) ** 2 + 2 * b * dt)) / b - 1e-9)
        else:
            j = math.ceil(dt / a - 1e-9)
        j = max(j, 1)
        if j >= self.k:
            return None
        self.k = j
        self.end = self.t0 + j * a + b * j * (j - 1) / 2
        self.version += 1
        return self.end

    def finish(self, now: float) -> list[Req]:
        """Apply the planned steps' progress at their end; returns the requests that completed."""
        self.busy = False
        done: list[Req] = []
        bs = self.p.block_size
        if self.sched is None:
            k = self.k
            for r in self.running:
                r.computed += k
                r.generated += k
                new = -(-r.computed // bs)
                self.free -= new - r.blocks
                r.blocks = new
                if r.generated >= r.output:
                    done.append(r)
        else:
            for r, ntok in self.sched:
                r.computed += ntok
                if r.todo:
                    r.todo -= ntok
                    if r.todo:
                        continue
                r.generated += 1
                if r.first_token < 0:
                    r.first_token = now
                if r.generated >= r.output:
                    done.append(r)
        for r in done:
            self.running.remove(r)
            self.free += r.blocks
            r.blocks = 0
            r.finish = now
        return done

    # ---- stats ---------------------------------------------------------------------------
    def free_at(self, now: float) -> float:
        """Free blocks now, projecting a decode run's growth (stats are read mid-run)."""
        if not self.busy or self.sched is not None:
            return self.free
        steps = min((now - self.t0) / self.a, self.k) if self.a > 0 else 0.0
        return self.free - max(steps, 0.0) * len(self.running) / self.p.block_size

    def stats(self, now: float, with_requests: bool = False, queue_head: int = 4) -> ReplicaStats:
        """A snapshot; with requests, the running ones and the first `queue_head` queued ones
        (the policies only look at the head of a queue; its total need is a number)."""
        reqs: tuple[RequestLoad, ...] = ()
        if with_requests:
            reqs = tuple(RequestLoad(str(r.idx), r.computed, r.blocks, r.priority, r.generated, r.migrating)
                         for r in self.running) + tuple(
                RequestLoad(str(r.idx), r.todo, 0, r.priority, r.generated, r.migrating, waiting=True)
                for r in itertools.islice(self.waiting, queue_head))
        free = int(self.free_at(now))
        return ReplicaStats(
            replica_id=self.rid, model="sim", running=len(self.running), waiting=len(self.waiting),
            kv_blocks_used=self.p.num_blocks - free, kv_blocks_total=self.p.num_blocks,
            block_size=self.p.block_size, waiting_blocks_needed=self.waiting_blocks,
            headroom_blocks=self.headroom, requests=reqs, draining=self.draining, timestamp=now)
