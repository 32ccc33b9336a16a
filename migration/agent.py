"""MigrationAgent: the replica-side driver of live migration (one per replica).

The replica loads it as an extension ("migration.agent:MigrationAgent(engine_host,
replica_id, spec)") and forwards `ext_call(method, *args)` to it. Called by others:

    address() -> str                       this agent's peer endpoint (give it to sources)
    migrate_out(request_id, dest_replica_id, dest_address, mode=None) -> dict
                                           move a running request; returns its record
    handoff(request_id) -> dict | None     source: after a stream ended with "abort",
                                           where to follow it ({replica_id, request_id,
                                           delivered, ...}) or None (a plain abort)
    stream(request_id) -> async iterator   destination: the rest of a migrated request
    status() -> dict                       counters and recent migrations

Agents call each other (peer.py) for prepare / admit / release, and drive their own
engine's connector through control.py. See protocol.py for the stages and rollbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from typing import Any

from migration import engine_view
from migration.agent_in import Inbound
from migration.config import MigrationSpec
from migration.control import ControlError, control_call
from migration.peer import PeerError, PeerServer, peer_call
from migration.protocol import (
    AdmitRequest,
    Handoff,
    MigrationRecord,
    Stage,
    blocks_filled,
    blocks_needed,
    sampling_to_dict,
    should_stop,
)
from migration.transfer import (
    H_ACCEPTED,
    H_BYTES,
    H_FINAL,
    H_STAGED,
    H_STAGES,
    ShmStaging,
    unlink_staging,
)

log = logging.getLogger(__name__)


class MigrationAgent:
    def __init__(self, engine_host: Any, replica_id: str, spec: MigrationSpec | dict | None = None) -> None:
        self.host = engine_host
        self.replica_id = replica_id
        self.spec = spec if isinstance(spec, MigrationSpec) else MigrationSpec(**(spec or {}))
        self.inbound = Inbound(engine_host, self.spec, self.handoff)
        self.records: dict[str, MigrationRecord] = {}  # by source request id
        self._handoffs: dict[str, asyncio.Future] = {}
        self.recent: deque[MigrationRecord] = deque(maxlen=50)
        self._server: PeerServer | None = None

    # ---- plumbing ------------------------------------------------------------------------
    def address(self) -> str:
        if self._server is None:
            self._server = PeerServer(self._on_peer, self.spec.peer_host)
        return self._server.address

    async def _on_peer(self, method: str, args: dict) -> dict:
        if method == "prepare":
            return await self.inbound.prepare(**args)
        if method == "admit":
            result = self.inbound.admit(AdmitRequest(**args))
            if result["ok"]:
                self._count("in")
            return result
        if method == "release":
            return self.inbound.release(args["migration_id"])
        if method == "migrate_out":
            # From the rescheduler: it reaches a replica Serve is stopping (and no longer
            # routes to) only through this channel.
            return await self.migrate_out(**args)
        return {"ok": False, "reason": f"unknown method {method!r}"}

    def _count(self, key: str, n: int = 1) -> None:
        self.host.migration_state[key] = self.host.migration_state.get(key, 0) + n

    def _stage(self, rec: MigrationRecord, stage: Stage) -> None:
        rec.stage = stage
        rec.timings[str(stage)] = round(time.monotonic() - rec.started, 6)
        self.host.migration_state["stage"] = f"{rec.migration_id}:{stage}"

    # ---- source side -----------------------------------------------------------------------
    async def migrate_out(self, request_id: str, dest_replica_id: str, dest_address: str,
                          mode: str | None = None) -> dict:
        mode = mode or self.spec.mode
        rec = MigrationRecord(uuid.uuid4().hex[:16], request_id, dest_replica_id, mode,
                              started=time.monotonic())
        if request_id in self.records:
            return {**rec.to_dict(), "stage": str(Stage.ABORTED), "reason": "already migrating"}
        self.records[request_id] = rec
        engine_view.set_flag(self.host, request_id, "migrating", True)
        staging: ShmStaging | None = None
        try:
            staging = await self._migrate(rec, dest_address)
        except Exception as e:  # never lose the request to a bug in here
            log.exception("migration %s failed", rec.migration_id)
            rec.reason = rec.reason or f"{type(e).__name__}: {e}"
            if rec.stage in (Stage.PREPARE, Stage.PRECOPY):
                unlink_staging(ShmStaging.path_for(rec.migration_id))
            if rec.stage not in (Stage.DONE, Stage.ROLLED_BACK, Stage.ABORTED):
                self._stage(rec, Stage.ROLLED_BACK)
        finally:
            fut = self._handoffs.get(request_id)
            if fut is not None:
                if not fut.done():
                    fut.set_result(None)
                # Forget the marker if the replica never asks for it.
                asyncio.get_running_loop().call_later(
                    60.0, lambda: self._handoffs.get(request_id) is fut and self._handoffs.pop(request_id))
            if staging is not None:
                staging.close()
            self.records.pop(request_id, None)
            engine_view.set_flag(self.host, request_id, "migrating", False)
            rec.finished = time.monotonic()
            self.recent.append(rec)
        return rec.to_dict()

    async def _migrate(self, rec: MigrationRecord, dest_address: str) -> ShmStaging | None:
        view = engine_view.request_view(self.host, rec.request_id)
        sp = engine_view.sampling_params(self.host, rec.request_id)
        if view is None or sp is None:
            rec.reason = "unknown request (finished, or no sampling params)"
            self._stage(rec, Stage.ABORTED)
            return None
        to_go = (sp.max_tokens or 0) - len(view.output_token_ids)
        need = blocks_needed(view.num_tokens, to_go, self.host.block_size)
        timeout = self.spec.call_timeout_s
        t = engine_view.tracked(self.host, rec.request_id)
        try:
            r = await peer_call(dest_address, "prepare", {
                "migration_id": rec.migration_id, "blocks": need,
                "prompt_token_ids": view.prompt_token_ids,
                "text_prompt_len": engine_view.text_prompt_len(t, view),
                "skip_special_tokens": bool(getattr(sp, "skip_special_tokens", True))}, timeout)
        except PeerError as e:
            return self._rollback_early(rec, f"destination unreachable: {e}")
        if not r.get("ok"):
            return self._rollback_early(rec, f"destination refused: {r.get('reason')}")
        staging = None
        if rec.mode == "kv":
            staging = await self._precopy(rec, need)
            if staging is None:
                await self._release(dest_address, rec)
                return None
        return await self._stop_and_hand_over(rec, dest_address, staging)

    def _rollback_early(self, rec: MigrationRecord, reason: str) -> None:
        """Before the stop nothing happened to the request: it just goes on here."""
        rec.reason = reason
        rec.target_replica_id = self.replica_id
        self._stage(rec, Stage.ROLLED_BACK)
        return None

    async def _release(self, dest_address: str, rec: MigrationRecord) -> None:
        with contextlib.suppress(PeerError):  # else its lease expires on its own
            await peer_call(dest_address, "release", {"migration_id": rec.migration_id},
                            self.spec.call_timeout_s)

    async def _precopy(self, rec: MigrationRecord, capacity: int) -> ShmStaging | None:
        self._stage(rec, Stage.PRECOPY)
        spec = self.spec
        info = await engine_view.engine_info(self.host, spec.call_timeout_s)
        staging = ShmStaging.create(rec.migration_id, engine_view.layout_of(info), capacity)
        view = engine_view.request_view(self.host, rec.request_id)
        try:
            if view is None:
                raise ControlError("request finished before pre-copy")
            await control_call(engine_view.engine_address(self.host),
                               {"op": "migrate", "request_id": view.internal_id,
                                "path": str(staging.path)}, spec.call_timeout_s)
            await self._wait_accepted(staging)
            await self._copy_until_small(rec, staging)
            return staging
        except (ControlError, TimeoutError) as e:
            await self._cancel(staging, view)
            staging.close()
            staging.unlink()
            self._rollback_early(rec, f"pre-copy failed: {e}")
            return None

    async def _wait_accepted(self, staging: ShmStaging) -> None:
        deadline = time.monotonic() + self.spec.call_timeout_s
        while (acc := staging.get(H_ACCEPTED)) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("engine did not take the migration")
            await asyncio.sleep(self.spec.poll_interval_s)
        if acc < 0:
            raise ControlError("engine refused the migration (request unknown or layout mismatch)")

    async def _copy_until_small(self, rec: MigrationRecord, staging: ShmStaging) -> None:
        spec = self.spec
        start = last_progress = time.monotonic()
        last_staged = -1
        while True:
            view = engine_view.request_view(self.host, rec.request_id)
            if view is None:
                raise ControlError("request finished during pre-copy")
            if staging.get(H_FINAL) < 0:
                raise ControlError("the engine gave the migration up (request preempted)")
            staged = staging.get(H_STAGED)
            rec.precopy_stages = staging.get(H_STAGES)
            remaining = blocks_filled(view.num_tokens, self.host.block_size) - staged
            now = time.monotonic()
            if should_stop(remaining, now - start, spec.stop_copy_blocks, spec.max_precopy_s):
                return
            if staged != last_staged:
                last_staged, last_progress = staged, now
            elif now - last_progress > spec.stall_timeout_s:
                raise TimeoutError("pre-copy made no progress")
            await asyncio.sleep(spec.poll_interval_s)

    async def _cancel(self, staging: ShmStaging, view: Any) -> None:
        if view is None:
            return
        with contextlib.suppress(ControlError):
            await control_call(engine_view.engine_address(self.host),
                               {"op": "cancel", "request_id": view.internal_id,
                                "path": str(staging.path)}, self.spec.call_timeout_s)

    async def _stop_and_hand_over(self, rec: MigrationRecord, dest_address: str,
                                  staging: ShmStaging | None) -> ShmStaging | None:
        # Read the handoff point and abort in the same tick: nothing can slip between.
        view = engine_view.request_view(self.host, rec.request_id)
        sp = engine_view.sampling_params(self.host, rec.request_id)
        t = engine_view.tracked(self.host, rec.request_id)
        if view is None or (sp.max_tokens is not None and sp.max_tokens <= len(view.output_token_ids)):
            if staging is not None:
                await self._cancel(staging, view)
                staging.unlink()
            await self._release(dest_address, rec)
            rec.reason = "request finished before the stop"
            self._stage(rec, Stage.ABORTED)
            return staging
        self._handoffs[rec.request_id] = asyncio.get_running_loop().create_future()
        rec.delivered = len(view.output_token_ids)
        self._stage(rec, Stage.STOP)
        await self.host.abort(rec.request_id)
        rec.stopped_at = time.monotonic()
        # Admit right away: the destination's connector waits for the last blocks
        # (staged_blocks=-1: "read the count once the source marks the area final"),
        # so the final copy overlaps the admission instead of preceding it.
        path, staged = (str(staging.path), -1) if staging is not None else (None, 0)
        admit = AdmitRequest(
            migration_id=rec.migration_id, request_id=f"{rec.request_id}~{rec.migration_id[:8]}",
            prompt_token_ids=view.prompt_token_ids, delivered_token_ids=view.output_token_ids,
            sampling=sampling_to_dict(sp, rec.delivered), staging_path=path, staged_blocks=staged,
            priority=int(getattr(t, "priority", 0) or 0),
            text_prompt_len=engine_view.text_prompt_len(t, view))
        rec.new_request_id = admit.request_id
        self._stage(rec, Stage.ADMIT)
        try:
            # The destination has the prompt since prepare: send only what is new.
            r = await peer_call(dest_address, "admit", {**admit.__dict__, "prompt_token_ids": []},
                                self.spec.call_timeout_s)
            ok, reason = bool(r.get("ok")), str(r.get("reason", ""))
        except PeerError as e:
            ok, reason = False, str(e)
        if staging is not None:
            final = await self._wait_final(staging)
            rec.timings["final_copied"] = round(time.monotonic() - rec.started, 6)
            if final:
                rec.bytes = staging.get(H_BYTES)
                rec.precopy_stages = staging.get(H_STAGES)
                self._count("bytes", rec.bytes)
        if ok:
            rec.target_replica_id = rec.dest_replica_id
            self._count("out")
            self._stage(rec, Stage.DONE)
        else:
            # The destination failed after the stop: the request goes on here, from the
            # same staged KV (our connector loads it like a destination would).
            self.inbound.admit(admit, need_lease=False)
            rec.target_replica_id = self.replica_id
            rec.reason = f"destination failed at admit: {reason}"
            self._stage(rec, Stage.ROLLED_BACK)
        self._handoffs[rec.request_id].set_result(Handoff(
            rec.target_replica_id, admit.request_id, rec.delivered, rec.migration_id,
            rolled_back=not ok).to_dict())
        return staging

    async def _wait_final(self, staging: ShmStaging) -> bool:
        deadline = time.monotonic() + self.spec.call_timeout_s
        while (final := staging.get(H_FINAL)) == 0 and time.monotonic() < deadline:
            await asyncio.sleep(self.spec.poll_interval_s / 2)
        return final == 1

    async def handoff(self, request_id: str) -> dict | None:
        fut = self._handoffs.get(request_id)
        if fut is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(fut), 3 * self.spec.call_timeout_s)
        except TimeoutError:
            return None
        finally:
            if fut.done():
                self._handoffs.pop(request_id, None)

    # ---- destination side -------------------------------------------------------------------
    def stream(self, request_id: str):
        return self.inbound.stream(request_id)

    def stats_extra(self) -> dict:
        """Merged into the replica's stats: where other agents reach this one."""
        return {"migration_address": self.address()}

    def status(self) -> dict:
        return {"replica_id": self.replica_id, **self.host.migration_state,
                "active": [r.to_dict() for r in self.records.values()],
                "leases": len(self.inbound.leases), "reserved_blocks": self.inbound.reserved_blocks(),
                "migrated_in_streams": len(self.inbound.continuations),
                "recent": [r.to_dict() for r in self.recent]}

    async def close(self) -> None:
        await self.inbound.close()
        if self._server is not None:
            self._server.close()
            self._server = None

