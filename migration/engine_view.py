"""What the migration agent reads from the replica's engine, in one place.

The tokens the client has received are the ones AsyncLLM's output processor has
accepted: aborting a request there flushes them, merged, into the request's stream
before its final "abort" output. So the handoff point is read from the output
processor in the same event-loop tick as the abort (no await in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migration.control import control_address, control_call
from migration.transfer import KVLayout


@dataclass(frozen=True)
class RequestView:
    request_id: str  # the replica's id
    internal_id: str  # the engine's id (request_id + a random suffix)
    prompt_token_ids: list[int]
    output_token_ids: list[int]

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)


def request_view(engine_host: Any, request_id: str) -> RequestView | None:
    proc = engine_host.engine.output_processor
    internal = proc.external_req_ids.get(request_id) or []
    if len(internal) != 1:
        return None  # unknown, finished, or n > 1 (not migrated)
    state = proc.request_states.get(internal[0])
    if state is None or state.detokenizer is None:
        return None
    return RequestView(request_id, internal[0], list(state.prompt_token_ids or []),
                       list(state.detokenizer.output_token_ids))


def tracked(engine_host: Any, request_id: str) -> Any:
    """EngineHost's bookkeeping for a request (prompt length, priority, extra flags)."""
    getter = getattr(engine_host, "tracked", None)
    if callable(getter):
        return getter(request_id)
    return getattr(engine_host, "_requests", {}).get(request_id)


def sampling_params(engine_host: Any, request_id: str) -> Any:
    """The request's SamplingParams: EngineHost.request_params if it has it, else what
    the replica put in the request's `tracked` dict under "sampling"."""
    getter = getattr(engine_host, "request_params", None)
    if callable(getter):
        params = getter(request_id)
        if params is not None:
            return params[1] if isinstance(params, tuple) else params
    t = tracked(engine_host, request_id)
    return None if t is None else t.extra.get("sampling")


def set_flag(engine_host: Any, request_id: str, key: str, value: Any) -> None:
    t = tracked(engine_host, request_id)
    if t is not None:
        t.extra[key] = value


def engine_address(engine_host: Any) -> str:
    return control_address(engine_host.engine.vllm_config.kv_transfer_config.engine_id)


async def engine_info(engine_host: Any, timeout: float) -> dict:
    """KV layout and free blocks, straight from the engine's scheduler-side connector."""
    return await control_call(engine_address(engine_host), {"op": "info"}, timeout)


def layout_of(info: dict) -> KVLayout:
    return KVLayout(int(info["num_layers"]), int(info["block_bytes"]), int(info["block_size"]))


def text_prompt_len(tracked_request: Any, view: RequestView) -> int:
    """The client's original prompt length (a request migrated before carries it)."""
    extra = getattr(tracked_request, "extra", None) or {}
    return int(extra.get("text_prompt_len", len(view.prompt_token_ids)))
