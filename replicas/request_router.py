"""FreenessRequestRouter: Ray Serve's own extension point, dispatching by Llumnix freeness.

Each replica reports its stats through `record_routing_stats` (every 0.1 s); this router
ranks the candidates by the pure `replicas.dispatch` policy. Between two reports it
charges each replica with the blocks of the requests it has just sent there, so a burst
does not herd onto the replica that looked freest a moment ago. Stale stats fall back
to power-of-two choices (in `dispatch`).

A request may name its replica ("replica_id" in the payload or as a keyword): follow-up
calls for a migrated request, stats and admin calls reach exactly that replica.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

from replicas import dispatch
from replicas.stats import ReplicaStats

CHARS_PER_TOKEN = 4  # rough prompt-size estimate before tokenization
IN_TRANSIT_MAX_S = 2.0  # a report newer than this always includes what we sent
IN_REPORT_S = 0.15  # a report this soon after a send may have been taken before it arrived


def pinned_replica(pending: PendingRequest | None) -> str | None:
    if pending is None:
        return None
    target = pending.kwargs.get("replica_id")
    if target is None and pending.args and isinstance(pending.args[0], dict):
        target = pending.args[0].get("replica_id")
    return target


def request_key(pending: PendingRequest) -> str | int:
    """One request across its routing attempts: Serve's internal id (unique per call,
    see gateway/caller.py's own_request_context), else the object (its id may be reused
    once it is gone, so only as a fallback)."""
    return getattr(getattr(pending, "metadata", None), "internal_request_id", None) or id(pending)


def request_priority(pending: PendingRequest | None) -> int:
    if pending is not None and pending.args and isinstance(pending.args[0], dict):
        return int(pending.args[0].get("priority") or 0)
    return 0


def estimate_blocks(pending: PendingRequest | None, block_size: int) -> int:
    """Blocks a new request will take: its prompt's size, guessed from its text."""
    if pending is None or not pending.args or not isinstance(pending.args[0], dict):
        return 1
    req = pending.args[0]
    if req.get("prompt_token_ids") is not None:
        tokens = len(req["prompt_token_ids"])
    else:
        text = req.get("prompt") or "".join(str(m.get("content", "")) for m in req.get("messages") or [])
        tokens = len(text) // CHARS_PER_TOKEN + 8
    return max(1, math.ceil(tokens / max(block_size, 1)))


class FreenessRequestRouter(RequestRouter):
    def initialize_state(self, max_stats_age_s: float = dispatch.MAX_STATS_AGE_S, **_: Any) -> None:
        self.max_stats_age_s = max_stats_age_s
        self.rng = random.Random()
        # replica id -> {request key: (charged_at, blocks)}: requests sent (or about to be)
        # since its last stats report.
        self.in_transit: dict[str, dict[str | int, tuple[float, int]]] = {}
        self.charged_to: dict[str | int, str] = {}  # request key -> replica charged

    def _stats(self, replica: RunningReplica, now: float) -> ReplicaStats | None:
        raw = replica.routing_stats
        if not raw or "replica_id" not in raw:
            return None
        stats = ReplicaStats.from_dict(raw)
        charges = self.in_transit.get(stats.replica_id, {})
        sent = [(t, b) for t, b in charges.values() if t > stats.timestamp or now - t < IN_REPORT_S]
        if not sent:
            return stats
        # Requests we sent after the report are queued there as far as we know.
        return ReplicaStats.from_dict({**raw, "waiting": stats.waiting + len(sent),
                                       "waiting_blocks_needed": stats.waiting_blocks_needed
                                       + sum(b for _, b in sent)})

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None
                              ) -> list[list[RunningReplica]]:
        if pending_request is not None:
            # We always rank every candidate: if none takes the request, Serve must back
            # off before asking again instead of spinning (and starving the replies).
            pending_request.routing_context.should_backoff = True
        if not candidate_replicas:
            return []
        target = pinned_replica(pending_request)
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        if target is not None:
            return [[by_id[target]]] if target in by_id else []
        now = time.time()
        stats = [s for s in (self._stats(r, now) for r in candidate_replicas) if s is not None]
        if len(stats) < len(candidate_replicas):
            # A replica that has not reported yet: let Serve's queue-length probe decide.
            return [self.rng.sample(candidate_replicas, min(2, len(candidate_replicas)))]
        priority = request_priority(pending_request)
        self.block_size = stats[0].block_size
        ranked = dispatch.rank_by_freeness(stats, now, self.rng, priority, self.max_stats_age_s)
        # Charge the first choice now: a burst is ranked before any of it is routed, and
        # charging only once routed would send the whole burst to the same replica.
        self._charge(pending_request, ranked[0], now)
        return [[by_id[r]] for r in ranked]

    def _charge(self, pending: PendingRequest | None, replica_id: str, now: float) -> None:
        """Count `pending` against `replica_id` (moving it if charged elsewhere before)."""
        if pending is None:
            return
        key = request_key(pending)
        old = self.charged_to.get(key)
        if old is not None and old != replica_id:
            self.in_transit.get(old, {}).pop(key, None)
        blocks = estimate_blocks(pending, getattr(self, "block_size", 16))
        self.in_transit.setdefault(replica_id, {})[key] = (now, blocks)
        self.charged_to[key] = replica_id
        self._expire(now)

    def _expire(self, now: float) -> None:
        for rid, charges in self.in_transit.items():
            for key in [k for k, (t, _) in charges.items() if now - t > IN_TRANSIT_MAX_S]:
                del charges[key]
                if self.charged_to.get(key) == rid:
                    del self.charged_to[key]

    def on_request_routed(self, pending_request: PendingRequest, replica_id: Any, result: Any) -> None:
        """Keep the charge on the replica that took the request until a report includes it."""
        self._charge(pending_request, replica_id.unique_id, time.time())
