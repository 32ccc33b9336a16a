"""The request path behind the HTTP routes: resolve the model, check limits, call the
replica deployment through its Ray Serve handle, and assemble OpenAI bodies or SSE.

Kept free of FastAPI so the same code serves the routes, benchmarks and tests.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.auth import Caller
from gateway.caller import ModelCaller, merge
from gateway.config import GatewaySpec
from gateway.errors import invalid, model_not_found
from gateway.openai_format import SSE_DONE, Assembled, sse
from gateway.protocol import ChatCompletionRequest, CompletionRequest
from replicas.config import ModelSpec


@dataclass
class Plan:
    """What the gateway decided for one request, before any engine work."""

    kind: str  # "chat" | "text"
    model: str
    reason: str
    payloads: list[dict]  # one per prompt
    stream: bool
    include_usage: bool
    headers: dict[str, str] = field(default_factory=dict)


class Completions:
    def __init__(self, spec: GatewaySpec, models: list[ModelSpec], caller: ModelCaller) -> None:
        self.spec = spec
        self.models = {m.name: m for m in models}
        self.default_model = spec.default_model or models[0].name
        self.caller = caller

    # ---- planning (no engine work) -------------------------------------------------
    def resolve_model(self, requested: str, who: Caller,
                      routed: tuple[str, str] | None = None) -> tuple[str, str]:
        allowed = who.tenant.allowed_models
        if requested == "auto":
            if routed is not None:
                return routed
            if allowed and "auto" not in allowed and self.default_model not in allowed:
                raise model_not_found(requested)
            return self.default_model, "default model for auto (no router configured)"
        if requested not in self.models or (allowed and requested not in allowed):
            raise model_not_found(requested)
        return requested, "requested by name"

    def check_limits(self, req: Any, spec: ModelSpec) -> None:
        lim = self.spec.limits
        max_tokens = req.sampling().get("max_tokens")
        if max_tokens is not None and max_tokens > min(lim.max_tokens, spec.max_model_len):
            raise invalid(
                f"max_tokens is too large: {max_tokens}. This model supports at most "
                f"{min(lim.max_tokens, spec.max_model_len)} completion tokens.", "max_tokens")
        if req.n > lim.max_n:
            raise invalid(f"n is too large: {req.n}; at most {lim.max_n}.", "n")
        if req.n > 1 and req.temperature == 0:
            raise invalid("n must be 1 with temperature 0: greedy choices would all be the same.", "n")
        if isinstance(req, ChatCompletionRequest) and len(req.messages) > lim.max_messages:
            raise invalid(f"Too many messages: {len(req.messages)}; at most {lim.max_messages}.",
                          "messages")

    def plan(self, req: ChatCompletionRequest | CompletionRequest, who: Caller,
             routed: tuple[str, str] | None = None) -> Plan:
        model, reason = self.resolve_model(req.model, who, routed)
        self.check_limits(req, self.models[model])
        sampling = req.sampling()
        priority = req.priority if req.priority is not None else who.tenant.priority
        # Without max_tokens a request may run to the end of the context, but never past
        # the configured limit.
        base = {"sampling": sampling, "priority": priority, "tenant": who.tenant.name,
                "max_tokens_cap": self.spec.limits.max_tokens}
        if isinstance(req, ChatCompletionRequest):
            messages = [m.model_dump(exclude_none=True) for m in req.messages]
            for m in messages:
                if isinstance(m.get("content"), list):
                    m["content"] = "".join(p.get("text", "") for p in m["content"] if p.get("type") == "text")
            payloads = [{**base, "messages": messages}]
            kind = "chat"
        else:
            payloads = [{**base, "prompt": p} for p in req.prompts()]
            kind = "text"
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return Plan(kind, model, reason, payloads, req.stream, include_usage,
                    {"x-turnout-model": model, "x-turnout-route-reason": reason})

    # ---- execution -------------------------------------------------------------------
    def _start(self, plan: Plan) -> tuple[Assembled, AsyncIterator[dict]]:
        prefix = "chatcmpl-" if plan.kind == "chat" else "cmpl-"
        rid = prefix + uuid.uuid4().hex[:24]
        out = Assembled(plan.kind, rid, plan.model, int(time.time()))
        n = plan.payloads[0]["sampling"].get("n", 1)
        streams = []
        for i, p in enumerate(plan.payloads):
            payload = {**p, "request_id": rid if len(plan.payloads) == 1 else f"{rid}-{i}"}
            streams.append(self.caller.items(plan.model, payload))
        return out, merge(streams, [i * n for i in range(len(streams))])

    async def complete(self, plan: Plan) -> tuple[dict, Assembled]:
        out, items = self._start(plan)
        async for item in items:
            if item["type"] == "start":
                out.prompt_tokens += item["prompt_tokens"]
            elif item["type"] == "chunk":
                out.add(item)
        return out.body(), out

    async def first_item(self, plan: Plan) -> tuple[Assembled, AsyncIterator[dict], list[dict]]:
        """Start a stream and wait for every prompt's first item, so errors become HTTP errors."""
        out, items = self._start(plan)
        starts: list[dict] = []
        while len(starts) < len(plan.payloads):
            item = await items.__anext__()
            starts.append(item)
            if item["type"] == "start":
                out.prompt_tokens += item["prompt_tokens"]
        return out, items, starts

    async def stream(self, plan: Plan, out: Assembled, items: AsyncIterator[dict],
                     early: list[dict], on_done: Any = None) -> AsyncIterator[bytes]:
        seen: set[int] = set()

        def emit(item: dict) -> list[bytes]:
            frames = []
            idx = item["index"]
            out.add(item)
            first = idx not in seen
            seen.add(idx)
            if item["text"] or first or item.get("logprobs"):
                frames.append(sse(out.chunk(idx, item["text"], None, item.get("logprobs"),
                                            role=first)))
            if item.get("finish_reason"):
                frames.append(sse(out.chunk(idx, None if plan.kind == "chat" else "",
                                            item["finish_reason"])))
            return frames

        for item in early:
            if item["type"] == "chunk":
                for f in emit(item):
                    yield f
        async for item in items:
            if item["type"] == "chunk":
                for f in emit(item):
                    yield f
            elif item["type"] == "start":
                out.prompt_tokens += item["prompt_tokens"]
        if plan.include_usage:
            yield sse(out.usage_chunk())
        yield SSE_DONE
        if on_done is not None:
            await on_done(out.body(), out)
