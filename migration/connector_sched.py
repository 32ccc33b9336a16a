"""Scheduler half of the migration connector (runs in vLLM's engine-core process).

Source side: a migration command (from the agent, through control.py) registers R;
every step `build_meta` hands the worker the ids of R's blocks filled since the last
step (pre-copy), and `request_finished` turns R's abort into the stop-and-copy stage:
it asks for the remaining full blocks and returns True, so vLLM keeps them alive until
the worker reports R in `finished_sending`.

Destination side: a request whose kv_transfer_params name a staging area is told
(`get_num_new_matched_tokens`) that its staged full blocks come from outside, loaded
synchronously in the step that schedules it; `update_state_after_alloc` records which
of its new blocks to fill.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass, field
from typing import Any

from migration.control import ControlServer, control_address
from migration.protocol import loadable_tokens, migration_params
from migration.transfer import H_ACCEPTED, H_FINAL, H_STAGED, KVLayout, ShmStaging

log = logging.getLogger(__name__)


@dataclass
class CopyJob:
    """Worker: copy `block_ids` (engine block ids) to staging positions first.."""

    req_id: str
    path: str
    first: int
    block_ids: list[int]
    final: bool = False
    num_tokens: int = 0


@dataclass
class LoadJob:
    """Worker: fill `block_ids` from staging positions first.. (before the forward)."""

    req_id: str
    path: str
    first: int
    block_ids: list[int]


@dataclass
class MigrationMeta:
    saves: list[CopyJob] = field(default_factory=list)
    loads: list[LoadJob] = field(default_factory=list)
    closes: list[str] = field(default_factory=list)  # staging paths the worker may unmap


@dataclass
class _OutJob:
    path: str
    staged: int = 0  # logical blocks already handed to the worker


class SchedulerSide:
    def __init__(self, vllm_config: Any, kv_cache_config: Any, max_blocks_per_step: int) -> None:
        self.block_size = int(vllm_config.cache_config.block_size)
        self.kv_cache_config = kv_cache_config
        self.max_blocks_per_step = max(int(max_blocks_per_step), 1)
        self.kv_cache_manager: Any = None
        self._requests: dict[str, Any] = {}
        self._out: dict[str, _OutJob] = {}
        self._local_hit: dict[str, int] = {}
        self._commands: queue.SimpleQueue[dict] = queue.SimpleQueue()
        self._meta = MigrationMeta()
        engine_id = vllm_config.kv_transfer_config.engine_id
        self.server = ControlServer(control_address(engine_id), self._on_control)

    # ---- control channel (called from the control thread) ---------------------------
    def layout(self) -> KVLayout:
        group = self.kv_cache_config.kv_cache_groups[0]
        return KVLayout(num_layers=len(group.layer_names),
                        block_bytes=int(group.kv_cache_spec.page_size_bytes),
                        block_size=self.block_size)

    def _on_control(self, msg: dict) -> dict:
        op = msg.get("op")
        if op == "info":
            lay = self.layout()
            pool = self.kv_cache_manager.block_pool if self.kv_cache_manager else None
            return {"ok": True, "num_layers": lay.num_layers, "block_bytes": lay.block_bytes,
                    "block_size": lay.block_size,
                    "num_blocks": int(self.kv_cache_config.num_blocks),
                    # The pool keeps one null block that is never handed out.
                    "free_blocks": int(pool.get_num_free_blocks()) if pool else 0,
                    "migrating": sorted(self._out)}
        if op in ("migrate", "cancel"):
            self._commands.put(msg)
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _apply_commands(self) -> None:
        while True:
            try:
                msg = self._commands.get_nowait()
            except queue.Empty:
                return
            rid = self._resolve(msg["request_id"])
            if msg["op"] == "migrate":
                ok = rid is not None and rid not in self._out
                _mark(msg["path"], H_ACCEPTED, 1 if ok else -1)
                if ok:
                    self._out[rid] = _OutJob(path=msg["path"])
            elif rid is not None and rid in self._out:
                job = self._out.pop(rid)
                self._meta.closes.append(job.path)

    def _resolve(self, request_id: str) -> str | None:
        """Engine-internal ids carry a random suffix after the id the replica gave."""
        if request_id in self._requests:
            return request_id
        hits = [r for r in self._requests if r.startswith(request_id + "-")]
        return hits[0] if len(hits) == 1 else None

    # ---- vLLM hooks --------------------------------------------------------------------
    def on_new_request(self, request: Any) -> None:
        self._requests[request.request_id] = request

    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple[int | None, bool]:
        params = migration_params(request.kv_transfer_params)
        if params is None:
            return 0, False
        staged = _staged_blocks(params["path"])
        if staged is None:
            if time.time() < float(params.get("wait_until", 0.0)):
                return None, False  # the source is still copying the last blocks: ask again
            staged = 0  # it never finished (source dead or slow): recompute
        if int(params["num_blocks"]) >= 0:
            staged = min(staged, int(params["num_blocks"]))
        usable = loadable_tokens(staged, request.num_tokens, self.block_size)
        self._local_hit[request.request_id] = num_computed_tokens
        return max(usable - num_computed_tokens, 0), False

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        params = migration_params(request.kv_transfer_params)
        if params is None or num_external_tokens <= 0:
            return
        first = self._local_hit.pop(request.request_id, 0) // self.block_size
        n = num_external_tokens // self.block_size
        ids = list(blocks.get_block_ids()[0][first:first + n])
        self._meta.loads.append(LoadJob(request.request_id, params["path"], first, ids))

    def build_meta(self) -> MigrationMeta:
        self._apply_commands()
        for rid, job in list(self._out.items()):
            req = self._requests.get(rid)
            if req is None:
                del self._out[rid]
                continue
            full = req.num_computed_tokens // self.block_size
            if full < job.staged:
                # Preempted: its blocks were freed while a copy may still read them.
                # Give up this migration (the request recomputes here, as vLLM does).
                del self._out[rid]
                self._meta.closes.append(job.path)
                _mark(job.path, H_FINAL, -1)
                continue
            end = min(full, job.staged + self.max_blocks_per_step)
            if end <= job.staged:
                continue
            ids = self.kv_cache_manager.get_block_ids(rid)[0][job.staged:end]
            self._meta.saves.append(CopyJob(rid, job.path, job.staged, list(ids)))
            job.staged = end
        meta, self._meta = self._meta, MigrationMeta()
        return meta

    def request_finished(self, request: Any, block_ids: list[int]) -> tuple[bool, dict | None]:
        rid = request.request_id
        self._requests.pop(rid, None)
        self._local_hit.pop(rid, None)
        job = self._out.pop(rid, None)
        if job is None:
            return False, None
        # Stop-and-copy: the rest of the full blocks, then the worker reports R as sent.
        full = request.num_computed_tokens // self.block_size
        rest = list(block_ids[job.staged:full])
        self._meta.saves.append(CopyJob(rid, job.path, job.staged, rest, final=True,
                                        num_tokens=int(request.num_computed_tokens)))
        return True, None

    def shutdown(self) -> None:
        self.server.close()


def _staged_blocks(path: str) -> int | None:
    """Blocks a complete staging area holds; 0 if it is gone or failed (the request is
    then simply recomputed); None while its source is still copying."""
    try:
        st = ShmStaging.open(path)
    except (OSError, ValueError):
        return 0
    final = st.get(H_FINAL)
    staged = st.get(H_STAGED) if final == 1 else (None if final == 0 else 0)
    st.close()
    return staged


def _mark(path: str, slot: int, value: int) -> None:
    try:
        st = ShmStaging.open(path)
    except (OSError, ValueError):
        log.warning("migration staging %s is gone", path)
        return
    st.set(slot, value)
    st.close()
