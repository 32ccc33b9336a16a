"""The gateway's view of the fleet: replica stats refreshed in the background.

The router's latency model and the cache's load-adaptive policy need live replica
stats on every request; reading the FleetRegistry actor per request would add a remote
call to the hot path, so a background task keeps a local copy fresh (every 0.1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from replicas.fleet import by_model, get_registry
from replicas.stats import ReplicaStats

log = logging.getLogger("turnout.gateway")

STALE_S = 3.0  # a view older than this cannot tell whether a model has replicas
LOST_MEMORY_S = 30.0  # a dead replica's id is never reused; this only bounds the dict


class FleetView:
    def __init__(self, app: str | None, period_s: float = 0.1) -> None:
        self.app = app
        self.period_s = period_s
        self.raw: list[dict] = []
        self.updated = 0.0
        self._task: asyncio.Task | None = None
        self._listeners: list[Any] = []
        self.lost: dict[str, float] = {}  # replica id -> when a request saw it die
        # Models with a replica that has reported since this view started: before its first
        # report, "no replica" means "not heard of yet" (just deployed), not "all down".
        self.seen: set[str] = set()

    def start(self) -> None:
        if self.app is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def on_update(self, fn: Any) -> None:
        self._listeners.append(fn)

    async def _run(self) -> None:
        registry = get_registry(self.app)
        while True:
            try:
                self.raw = await asyncio.wait_for(registry.snapshot.remote(), 2.0)
                self.seen.update(s["model"] for s in self.raw)
                self.updated = time.time()
                for fn in self._listeners:
                    fn(self)
            except Exception as e:  # keep serving with the last view
                log.warning("fleet stats refresh failed: %s", e)
            await asyncio.sleep(self.period_s)

    def replicas_up(self, model: str) -> int | None:
        """Replicas of `model` reporting in; None when this view cannot say (it is stale, or
        no replica of the model has reported yet)."""
        if time.time() - self.updated > STALE_S or model not in self.seen:
            return None
        return sum(1 for s in self.raw if s["model"] == model and s["replica_id"] not in self.lost)

    def forget(self, replica_id: str) -> None:
        """A request saw this replica die: stop counting it before its reports expire."""
        now = time.time()
        self.lost = {r: t for r, t in self.lost.items() if now - t < LOST_MEMORY_S}
        self.lost[replica_id] = now
        if self.app is not None:
            get_registry(self.app).remove.remote(replica_id)

    def by_model(self) -> dict[str, list[ReplicaStats]]:
        return {m: [ReplicaStats.from_dict(s) for s in group] for m, group in by_model(self.raw).items()}

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
