"""Cache and router in the live request path: real engines, real Redis, the openai client."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import openai
import pytest
import redis
from openai import AsyncOpenAI, OpenAI

from tests.conftest import TESTS, deploy_app

pytestmark = pytest.mark.engine
PREFIX = "turnout-test-smart:"


@pytest.fixture(scope="module")
def smart_app(serve_port: int):
    from ray import serve

    from replicas.fleet import kill_registry

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for k in r.scan_iter(PREFIX + "*"):
        r.delete(k)
    app = deploy_app(TESTS / "smart.yaml", "smart", serve_port)
    yield app
    serve.delete("smart")
    kill_registry("smart")
    for k in r.scan_iter(PREFIX + "*"):
        r.delete(k)


def client(app, key: str = "alpha-key") -> OpenAI:
    return OpenAI(base_url=app.openai_base, api_key=key, max_retries=0, timeout=120)


def ask(c: OpenAI, text: str, model: str = "auto", **kw):
    args = {"messages": [{"role": "user", "content": text}], "max_tokens": 8, "temperature": 0} | kw
    return c.chat.completions.with_raw_response.create(model=model, **args)


def admin(app, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, app.base + path, headers={"authorization": "Bearer test-admin-key"},
                         timeout=60, **kw)


def test_keys_are_required_and_admin_is_separate(smart_app) -> None:
    with pytest.raises(openai.AuthenticationError):
        ask(client(smart_app, "wrong-key"), "hello")
    r = httpx.get(smart_app.base + "/admin/v1/overview", headers={"authorization": "Bearer alpha-key"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_admin_key"
    assert admin(smart_app, "GET", "/admin/v1/overview").status_code == 200
    # No key at all; a tenant's key on the per-tenant cache stats (admin only).
    r = httpx.post(smart_app.base + "/v1/chat/completions",
                   json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.get(smart_app.base + "/admin/v1/cache/stats?tenant=beta",
                  headers={"authorization": "Bearer alpha-key"})
    assert r.status_code == 401 and "beta" not in r.text


def test_exact_repeat_is_served_from_cache(smart_app) -> None:
    c = client(smart_app)
    q = f"What is the capital of France? ({uuid.uuid4().hex[:6]})"
    first = ask(c, q)
    assert first.headers["x-turnout-cache"] == "miss"
    second = ask(c, q)
    assert second.headers["x-turnout-cache"] == "hit-exact"
    a, b = first.parse(), second.parse()
    assert b.choices[0].message.content == a.choices[0].message.content
    assert b.model_extra["turnout_cache"]["tier"] == "exact"
    assert b.id != a.id


def test_paraphrase_hits_semantically_and_streams_as_sse(smart_app) -> None:
    c = client(smart_app)
    stored = ask(c, "How do I reverse a list in Python?").parse()
    para = ask(c, "How can I reverse a list in Python?")
    assert para.headers["x-turnout-cache"] == "hit-semantic"
    assert para.parse().choices[0].message.content == stored.choices[0].message.content
    chunks = list(c.chat.completions.create(
        model="auto", stream=True, max_tokens=8, temperature=0,
        messages=[{"role": "user", "content": "How can I reverse a list in Python?"}]))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == stored.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason is not None


def test_tenants_and_named_models_do_not_share_entries(smart_app) -> None:
    q = "Explain what a hash map is in one sentence."
    ask(client(smart_app, "alpha-key"), q)
    assert ask(client(smart_app, "alpha-key"), q).headers["x-turnout-cache"] == "hit-exact"
    assert ask(client(smart_app, "beta-key"), q).headers["x-turnout-cache"] == "miss"
    named = ask(client(smart_app, "alpha-key"), q, model="tiny-b")
    assert named.headers["x-turnout-cache"] == "miss"
    assert named.headers["x-turnout-model"] == "tiny-b"


def test_uncacheable_sampling_bypasses_cache(smart_app) -> None:
    c = client(smart_app)
    q = "Write one word about the sea."
    ask(c, q, temperature=0.9, seed=1)
    assert ask(c, q, temperature=0.9, seed=1).headers["x-turnout-cache"] == "miss"


def test_invalidate_category_through_admin_api(smart_app) -> None:
    c = client(smart_app)
    q = "What is the boiling point of water at sea level?"
    ask(c, q)
    hit = ask(c, q)
    assert hit.headers["x-turnout-cache"] == "hit-exact"
    category = hit.parse().model_extra["turnout_cache"]["category"]
    r = admin(smart_app, "POST", "/admin/v1/cache/invalidate", json={"category": category})
    assert r.status_code == 200 and r.json()["invalidated"] >= 1
    assert ask(c, q).headers["x-turnout-cache"] == "miss"
    bad = admin(smart_app, "POST", "/admin/v1/cache/invalidate", json={"category": "nonsense"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "category"


def test_router_prefers_quality_and_explains(smart_app) -> None:
    r = ask(client(smart_app), f"Prove that sqrt(2) is irrational. {uuid.uuid4().hex[:6]}")
    assert r.headers["x-turnout-model"] == "tiny-a"
    assert "x-turnout-predicted" in r.headers
    assert r.parse().model == "tiny-a"
    # A per-request override that weighs price heavily picks the cheap model.
    cheap = ask(client(smart_app), f"Prove that sqrt(3) is irrational. {uuid.uuid4().hex[:6]}",
                extra_body={"router": {"lambda": 1000.0}})
    assert cheap.headers["x-turnout-model"] == "tiny-b"
    bad = httpx.post(smart_app.openai_base + "/chat/completions",
                     headers={"authorization": "Bearer alpha-key"},
                     json={"model": "auto", "messages": [{"role": "user", "content": "hi"}],
                           "router": {"lambda": -1}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "router"


async def _load(app, n: int, stop: asyncio.Event) -> None:
    c = AsyncOpenAI(base_url=app.openai_base, api_key="beta-key", max_retries=0, timeout=300)

    async def one(i: int) -> None:
        stream = await c.chat.completions.create(
            model="tiny-a", stream=True, max_tokens=1500, temperature=0.8, seed=i,
            messages=[{"role": "user", "content": f"load {i} " + "word " * 100}])
        async for _ in stream:
            if stop.is_set():
                break
        await stream.close()

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[0]


async def _running(app, model: str) -> int:
    s = await asyncio.to_thread(app.replica_stats, model)
    return s["running"] + s["waiting"]


async def test_saturated_preferred_model_loses_auto_traffic_and_wins_it_back(smart_app) -> None:
    c = client(smart_app)
    stop = asyncio.Event()
    load = asyncio.create_task(_load(smart_app, 24, stop))
    try:
        deadline = time.time() + 120
        while await _running(smart_app, "tiny-a") < 20 and time.time() < deadline:
            await asyncio.sleep(0.2)
        assert await _running(smart_app, "tiny-a") >= 20
        await asyncio.sleep(0.5)  # stats reach the gateway's fleet view
        busy = await asyncio.to_thread(ask, c, f"Name a prime number. {uuid.uuid4().hex[:6]}")
        assert busy.headers["x-turnout-model"] == "tiny-b"
    finally:
        stop.set()
        await load
    deadline = time.time() + 60
    while await _running(smart_app, "tiny-a") > 0 and time.time() < deadline:
        await asyncio.sleep(0.2)
    # Wins it back once the idle stats are out (1 Hz when idle; a loaded CI machine is slower).
    served = []
    deadline = time.time() + 30
    while time.time() < deadline and served[-1:] != ["tiny-a"]:
        await asyncio.sleep(1.0)
        calm = await asyncio.to_thread(ask, c, f"Name another prime number. {uuid.uuid4().hex[:6]}")
        served.append(calm.headers["x-turnout-model"])
    assert served[-1] == "tiny-a", served


def test_feedback_is_stored_for_the_tenant_that_got_the_answer(smart_app) -> None:
    r = ask(client(smart_app), f"Summarise the water cycle. {uuid.uuid4().hex[:6]}").parse()
    ok = httpx.post(smart_app.base + "/v1/feedback", headers={"authorization": "Bearer alpha-key"},
                    json={"response_id": r.id, "score": 0.8})
    assert ok.status_code == 200 and ok.json()["stored"] is True
    other = httpx.post(smart_app.base + "/v1/feedback", headers={"authorization": "Bearer beta-key"},
                       json={"response_id": r.id, "score": 0.1})
    assert other.status_code == 404
    bad = httpx.post(smart_app.base + "/v1/feedback", headers={"authorization": "Bearer alpha-key"},
                     json={"response_id": r.id, "score": 3})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "score"


def test_overview_shows_models_replicas_cache_and_router(smart_app) -> None:
    ask(client(smart_app), f"What is a compiler? {uuid.uuid4().hex[:6]}")
    deadline = time.time() + 15  # the gateway's fleet view refreshes in the background
    while True:
        body = admin(smart_app, "GET", "/admin/v1/overview").json()
        if all(m["replicas"] for m in body["models"]) or time.time() > deadline:
            break
        time.sleep(0.3)
    assert [m["name"] for m in body["models"]] == ["tiny-a", "tiny-b"]
    assert all(len(m["replicas"]) == 1 for m in body["models"])
    assert body["models"][0]["replicas"][0]["kv_blocks_total"] > 0
    assert body["router"]["total_decisions"] >= 1
    assert body["cache"]["total"]["lookups"] >= 1


def test_scrape_endpoint_shows_live_metrics_from_every_component(smart_app) -> None:
    import ray
    from prometheus_client.parser import text_string_to_metric_families

    ask(client(smart_app), f"What is an operating system? {uuid.uuid4().hex[:6]}")
    port = ray._private.worker.global_worker.node.metrics_export_port
    want = {"ray_turnout_gateway_requests_total", "ray_turnout_router_decisions_total",
            "ray_turnout_cache_lookups_total", "ray_turnout_replica_kv_capacity_blocks"}
    deadline = time.time() + 60  # Ray's agent exports worker metrics about every 10 s
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in want and s.labels.get("tenant", "alpha") in ("alpha", ""):
                    values[s.name] = values.get(s.name, 0.0) + s.value
        if all(values.get(n, 0) > 0 for n in want) or time.time() > deadline:
            break
        time.sleep(2)
    assert {n: values.get(n, 0) > 0 for n in want} == dict.fromkeys(want, True), values


def test_tenant_rate_limit_answers_429_and_spares_other_tenants(smart_app) -> None:
    gamma = client(smart_app, "gamma-key")
    for i in range(2):  # gamma's budget: 2 requests per minute, counted in Redis
        ask(gamma, f"Count to {i}. {uuid.uuid4().hex[:6]}", max_tokens=4)
    r = httpx.post(smart_app.openai_base + "/chat/completions", headers={"authorization": "Bearer gamma-key"},
                   json={"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
                   timeout=60)
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert ask(client(smart_app, "alpha-key"), f"Say hi. {uuid.uuid4().hex[:6]}", max_tokens=4).status_code == 200
    # A tenant key never opens the admin API.
    stats = httpx.get(smart_app.base + "/admin/v1/cache/stats", headers={"authorization": "Bearer gamma-key"})
    assert stats.status_code == 401 and stats.json()["error"]["code"] == "invalid_admin_key"
