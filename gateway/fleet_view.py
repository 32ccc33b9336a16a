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

from replicas.fleet import get_registry
from replicas.stats import ReplicaStats

log = logging.getLogger("turnout.gateway")


class FleetView:
    def __init__(self, app: str | None, period_s: float = 0.1) -> None:
        self.app = app
        self.period_s = period_s
        self.raw: list[dict] = []
        self.updated = 0.0
        self._task: asyncio.Task | None = None
        self._listeners: list[Any] = []

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
                self.updated = time.time()
                for fn in self._listeners:
                    fn(self)
            except Exception as e:  # keep serving with the last view
                log.warning("fleet stats refresh failed: %s", e)
            await asyncio.sleep(self.period_s)

    def by_model(self) -> dict[str, list[ReplicaStats]]:
        out: dict[str, list[ReplicaStats]] = {}
        for s in self.raw:
            out.setdefault(s["model"], []).append(ReplicaStats.from_dict(s))
        return out

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
