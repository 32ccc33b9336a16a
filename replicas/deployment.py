"""The model-replica Ray Serve deployment: one EngineHost per replica.

Requests arrive as plain dicts from the gateway; the replica tokenizes (it owns the
model's tokenizer and chat template), checks the context length before anything
reaches the engine, and streams back plain dicts: first a "start" (or "error") item,
then "chunk" items. Plain dicts keep the seam between gateway and replica explicit.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from replicas import metrics
from replicas.detok import ContinuationText
from replicas.engine import EngineHost
from replicas.fleet import get_registry
from replicas.packs import resolve
from replicas.stats import ReplicaStats

logger = logging.getLogger("turnout.replica")

# Sampling fields the gateway may send; everything else is dropped.
SAMPLING_FIELDS = {
    "n", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "max_tokens", "min_tokens",
    "presence_penalty", "frequency_penalty", "repetition_penalty", "logprobs", "ignore_eos",
    "logit_bias", "stop_token_ids", "include_stop_str_in_output",
}


PUBLISH_BUSY_S = 0.05
PUBLISH_IDLE_S = 1.0


class RequestRejected(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code

    def as_item(self) -> dict:
        return {"type": "error", "status": self.status, "message": self.message,
                "param": self.param, "code": self.code}


def build_sampling(sampling: dict) -> Any:
    from vllm.sampling_params import SamplingParams, StructuredOutputsParams

    kwargs = {k: v for k, v in sampling.items() if k in SAMPLING_FIELDS and v is not None}
    if kwargs.get("logit_bias"):
        kwargs["logit_bias"] = {int(k): float(v) for k, v in kwargs["logit_bias"].items()}
    fmt = sampling.get("response_format")
    if fmt:
        if fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            kwargs["structured_outputs"] = StructuredOutputsParams(json=schema)
        elif fmt.get("type") == "json_object":
            kwargs["structured_outputs"] = StructuredOutputsParams(json_object=True)
    try:
        return SamplingParams(**kwargs)
    except (ValueError, TypeError, client_errors()) as e:
        raise RequestRejected(str(e).split("\n")[0]) from None


def client_errors() -> type[Exception]:
    """vLLM's "the request is wrong" errors (4xx), which are not ValueErrors."""
    from vllm.exceptions import VLLMClientError

    return VLLMClientError


class ModelReplica:
    """Ray Serve deployment class (wrapped with serve.deployment by the app builder)."""

    async def __init__(self, model: str, source: str, engine_args: dict[str, Any],
                       cpu_threads: int = 1, extensions: list[dict] | None = None,
                       env: dict[str, str] | None = None, headroom_blocks: int = 0) -> None:
        os.environ.update(env or {})
        try:
            replica_id = serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside Serve (direct use in tests)
            replica_id = f"{model}-local"
        self.replica_id = replica_id
        self.model = model
        # Resolve here, on the replica's own node (a no-op when the pack is built).
        model_path = str(await asyncio.to_thread(resolve, source))
        self.host = EngineHost(model, model_path, engine_args, replica_id, cpu_threads)
        await self.host.start()
        self.host.headroom_blocks = headroom_blocks
        self.extensions: dict[str, Any] = {}
        for ext in extensions or []:
            self.extensions[ext["name"]] = _load_extension(ext, self.host)
        self.aborted = 0
        self._wake = asyncio.Event()
        self._publisher = asyncio.get_running_loop().create_task(self._publish_stats())

    async def _publish_stats(self) -> None:
        """Push stats to the app's FleetRegistry: 20 Hz while busy, 1 Hz when idle."""
        try:
            app = serve.get_replica_context().app_name
        except Exception:
            return
        registry = get_registry(app)
        while True:
            stats = self.stats()
            registry.report.remote(stats)
            metrics.record_replica_stats(ReplicaStats.from_dict(stats))
            busy = stats["running"] + stats["waiting"] > 0 or stats["migration_stage"]
            self._wake.clear()
            # Idle: sleep long, but a new request wakes us so its stats are out at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), PUBLISH_BUSY_S if busy else PUBLISH_IDLE_S)
            if self._wake.is_set():
                await asyncio.sleep(PUBLISH_BUSY_S / 5)  # let the engine admit it first

    # ---- requests --------------------------------------------------------------------
    def _prompt_ids(self, req: dict) -> list[int]:
        if req.get("prompt_token_ids") is not None:
            return list(req["prompt_token_ids"])
        if req.get("messages") is not None:
            try:
                return self.host.encode_chat(req["messages"])
            except Exception as e:
                raise RequestRejected(f"messages could not be rendered: {e}", "messages") from None
        return self.host.encode(req.get("prompt", ""))

    def _check_length(self, prompt_len: int, max_tokens: int | None, cap: int | None = None) -> int:
        """The completion budget: `max_tokens`, or without one what the context leaves
        (at most `cap`, the gateway's configured limit)."""
        limit = self.host.max_model_len
        if prompt_len >= limit:
            raise RequestRejected(
                f"This model's maximum context length is {limit} tokens; the prompt has "
                f"{prompt_len} tokens.", "messages", code="context_length_exceeded")
        if max_tokens is None:
            return max(1, min(limit - prompt_len, cap if cap is not None else limit))
        if prompt_len + max_tokens > limit:
            raise RequestRejected(
                f"This model's maximum context length is {limit} tokens; the prompt has "
                f"{prompt_len} tokens and max_tokens is {max_tokens}.", "max_tokens",
                code="context_length_exceeded")
        return max_tokens

    async def generate(self, req: dict) -> AsyncIterator[dict]:
        """Stream a request: {"type": "start"} then {"type": "chunk", ...} items.

        `resume_token_ids` continues a request whose replica died after streaming them:
        the engine re-prefills prompt + those tokens (the recompute path) and the text of
        the new tokens is decoded as the first replica would have decoded it."""
        resumed = list(req.get("resume_token_ids") or [])
        try:
            ids = self._prompt_ids(req)
            sampling = dict(req.get("sampling") or {})
            sampling["max_tokens"] = self._check_length(len(ids) + len(resumed), sampling.get("max_tokens"),
                                                        req.get("max_tokens_cap"))
            params = build_sampling(sampling)
        except RequestRejected as e:
            yield e.as_item()
            return
        request_id = req["request_id"]
        self._wake.set()
        yield {"type": "start", "prompt_tokens": len(ids), "replica_id": self.replica_id}
        text = ContinuationText(self.host.tokenizer, ids, resumed, params.skip_special_tokens) \
            if resumed else None
        ids = ids + resumed
        tracked = {"sampling": params, "prompt_len": len(ids)}
        answered = False
        try:
            async for chunk in self.host.generate(request_id, ids, params,
                                                  kv_transfer_params=req.get("kv_transfer_params"),
                                                  priority=int(req.get("priority", 0)),
                                                  tracked=tracked):
                if chunk.finish_reason == "abort" and "migration" in self.extensions:
                    # Stopped for a migration: the last item says where the rest comes from.
                    chunk.handoff = await self.extensions["migration"].handoff(request_id)
                if text is not None:
                    chunk.text = text.text(chunk.token_ids)
                answered = True
                yield chunk_item(chunk)
        except (ValueError, client_errors()) as e:
            if answered:
                raise
            # The engine's own input checks: the caller's fault, answered as a 400 rather
            # than a failed stream.
            yield RequestRejected(str(e).split("\n")[0]).as_item()
        except (asyncio.CancelledError, GeneratorExit):
            # The caller went away (client disconnect): the engine has aborted it.
            self.aborted += 1
            metrics.record_aborted(self.model, self.replica_id)
            await self.host.abort(request_id)
            raise

    async def abort(self, request_id: str, replica_id: str | None = None) -> bool:
        known = self.host.has_request(request_id)
        await self.host.abort(request_id)
        return known

    def stats(self, replica_id: str | None = None) -> dict:
        """This replica's stats (`replica_id` pins the call, see request_router.py)."""
        d = self.host.stats().to_dict()
        d["aborted"] = self.aborted
        for ext in self.extensions.values():
            if hasattr(ext, "stats_extra"):
                d.update(ext.stats_extra())
        return d

    def record_routing_stats(self) -> dict:
        """Ray Serve's request router reads this on every replica (RequestRouterConfig)."""
        return self.host.stats().to_dict()

    async def set_draining(self, draining: bool, replica_id: str | None = None) -> bool:
        self.host.draining = draining
        return draining

    def _extension(self, name: str) -> Any:
        ext = self.extensions.get(name)
        if ext is None:
            raise KeyError(f"no extension {name!r} on this replica")
        return ext

    async def ext_call(self, extension: str, method: str, *args: Any,
                       replica_id: str | None = None, **kwargs: Any) -> Any:
        """Entry point for extensions (e.g. migration) loaded by import path."""
        result = getattr(self._extension(extension), method)(*args, **kwargs)
        return await result if asyncio.iscoroutine(result) else result

    async def ext_stream(self, extension: str, method: str, *args: Any,
                         replica_id: str | None = None) -> AsyncIterator[dict]:
        """A streaming extension call: e.g. the rest of a request migrated in here."""
        async for chunk in getattr(self._extension(extension), method)(*args):
            yield chunk_item(chunk)

    def check_health(self) -> None:
        if self.host.engine is None or getattr(self.host.engine, "errored", False):
            raise RuntimeError("engine is not running")

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.host.shutdown()


def chunk_item(chunk: Any) -> dict:
    return {"type": "chunk", "index": chunk.index, "token_ids": chunk.token_ids,
            "text": chunk.text, "finish_reason": chunk.finish_reason,
            "logprobs": chunk.logprobs, "handoff": chunk.handoff}


def _load_extension(ext: dict, host: EngineHost) -> Any:
    """Load "module:Class" and build it as Class(engine_host, replica_id, **kwargs).

    Extensions are named by import path, so replicas/ never imports them statically."""
    module_name, _, attr = ext["import_path"].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls(host, host.replica_id, **(ext.get("kwargs") or {}))
