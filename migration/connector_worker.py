"""Worker half of the migration connector: moves KV blocks between vLLM's paged KV
tensors and staging areas (runs where the KV tensors live).

Saves run on a copy thread, off the engine's step: the blocks they read are full and
immutable while the request lives, and at stop-and-copy vLLM keeps them alive until we
report the request in `finished_sending` (after its copy finished). Torch copies drop
the GIL, so the forward pass and the copy overlap. Loads run in the step, before the
forward that needs them (the destination's synchronous load).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from migration.connector_sched import CopyJob, LoadJob, MigrationMeta
from migration.transfer import (
    H_ACCEPTED,
    H_BLOCK_BYTES,
    H_BYTES,
    H_FINAL,
    H_LAYERS,
    H_NUM_TOKENS,
    H_STAGED,
    H_STAGES,
    ShmStaging,
)

log = logging.getLogger(__name__)


class WorkerSide:
    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self.layers: list[torch.Tensor] = []
        self.block_dim = 0
        self.block_bytes = 0
        self._open: dict[str, ShmStaging] = {}  # touched by the copy thread only
        self._finished_sending: set[str] = set()
        self._lock = threading.Lock()
        self._copier = ThreadPoolExecutor(1, thread_name_prefix="turnout-kv-copy")
        self._load_errors: set[int] = set()

    def register(self, kv_caches: dict[str, torch.Tensor]) -> None:
        # Layer order by name: both engines of a model list the same names.
        self.layers = [kv_caches[name] for name in sorted(kv_caches)]
        t = self.layers[0]
        # CPU: [num_blocks, heads, block, 2*head_dim]; GPU flash-attn: [2, num_blocks, ...].
        self.block_dim = 0 if t.shape[0] == self.num_blocks else 1
        self.block_bytes = t.numel() // t.shape[self.block_dim] * t.element_size()

    # ---- block copies ------------------------------------------------------------------
    def _copy_out(self, st: ShmStaging, li: int, first: int, ids: torch.Tensor) -> None:
        t = self.layers[li]
        dst = torch.from_numpy(st.data[li, first:first + len(ids)])
        if self.block_dim == 0 and t.is_contiguous():
            # One copy: gather straight into the shared-memory view.
            torch.index_select(t, 0, ids, out=dst.view(t.dtype).view(len(ids), *t.shape[1:]))
        else:
            dst.copy_(self._gather(t, ids))
        del dst

    def _gather(self, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        blocks = t.index_select(self.block_dim, ids).movedim(self.block_dim, 0).contiguous()
        return blocks.view(torch.uint8).reshape(len(ids), -1)

    def _scatter(self, t: torch.Tensor, ids: torch.Tensor, raw: torch.Tensor) -> None:
        shape = list(t.shape)
        del shape[self.block_dim]
        src = raw.view(t.dtype).reshape(len(ids), *shape).movedim(0, self.block_dim)
        t.index_copy_(self.block_dim, ids, src)

    def _staging(self, path: str) -> ShmStaging:
        st = self._open.get(path)
        if st is None:
            st = ShmStaging.open(path, populate=True)  # one syscall maps the pages the agent allocated
            if st.get(H_LAYERS) != len(self.layers) or st.get(H_BLOCK_BYTES) != self.block_bytes:
                st.set(H_ACCEPTED, -1)
                st.close()
                raise ValueError(f"staging {path} does not match this engine's KV layout")
            self._open[path] = st
        return st

    def _close(self, path: str) -> None:
        st = self._open.pop(path, None)
        if st is not None:
            st.close()

    def save(self, job: CopyJob) -> None:
        try:
            st = self._staging(job.path)
            if job.block_ids:
                ids = torch.tensor(job.block_ids, dtype=torch.long)
                if job.first + len(ids) > st.capacity:
                    raise ValueError(f"staging overflow: {job.first + len(ids)} > {st.capacity}")
                for li in range(len(self.layers)):
                    self._copy_out(st, li, job.first, ids)
                st.add(H_BYTES, len(job.block_ids) * self.block_bytes * len(self.layers))
                st.set(H_STAGED, job.first + len(job.block_ids))
                if not job.final:
                    st.add(H_STAGES, 1)
            if job.final:
                st.set(H_NUM_TOKENS, job.num_tokens)
                st.set(H_FINAL, 1)
        except Exception:
            log.exception("migration save of %s failed", job.req_id)
            if job.final:
                _set_final_failed(job.path)
        finally:
            if job.final:
                # Always hand the blocks back to vLLM, success or not.
                self._close(job.path)
                with self._lock:
                    self._finished_sending.add(job.req_id)

    def load(self, job: LoadJob) -> None:
        try:
            st = ShmStaging.open(job.path, populate=True)
            try:
                if st.get(H_LAYERS) != len(self.layers) or st.get(H_BLOCK_BYTES) != self.block_bytes:
                    raise ValueError("staging does not match this engine's KV layout")
                if st.get(H_STAGED) < job.first + len(job.block_ids):
                    raise ValueError("staging holds fewer blocks than announced")
                ids = torch.tensor(job.block_ids, dtype=torch.long)
                for li, t in enumerate(self.layers):
                    raw = torch.from_numpy(st.read(li, job.first, len(job.block_ids)))
                    self._scatter(t, ids, raw)
                    del raw  # a view into the map: drop it before the map closes
            finally:
                st.close()
        except Exception:
            # vLLM recomputes the tokens of blocks reported here: slower, still correct.
            log.exception("migration load of %s failed; recomputing", job.req_id)
            self._load_errors.update(job.block_ids)

    # ---- per-step entry points -----------------------------------------------------------
    def start_load(self, meta: MigrationMeta) -> None:
        for job in meta.loads:
            self.load(job)

    def wait_for_save(self, meta: MigrationMeta) -> None:
        for path in meta.closes:
            self._copier.submit(self._close, path)
        for job in meta.saves:
            self._copier.submit(self.save, job)

    def take_finished_sending(self) -> set[str] | None:
        with self._lock:
            done, self._finished_sending = self._finished_sending, set()
        return done or None

    def take_load_errors(self) -> set[int]:
        errs, self._load_errors = self._load_errors, set()
        return errs

    def shutdown(self) -> None:
        self._copier.shutdown(wait=True)
        for path in list(self._open):
            self._close(path)


def _set_final_failed(path: str) -> None:
    try:
        st = ShmStaging.open(path)
        st.set(H_FINAL, -1)
        st.close()
    except (OSError, ValueError):
        pass
