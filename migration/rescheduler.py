"""The rescheduler: applies the migration policies to the live fleet about 20 times a second.

It runs as a one-replica Ray Serve deployment (a Ray actor the app builder creates),
reads every replica's stats from the app's FleetRegistry, asks the pure
`plan_migrations` what to move, and tells each source replica's migration agent to move
the request (over the agents' peer channel). Every call has a timeout; a migration that
fails leaves the request running where it was. Admin actions (drain a replica, migrate
one request) come through here too, and so do replicas Serve is stopping (scale-in by
autoscaling, a smaller replica count, a redeploy): they are drained before they go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import ray

from migration import metrics
from migration.config import MigrationSpec
from migration.peer import peer_call
from migration.policies import Migration, plan_migrations
from replicas.fleet import by_model, get_registry
from replicas.stats import ReplicaStats

log = logging.getLogger("turnout.rescheduler")

STOPPING_POLL_S = 1.0  # how often Serve's controller is asked which replicas it stops


def stop_to_done_s(rec: dict) -> float:
    """The request's pause: from the source's stop to the destination's admit (stage timings)."""
    t = rec.get("timings") or {}
    return max(0.0, float(t.get("done", 0.0)) - float(t.get("stop", t.get("done", 0.0))))


class AdminError(ValueError):
    """An admin request that cannot be done (see dashboards/API.md for the codes)."""

    def __init__(self, message: str, code: str = "not_found", status: int = 404) -> None:
        super().__init__(message)
        self.code, self.status = code, status


class Rescheduler:
    def __init__(self, spec: dict, handles: dict[str, Any], app: str | None = None,
                 auto: bool = True) -> None:
        self.spec = MigrationSpec.model_validate(spec)
        self.handles = handles
        if app is None:
            from ray import serve

            app = serve.get_replica_context().app_name
        self.app = app
        self.registry = get_registry(app)
        self.stopping: set[str] = set()  # replicas Serve is stopping (scale-in, redeploy)
        self._stopping_checked = 0.0
        self.in_flight: dict[str, Migration] = {}
        self.recent: deque[dict] = deque(maxlen=100)
        self.auto = auto
        self.ticks = 0
        self._tasks: set[asyncio.Task] = set()
        self._loop = asyncio.get_running_loop().create_task(self._run())

    # ---- the loop ----------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.spec.rescheduler_interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("rescheduler tick failed")

    async def _fleet(self) -> dict[str, list[dict]]:
        return by_model(await asyncio.wait_for(self.registry.snapshot.remote(), self.spec.call_timeout_s))

    async def _refresh_stopping(self) -> None:
        """Ask Serve's controller which replicas it is stopping (about once a second).

        Serve stops routing to a replica the moment it decides to remove it, then waits
        for its running requests; we drain it instead, so those requests move on now
        rather than hold the replica (and their clients) until they finish."""
        if time.monotonic() - self._stopping_checked < STOPPING_POLL_S:
            return
        self._stopping_checked = time.monotonic()
        try:
            from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

            controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
            details = await asyncio.wait_for(controller.get_serve_instance_details.remote(),
                                             self.spec.call_timeout_s)
        except Exception as e:
            log.warning("could not read replica states from Serve: %s", e)
            return
        deployments = (details.get("applications", {}).get(self.app) or {}).get("deployments", {})
        self.stopping = {r["replica_id"] for d in deployments.values() for r in d.get("replicas", [])
                         if r.get("state") == "STOPPING"}

    async def tick(self) -> list[Migration]:
        self.ticks += 1
        started: list[Migration] = []
        await self._refresh_stopping()
        fleet = await self._fleet()
        for model in fleet:
            metrics.record_in_flight(model, sum(1 for m in self.in_flight.values()
                                                if m.source in {s["replica_id"] for s in fleet[model]}))
        for model, raw in fleet.items():
            if model not in self.handles or len(raw) < 2:
                continue
            # A replica being stopped is drained like one an operator drains.
            raw = [{**s, "draining": True} if s["replica_id"] in self.stopping else s for s in raw]
            snaps = [ReplicaStats.from_dict(s) for s in raw]
            draining_only = not self.auto
            for m in plan_migrations(snaps, self.spec, time.time(), self.in_flight.values()):
                if draining_only and m.reason != "drain":
                    continue
                if self._start(model, m, {s["replica_id"]: s for s in raw}):
                    started.append(m)
        return started

    def _start(self, model: str, m: Migration, raw_by_id: dict[str, dict]) -> bool:
        address = raw_by_id.get(m.destination, {}).get("migration_address")
        source = raw_by_id.get(m.source, {}).get("migration_address")
        if not address or not source or m.request_id in self.in_flight:
            return False
        self.in_flight[m.request_id] = m
        task = asyncio.get_running_loop().create_task(self._migrate(model, m, address, source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _migrate(self, model: str, m: Migration, address: str, source_address: str) -> dict:
        # Pre-copy runs while the request decodes: allow for it on top of the call timeout.
        budget = self.spec.max_precopy_s + self.spec.stall_timeout_s + 4 * self.spec.call_timeout_s
        started = time.time()
        metrics.record_started(model, m.reason)
        try:
            # Straight to the source's agent, not through Serve: a stopping replica is
            # no longer routable, and it is the one that most needs emptying.
            rec = await peer_call(source_address, "migrate_out",
                                  {"request_id": m.request_id, "dest_replica_id": m.destination,
                                   "dest_address": address}, budget)
        except Exception as e:  # the agent rolls back on its side; we just record it
            rec = {"stage": "failed", "reason": f"{type(e).__name__}: {e}"}
        finally:
            self.in_flight.pop(m.request_id, None)
        event = {"kind": "migration", "model": model, "request_id": m.request_id,
                 "source": m.source, "destination": m.destination, "reason": m.reason,
                 "stage": str(rec.get("stage")), "detail": rec.get("reason", ""),
                 "bytes": rec.get("bytes", 0), "duration_s": round(time.time() - started, 4),
                 "at": started}
        if event["stage"] == "done":  # the request's pause, for the operator page
            event["downtime_ms"] = round(stop_to_done_s(rec) * 1e3, 3)
        self.recent.append(event)
        self.registry.record_event.remote(event)
        if event["stage"] == "done":
            metrics.record_completed(model, m.reason, bytes_sent=int(rec.get("bytes") or 0),
                                     downtime_s=stop_to_done_s(rec),
                                     duration_s=event["duration_s"])
        else:
            metrics.record_aborted(model, m.reason, event["stage"], int(rec.get("bytes") or 0))
        return rec

    # ---- admin -------------------------------------------------------------------------
    async def _locate_replica(self, replica_id: str) -> tuple[str, dict]:
        for model, raw in (await self._fleet()).items():
            for s in raw:
                if s["replica_id"] == replica_id:
                    return model, s
        raise AdminError(f"no replica {replica_id!r}", "replica_not_found")

    async def drain(self, replica_id: str, draining: bool = True) -> dict:
        """Mark a replica draining: new requests avoid it and the drain policy empties it."""
        model, stats = await self._locate_replica(replica_id)
        if draining and stats.get("draining"):
            raise AdminError(f"replica {replica_id!r} is already draining", "already_draining", 409)
        await asyncio.wait_for(
            self.handles[model].set_draining.remote(draining, replica_id=replica_id),
            self.spec.call_timeout_s)
        event = {"kind": "drain" if draining else "undrain", "model": model,
                 "replica_id": replica_id, "at": time.time()}
        self.registry.record_event.remote(event)
        return {"replica_id": replica_id, "model": model, "draining": draining,
                "requests_to_move": len(stats.get("requests", [])) if draining else 0}

    async def migrate(self, request_id: str, destination: str = "auto") -> dict:
        """Move one request now (admin): to a named replica, or the freest other one."""
        fleet = await self._fleet()
        for model, raw in fleet.items():
            source = next((s for s in raw if any(r["request_id"] == request_id
                                                  for r in s.get("requests", []))), None)
            if source is None:
                continue
            others = [s for s in raw if s["replica_id"] != source["replica_id"] and not s["draining"]]
            if destination == "auto":
                if not others:
                    raise AdminError(f"no other replica of {model!r} to migrate to", "no_destination", 409)
                dest = max(others, key=lambda s: ReplicaStats.from_dict(s).freeness)
            else:
                dest = next((s for s in others if s["replica_id"] == destination), None)
                if dest is None:
                    raise AdminError(f"no replica {destination!r} of {model!r} to migrate to",
                                     "replica_not_found")
            m = Migration(request_id, source["replica_id"], dest["replica_id"], "admin")
            if not dest.get("migration_address"):
                raise AdminError("migration is not enabled on these replicas", "migration_disabled", 409)
            if request_id in self.in_flight:
                raise AdminError(f"request {request_id!r} is already migrating", "migration_in_progress", 409)
            self.in_flight[request_id] = m
            return await self._migrate(model, m, dest["migration_address"], source["migration_address"])
        raise AdminError(f"no running request {request_id!r}", "request_not_found")

    def status(self) -> dict:
        return {"ticks": self.ticks, "auto": self.auto,
                "in_flight": [m.__dict__ for m in self.in_flight.values()],
                "recent": list(self.recent)}

    def set_auto(self, auto: bool) -> None:
        self.auto = auto
