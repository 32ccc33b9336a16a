"""FleetRegistry: where every replica publishes its stats (about 20 times a second).

Ray Serve's handles hide which replicas exist; the rescheduler, the router's latency
model and the admin API need every replica's stats, so each replica pushes its
snapshot here (fire and forget) and readers take a consistent snapshot. Commands to one
replica go through the model's deployment handle with that replica pinned (see
request_router.py). Entries from replicas that stopped reporting expire.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import ray

NAMESPACE = "turnout"
EXPIRE_S = 5.0


def registry_name(app: str) -> str:
    return f"turnout-fleet-{app}"


@ray.remote(num_cpus=0, max_concurrency=64)
class FleetRegistry:
    def __init__(self) -> None:
        self._stats: dict[str, dict] = {}
        self._seen: dict[str, float] = {}
        self._events: list[dict] = []

    def report(self, stats: dict) -> None:
        rid = stats["replica_id"]
        self._stats[rid] = stats
        self._seen[rid] = time.time()

    def remove(self, replica_id: str) -> None:
        self._stats.pop(replica_id, None)
        self._seen.pop(replica_id, None)

    def snapshot(self, model: str | None = None, max_age_s: float = EXPIRE_S) -> list[dict]:
        now = time.time()
        for rid in [r for r, t in self._seen.items() if now - t > max_age_s]:
            self.remove(rid)
        return [s for s in self._stats.values() if model is None or s["model"] == model]

    def record_event(self, event: dict) -> None:
        """Recent fleet events (migrations, drains) for the operator page."""
        self._events.append({**event, "at": event.get("at", time.time())})
        del self._events[:-200]

    def events(self, limit: int = 50) -> list[dict]:
        return self._events[-limit:]


def by_model(snapshot: list[dict]) -> dict[str, list[dict]]:
    """A registry snapshot grouped by model name."""
    out: dict[str, list[dict]] = {}
    for s in snapshot:
        out.setdefault(s["model"], []).append(s)
    return out


def get_registry(app: str) -> Any:
    """The app's registry actor, created on first use (detached: it outlives any replica)."""
    return FleetRegistry.options(name=registry_name(app), namespace=NAMESPACE, get_if_exists=True,
                                 lifetime="detached").remote()


def kill_registry(app: str) -> None:
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(registry_name(app), namespace=NAMESPACE))
