"""Destination half of the migration agent: leases, admission, the continued stream.

A migrated-in request starts generating as soon as it is admitted (its KV loads in the
first step); its chunks wait in a buffer until the caller (the gateway, following the
source's handoff marker) attaches with `stream()`. If nobody attaches in time the
request is aborted, so a lost client never pins KV blocks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from migration import engine_view
from migration.config import MigrationSpec
from migration.protocol import AdmitRequest, kv_params, sampling_from_dict
from migration.transfer import H_FINAL, ShmStaging, unlink_staging
from replicas.detok import ContinuationText

log = logging.getLogger(__name__)

_END = object()


@dataclass
class Lease:
    migration_id: str
    blocks: int
    deadline: float
    prompt_token_ids: list[int] = field(default_factory=list)
    text: ContinuationText | None = None  # primed with the prompt, before the stop


@dataclass
class Continuation:
    request_id: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    attached: bool = False
    task: asyncio.Task | None = None


class Inbound:
    def __init__(self, engine_host: Any, spec: MigrationSpec,
                 handoff: Callable[[str], Awaitable[dict | None]]) -> None:
        self.host = engine_host
        self.spec = spec
        self._handoff = handoff
        self.leases: dict[str, Lease] = {}
        self.continuations: dict[str, Continuation] = {}
        self._reaper: asyncio.Task | None = None

    # ---- prepare: room for the request? -----------------------------------------------
    def reserved_blocks(self) -> int:
        return sum(lease.blocks for lease in self.leases.values())

    async def prepare(self, migration_id: str, blocks: int, prompt_token_ids: list[int] | None = None,
                      text_prompt_len: int = -1, skip_special_tokens: bool = True) -> dict:
        info = await engine_view.engine_info(self.host, self.spec.call_timeout_s)
        room = info["free_blocks"] - self.reserved_blocks() - self.spec.dest_margin_blocks
        if room < blocks:
            return {"ok": False, "reason": f"no_memory: {blocks} blocks needed, {room} free"}
        prompt = list(prompt_token_ids or [])
        text = _primed_text(self.host, prompt, text_prompt_len, skip_special_tokens) if prompt else None
        self.leases[migration_id] = Lease(migration_id, blocks, time.monotonic() + self.spec.lease_s,
                                          prompt, text)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap())
        return {"ok": True, "free_blocks": info["free_blocks"]}

    async def _reap(self) -> None:
        """Drop leases no admit came for (the source died or gave up)."""
        while self.leases:
            await asyncio.sleep(min(self.spec.lease_s / 4, 1.0))
            now = time.monotonic()
            for mid, lease in list(self.leases.items()):
                if lease.deadline <= now:
                    del self.leases[mid]
                    log.warning("migration %s: lease expired, reservation freed", mid)
                    _drop_orphan_staging(mid)

    def release(self, migration_id: str) -> dict:
        return {"ok": self.leases.pop(migration_id, None) is not None}

    # ---- admit: start the request here ---------------------------------------------------
    def admit(self, req: AdmitRequest, need_lease: bool = True) -> dict:
        lease = self.leases.pop(req.migration_id, None)
        if need_lease and lease is None:
            return {"ok": False, "reason": "no_lease"}
        prompt = req.prompt_token_ids or (lease.prompt_token_ids if lease else [])
        if not prompt:
            return {"ok": False, "reason": "no prompt"}
        sp = sampling_from_dict(req.sampling)
        text = lease.text if lease is not None and lease.text is not None else \
            _primed_text(self.host, prompt, req.text_prompt_len, sp.skip_special_tokens)
        text.text(req.delivered_token_ids)  # already streamed by the source
        cont = Continuation(req.request_id)
        self.continuations[req.request_id] = cont
        cont.task = asyncio.create_task(self._run(req, prompt + req.delivered_token_ids, sp, text, cont))
        return {"ok": True, "request_id": req.request_id}

    async def _run(self, req: AdmitRequest, prompt: list[int], sp: Any, text: ContinuationText,
                   cont: Continuation) -> None:
        params = (kv_params(req.staging_path, req.staged_blocks, time.time() + self.spec.call_timeout_s)
                  if req.staging_path else None)
        attach_by = time.monotonic() + self.spec.attach_timeout_s
        plen = req.text_prompt_len if req.text_prompt_len >= 0 else len(req.prompt_token_ids)
        if not sp.stop:
            sp.detokenize = False  # our replayed stream makes the text; vLLM's would re-prime on 8k tokens
        try:
            gen = self.host.generate(req.request_id, prompt, sp,
                                     kv_transfer_params=params, priority=req.priority,
                                     tracked={"sampling": sp, "migrated_in": True, "text_prompt_len": plen})
            async for chunk in gen:
                chunk.text = text.text(chunk.token_ids)
                if req.staging_path:
                    # The load ran in the step that produced this chunk.
                    unlink_staging(req.staging_path)
                cont.queue.put_nowait(chunk)
                if not cont.attached and time.monotonic() > attach_by:
                    log.warning("migrated-in %s: nobody attached, aborting", req.request_id)
                    await self.host.abort(req.request_id)
        except Exception as e:
            cont.queue.put_nowait(e)
        finally:
            if req.staging_path:
                unlink_staging(req.staging_path)
            cont.queue.put_nowait(_END)

    async def stream(self, request_id: str) -> AsyncIterator[Any]:
        cont = self.continuations.get(request_id)
        if cont is None:
            raise KeyError(f"no migrated-in request {request_id!r} here")
        cont.attached = True
        try:
            while True:
                item = await cont.queue.get()
                if item is _END:
                    return
                if isinstance(item, Exception):
                    raise item
                if getattr(item, "finish_reason", None) == "abort":
                    # Migrated on again: end with the next handoff marker.
                    item.handoff = await self._handoff(request_id)
                yield item
        finally:
            self.continuations.pop(request_id, None)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for cont in list(self.continuations.values()):
            if cont.task is not None and not cont.task.done():
                await self.host.abort(cont.request_id)


def _drop_orphan_staging(migration_id: str) -> None:
    """A staging area whose source never finished copying is nobody's any more."""
    path = ShmStaging.path_for(migration_id)
    try:
        st = ShmStaging.open(path)
    except (OSError, ValueError):
        return
    final = st.get(H_FINAL)
    st.close()
    if final != 1:
        unlink_staging(path)


def _primed_text(host: Any, prompt: list[int], text_prompt_len: int, skip_special: bool) -> ContinuationText:
    plen = text_prompt_len if 0 <= text_prompt_len <= len(prompt) else len(prompt)
    return ContinuationText(host.tokenizer, prompt[:plen], prompt[plen:], skip_special)
