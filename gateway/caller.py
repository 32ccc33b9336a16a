"""Calls into the model deployments: one Ray Serve handle per model.

A request's stream survives two kinds of replica change. A migration ends the source's
stream with a handoff marker, and we follow it to the destination. A replica that dies
(its actor or its engine) breaks the stream: if nothing was streamed yet the request is
retried on another replica; if tokens were already sent it is resumed there through the
recompute path (prompt + the tokens sent so far are prefilled again), so the client sees
one continuous stream either way, or a clear error once the retries are spent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway import metrics
from gateway.errors import APIError

log = logging.getLogger("turnout.gateway")

RETRY_BACKOFF_S = 0.25  # lets Serve's router hear of the death before we route again


def replica_lost(e: BaseException) -> bool:
    """The replica serving a stream is gone: its actor died, or its engine process did."""
    from ray.exceptions import RayActorError

    if isinstance(e, RayActorError):
        return True
    # An engine death inside a live actor arrives as a RayTaskError subclassing the cause.
    return any(c.__name__ in ("EngineDeadError", "EngineGenerateError") for c in type(e).__mro__)


def raise_if_error(item: dict) -> None:
    """A replica refused the request (bad input it alone can see): an OpenAI error."""
    if item["type"] == "error":
        raise APIError(item["status"], item["message"], item.get("param"), item.get("code"))


def unavailable(model: str, why: str) -> APIError:
    return APIError(503, f"Model '{model}' has no healthy replica right now ({why}). Retry shortly.",
                    None, "model_unavailable", {"Retry-After": "5"})


@dataclass
class Progress:
    """What one prompt's stream has delivered: enough to resume it elsewhere."""

    started: bool = False
    replica_id: str | None = None
    tokens: dict[int, list[int]] = field(default_factory=dict)  # choice index -> token ids
    finished: set[int] = field(default_factory=set)

    def see(self, item: dict) -> None:
        if item["type"] == "start":
            self.started, self.replica_id = True, item.get("replica_id")
        elif item["type"] == "chunk":
            self.tokens.setdefault(item["index"], []).extend(item["token_ids"])
            if item.get("finish_reason"):
                self.finished.add(item["index"])


def resumed_payload(payload: dict, sent: list[int], suffix: str) -> dict:
    """One choice continued after `sent`: the same request with its budgets reduced."""
    sampling = dict(payload["sampling"], n=1)
    extra = {}
    if sampling.get("max_tokens") is not None:
        sampling["max_tokens"] -= len(sent)
    elif payload.get("max_tokens_cap") is not None:
        extra["max_tokens_cap"] = max(1, payload["max_tokens_cap"] - len(sent))
    if sampling.get("min_tokens"):
        sampling["min_tokens"] = max(0, sampling["min_tokens"] - len(sent))
    return {**payload, **extra, "sampling": sampling, "resume_token_ids": list(sent),
            "request_id": payload["request_id"] + suffix}


class ModelCaller:
    def __init__(self, handles: dict[str, Any], first_item_timeout_s: float, retries: int = 2,
                 replicas_up: Callable[[str], int | None] | None = None,
                 on_lost: Callable[[str], None] | None = None) -> None:
        # Streaming handles made once: options() builds a new handle on every call.
        self.streaming = {m: h.options(stream=True) for m, h in handles.items()}
        self.timeout = first_item_timeout_s
        self.retries = retries
        # How many replicas of a model report in (None: unknown), and who to tell of a death.
        self.replicas_up = replicas_up or (lambda model: None)
        self.on_lost = on_lost or (lambda replica_id: None)

    def check_available(self, model: str) -> None:
        if self.replicas_up(model) == 0:
            raise unavailable(model, "every replica is down or restarting")

    async def items(self, model: str, payload: dict, progress: Progress | None = None,
                    retries: int | None = None) -> AsyncIterator[dict]:
        """Stream replica items for one prompt; the first is "start" or an APIError is raised."""
        progress = progress or Progress()
        retries = self.retries if retries is None else max(0, retries)
        if not progress.started:
            self.check_available(model)
        for attempt in range(retries + 1):
            try:
                async for item in self._attempt(model, payload, progress):
                    yield item
                return
            except Exception as e:
                if not replica_lost(e):
                    raise
                log.warning("replica %s of %s lost mid-request (%s): %s", progress.replica_id, model,
                            type(e).__name__, str(e).split("\n")[0])
                if progress.replica_id:
                    self.on_lost(progress.replica_id)
            if attempt == retries:
                break
            await asyncio.sleep(RETRY_BACKOFF_S * (attempt + 1))
            self.check_available(model)
            if any(progress.tokens.values()):
                metrics.record_failover(model, "resumed")
                async for item in self._resume(model, payload, progress, retries - attempt - 1):
                    yield item
                return
            metrics.record_failover(model, "retried")
            payload = {**payload, "request_id": f"{payload['request_id']}-r{attempt + 1}"}
        metrics.record_failover(model, "exhausted")
        raise unavailable(model, f"its replica failed {retries + 1} times")

    def _resume(self, model: str, payload: dict, progress: Progress, retries: int
                ) -> AsyncIterator[dict]:
        """Continue every unfinished choice on another replica, one sub-request each
        (a choice is one sequence; vLLM cannot continue n of them as one request)."""
        n = payload["sampling"].get("n") or 1
        open_choices = [i for i in range(n) if i not in progress.finished]
        # Each sub-stream has the retries left; its "start" was counted already.
        streams = [self.items(model, resumed_payload(payload, progress.tokens.get(i, []), f"-c{i}"),
                              Progress(started=True), retries) for i in open_choices]
        return merge(streams, open_choices)

    async def _attempt(self, model: str, payload: dict, progress: Progress) -> AsyncIterator[dict]:
        """One replica's stream (and the replicas it migrates to), items as they come.

        A request migrated mid-stream ends its source stream with a handoff marker; we
        follow it to the destination replica."""
        handle = self.streaming[model]
        active = handle.generate.remote(payload)
        done = False
        try:
            first = await asyncio.wait_for(active.__anext__(), self.timeout)
            raise_if_error(first)
            resumed = progress.started
            progress.see(first)
            if not resumed:
                yield first
            while active is not None:
                follow = None
                async for item in active:
                    handoff = item.get("handoff")
                    if handoff:
                        item = {**item, "finish_reason": None, "handoff": None}
                        if item["token_ids"]:
                            progress.see(item)
                            yield item
                        progress.replica_id = handoff["replica_id"]
                        follow = handle.ext_stream.remote("migration", "stream", handoff["request_id"],
                                                          replica_id=handoff["replica_id"])
                        break
                    raise_if_error(item)
                    if item.get("finish_reason") == "abort":
                        raise APIError(503, "The request was stopped on its replica before it finished.",
                                       None, "aborted", {"Retry-After": "1"})
                    progress.see(item)
                    yield item
                active = follow
            done = True
        except StopAsyncIteration:
            done = True
            raise APIError(500, "The model replica ended the stream without output.") from None
        except TimeoutError:
            raise APIError(504, f"Model '{model}' did not start answering within {self.timeout:.0f} s.",
                           None, "timeout") from None
        finally:
            if not done and active is not None:
                active.cancel()  # client went away or we failed: the replica aborts the request


def own_request_context() -> None:
    """Give this task's Ray Serve calls their own internal request id.

    Concurrent handle calls made while serving one ingress request inherit its internal
    id, and Ray Serve's request router indexes pending requests by that id: the second
    call is taken for a retry of the first and never routed (with any router that
    matches by id, like ours). Tasks copy their context, so this stays in the task."""
    from ray.serve import context
    from ray.serve._private.utils import generate_request_id

    current = context._get_serve_request_context()
    context._serve_request_context.set(replace(current, _internal_request_id=generate_request_id()))


async def merge(streams: list[AsyncIterator[dict]], offsets: list[int]) -> AsyncIterator[dict]:
    """Merge several prompt streams into one, shifting choice indexes per prompt."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield {**item, "index": item["index"] + offsets[0]} if item["type"] == "chunk" else item
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(stream: AsyncIterator[dict], offset: int) -> None:
        own_request_context()
        try:
            async for item in stream:
                if item["type"] == "chunk":
                    item = {**item, "index": item["index"] + offset}
                await queue.put(item)
        except BaseException as e:  # noqa: BLE001 - forwarded to the consumer
            await queue.put(e)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(s, o)) for s, o in zip(streams, offsets, strict=True)]
    live = len(tasks)
    try:
        while live:
            item = await queue.get()
            if item is None:
                live -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for t in tasks:
            t.cancel()
