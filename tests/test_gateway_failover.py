"""Failover logic of the gateway's ModelCaller, on scripted replica streams.

The live test with real replica processes killed mid-stream is in test_faults_live.py;
here the retry/resume decisions are checked on every branch, without Ray actors.
"""

from __future__ import annotations

import pytest
from ray.exceptions import ActorDiedError

from gateway.caller import ModelCaller, Progress, replica_lost, resumed_payload
from gateway.errors import APIError


class Stream:
    """One scripted replica stream: items, then maybe a death."""

    def __init__(self, items: list[dict], dies: bool) -> None:
        self.items, self.dies, self.cancelled = list(items), dies, False

    def __aiter__(self):
        return self

    async def __anext__(self) -> dict:
        if self.items:
            return self.items.pop(0)
        if self.dies:
            raise ActorDiedError()
        raise StopAsyncIteration

    def cancel(self) -> None:
        self.cancelled = True


class Method:
    def __init__(self, replica: Replicas) -> None:
        self.replica = replica

    def remote(self, payload: dict) -> Stream:
        self.replica.payloads.append(payload)
        return self.replica.script.pop(0)(payload)


class Replicas:
    """A handle whose every generate call plays the next script entry."""

    def __init__(self, script: list) -> None:
        self.script, self.payloads = script, []
        self.generate = Method(self)

    def options(self, **_: object) -> Replicas:
        return self


def start(rid: str = "r1") -> dict:
    return {"type": "start", "prompt_tokens": 5, "replica_id": rid}


def chunk(ids: list[int], index: int = 0, finish: str | None = None) -> dict:
    return {"type": "chunk", "index": index, "token_ids": ids, "text": "".join(f"<{i}>" for i in ids),
            "finish_reason": finish, "logprobs": None, "handoff": None}


def payload(n: int = 1, max_tokens: int | None = 10) -> dict:
    return {"request_id": "req", "prompt": "p", "sampling": {"n": n, "max_tokens": max_tokens}}


async def collect(caller: ModelCaller, p: dict) -> list[dict]:
    return [i async for i in caller.items("m", p)]


def text(items: list[dict], index: int = 0) -> str:
    return "".join(i["text"] for i in items if i["type"] == "chunk" and i["index"] == index)


async def test_a_death_before_any_token_retries_the_same_request_elsewhere() -> None:
    handle = Replicas([lambda p: Stream([start("r1")], dies=True),
                       lambda p: Stream([start("r2"), chunk([1, 2], finish="stop")], dies=False)])
    lost: list[str] = []
    items = await collect(ModelCaller({"m": handle}, 5, on_lost=lost.append), payload())
    assert [i["type"] for i in items] == ["start", "chunk"] and text(items) == "<1><2>"
    assert lost == ["r1"]
    retry = handle.payloads[1]
    assert "resume_token_ids" not in retry and retry["request_id"] != handle.payloads[0]["request_id"]


async def test_a_death_after_tokens_resumes_with_them_and_reduced_budgets() -> None:
    handle = Replicas([lambda p: Stream([start(), chunk([1]), chunk([2, 3])], dies=True),
                       lambda p: Stream([start("r2"), chunk([4], finish="length")], dies=False)])
    p = payload(max_tokens=4)
    p["sampling"]["min_tokens"] = 2
    items = await collect(ModelCaller({"m": handle}, 5), p)
    # One start (the resumed replica's is not repeated), every token once, in order.
    assert [i["type"] for i in items].count("start") == 1
    assert text(items) == "<1><2><3><4>"
    resumed = handle.payloads[1]
    assert resumed["resume_token_ids"] == [1, 2, 3]
    assert resumed["sampling"]["max_tokens"] == 1 and resumed["sampling"]["min_tokens"] == 0


async def test_each_unfinished_choice_resumes_as_its_own_request() -> None:
    def resumed(p: dict) -> Stream:  # choice 0 continues after [1, 2]; choice 2 starts afresh
        return Stream([start("r2"), chunk([3] if p["resume_token_ids"] else [9], 0, "stop")], dies=False)

    handle = Replicas([
        lambda p: Stream([start(), chunk([1], 0), chunk([7], 1), chunk([8], 1, "stop"), chunk([2], 0)],
                         dies=True), resumed, resumed])
    items = await collect(ModelCaller({"m": handle}, 5), payload(n=3))
    assert text(items, 0) == "<1><2><3>" and text(items, 1) == "<7><8>" and text(items, 2) == "<9>"
    # Choice 1 had finished: two sub-requests, n=1 each, one per unfinished choice.
    subs = sorted(handle.payloads[1:], key=lambda p: p["request_id"])
    assert [p["resume_token_ids"] for p in subs] == [[1, 2], []]
    assert all(p["sampling"]["n"] == 1 for p in subs)


async def test_retries_are_bounded_and_end_in_a_503_with_retry_after() -> None:
    handle = Replicas([lambda p: Stream([start()], dies=True) for _ in range(3)])
    with pytest.raises(APIError) as e:
        await collect(ModelCaller({"m": handle}, 5, retries=2), payload())
    assert e.value.status == 503 and e.value.headers["Retry-After"]
    assert e.value.body()["error"]["code"] == "model_unavailable"
    assert len(handle.payloads) == 3


async def test_no_replica_up_is_a_503_before_any_call() -> None:
    handle = Replicas([])
    with pytest.raises(APIError) as e:
        await collect(ModelCaller({"m": handle}, 5, replicas_up=lambda m: 0), payload())
    assert e.value.status == 503 and handle.payloads == []
    # Unknown (no fresh fleet view) is not "none": the call goes ahead.
    handle = Replicas([lambda p: Stream([start(), chunk([1], finish="stop")], dies=False)])
    assert text(await collect(ModelCaller({"m": handle}, 5, replicas_up=lambda m: None), payload())) == "<1>"


async def test_errors_that_are_not_a_replica_death_are_not_retried() -> None:
    class Broken(Stream):
        async def __anext__(self) -> dict:
            raise ValueError("bug")

    handle = Replicas([lambda p: Broken([], dies=False), lambda p: Stream([start()], dies=False)])
    with pytest.raises(ValueError):
        await collect(ModelCaller({"m": handle}, 5), payload())
    assert len(handle.payloads) == 1


def test_replica_lost_and_progress() -> None:
    assert replica_lost(ActorDiedError()) and not replica_lost(ValueError("x"))

    class EngineDeadError(Exception):
        pass

    assert replica_lost(type("RayTaskError(EngineDeadError)", (EngineDeadError,), {})())
    prog = Progress()
    for item in (start("r9"), chunk([1, 2]), chunk([3], finish="stop")):
        prog.see(item)
    assert prog.replica_id == "r9" and prog.tokens == {0: [1, 2, 3]} and prog.finished == {0}
    unbounded = resumed_payload({**payload(max_tokens=None), "max_tokens_cap": 100}, [1, 2], "-x")
    assert unbounded["sampling"]["max_tokens"] is None and unbounded["request_id"] == "req-x"
    assert unbounded["max_tokens_cap"] == 98  # the configured limit still bounds the whole answer
