"""Faults injected into real processes: replicas killed mid-stream and mid-migration,
Redis stopped and restarted under traffic, a model with every replica down, and an app
shut down with a stream in flight. Each request completes correctly or ends with a clear
error; nothing hangs; no KV blocks, reservations or cache entries are left behind.
"""

from __future__ import annotations

import asyncio
import tempfile

import httpx
import pytest
from openai import APIStatusError

from tests.conftest import TESTS, deploy_app, free_port
from tests.fleet_helpers import client, kill_replica, replicas, stream_text, wait_for
from tests.redis_server import start_redis

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]
ADMIN = {"authorization": "Bearer faults-admin"}
KEY = "faults-key"
PROMPT = "tell me about the gateway and the replica " * 8
# ~1,400 prompt tokens = 44 KV blocks: copied one block per engine step, a migration's
# pre-copy lasts long enough to kill one of its ends in the middle.
LONG_PROMPT = "replica cache router gateway " * 280


class RedisServer:
    """A redis-server of this module's own, to stop and start under traffic."""

    def __init__(self) -> None:
        self.port, self.proc = free_port(), None

    def start(self) -> None:
        self.proc = start_redis(self.port, tempfile.mkdtemp())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def faults(serve_port: int, redis_server: RedisServer):
    from ray import serve

    from replicas.fleet import kill_registry

    url = f"redis://127.0.0.1:{redis_server.port}/0"

    def mutate(cfg) -> None:
        cfg.gateway = cfg.gateway.model_validate({
            **cfg.gateway.model_dump(), "admin_keys": ["faults-admin"], "require_auth": True,
            "tenants": [{"name": "ops", "api_keys": [KEY], "requests_per_minute": 10_000}],
            "limits_redis_url": url, "limits_fail_open": True})
        cfg.cache = cfg.cache.model_validate({"enabled": True, "redis_url": url})
        cfg.migration = cfg.migration.model_validate({
            **cfg.migration.model_dump(), "stop_copy_blocks": 0, "max_blocks_per_step": 1,
            "max_precopy_s": 30.0, "lease_s": 3.0, "call_timeout_s": 1.0})

    app = deploy_app(TESTS / "fleet.yaml", "faults", serve_port, mutate)
    yield app
    if "faults" in serve.status().applications:
        serve.delete("faults")
    kill_registry("faults")


async def stream(app, prompt: str, max_tokens: int, hook=None) -> tuple[str, str, int]:
    """A greedy stream that always reaches an engine (the cache would answer a repeat)."""
    return await stream_text(client(app, KEY), prompt, max_tokens, hook, extra_body={"cache": False})


def running_on(app, request_id: str) -> dict | None:
    for r in replicas(app, ADMIN):
        if any(q["request_id"] == request_id for q in r["requests"]):
            return r
    return None


async def all_up(app, n: int = 3) -> None:
    await wait_for(lambda: len(replicas(app, ADMIN)) >= n, timeout=240, every=1.0)


def migration_status(app, replica_id: str) -> dict:
    from deploy.app import model_deployment_name

    h = app.handle(model_deployment_name("tiny"))
    return h.ext_call.remote("migration", "status", replica_id=replica_id).result(timeout_s=30)


async def assert_nothing_left(app, killed: str | None = None) -> None:
    """Idle fleet: no request, no KV block in use, no migration reservation anywhere.
    `killed`: a replica this test killed; its last report lingers a few seconds, and a
    status call pinned to it would wait for a replica that is gone."""
    def idle() -> bool:
        rs = replicas(app, ADMIN)
        return all(r["running"] + r["waiting"] == 0 and r["kv_blocks_used"] == 0
                   and r["replica_id"] != killed for r in rs)

    await wait_for(idle, timeout=30)
    for r in replicas(app, ADMIN):
        st = await asyncio.to_thread(migration_status, app, r["replica_id"])
        assert st["reserved_blocks"] == 0 and st["leases"] == 0, (r["replica_id"], st)


async def stream_and(app, prompt: str, max_tokens: int, when_running) -> tuple[str, str, int]:
    """Stream a greedy request; once it runs on a replica, call `when_running(replica)` once."""
    fired: dict = {}

    async def hook(rid: str, text: str) -> None:
        if not fired and len(text) > 40:
            fired["rid"] = rid
            where = await wait_for(lambda: running_on(app, rid), timeout=10, every=0.05)
            fired["replica"] = where
            await when_running(where)

    result = await stream(app, prompt, max_tokens, hook)
    assert fired, "the hook never ran"
    return result


async def test_a_replica_killed_mid_stream_is_resumed_elsewhere_with_identical_text(faults) -> None:
    _, reference, ref_tokens = await stream(faults, PROMPT, 400)

    killed: dict = {}

    async def kill(replica: dict) -> None:
        killed["id"] = replica["replica_id"]
        await asyncio.to_thread(kill_replica, replica["replica_id"])

    _, text, tokens = await stream_and(faults, PROMPT, 400, kill)
    # Greedy decoding continued from the delivered tokens: the same text, nothing lost or
    # repeated, and usage counts every token once.
    assert text == reference and tokens == ref_tokens == 400
    await assert_nothing_left(faults, killed["id"])


async def start_migration(app, request_id: str, destination: str) -> asyncio.Task:
    return asyncio.create_task(asyncio.to_thread(
        httpx.post, app.base + "/admin/v1/migrations", headers=ADMIN,
        json={"request_id": request_id, "destination": destination}, timeout=120))


async def test_killing_the_destination_mid_migration_leaves_the_request_at_its_source(faults) -> None:
    await all_up(faults)
    _, reference, _ = await stream(faults, LONG_PROMPT, 300)
    outcome: dict = {}

    async def migrate_then_kill_destination(source: dict) -> None:
        dest = next(r for r in replicas(faults, ADMIN) if r["replica_id"] != source["replica_id"])
        outcome["task"] = await start_migration(faults, source["requests"][0]["request_id"],
                                                dest["replica_id"])
        await wait_for(lambda: any(r["replica_id"] == source["replica_id"] and r["migration_stage"]
                                   for r in replicas(faults, ADMIN)), timeout=10, every=0.02)
        outcome["killed"] = dest["replica_id"]
        await asyncio.to_thread(kill_replica, dest["replica_id"])

    _, text, tokens = await stream_and(faults, LONG_PROMPT, 300, migrate_then_kill_destination)
    answer = (await outcome["task"]).json()
    assert text == reference and tokens == 300
    # The admin call reports the rollback (no hang), and the request stayed at its source.
    assert answer["stage"] == "rolled_back", answer
    await assert_nothing_left(faults, outcome["killed"])


async def test_killing_the_source_mid_migration_resumes_the_stream_and_frees_the_destination(
        faults) -> None:
    await all_up(faults)
    _, reference, _ = await stream(faults, LONG_PROMPT, 300)
    outcome: dict = {}

    async def migrate_then_kill_source(source: dict) -> None:
        dest = next(r for r in replicas(faults, ADMIN) if r["replica_id"] != source["replica_id"])
        outcome["dest"] = dest["replica_id"]
        outcome["task"] = await start_migration(faults, source["requests"][0]["request_id"],
                                                dest["replica_id"])
        await wait_for(lambda: migration_status(faults, dest["replica_id"])["leases"] > 0,
                       timeout=10, every=0.02)
        outcome["killed"] = source["replica_id"]
        await asyncio.to_thread(kill_replica, source["replica_id"])

    _, text, tokens = await stream_and(faults, LONG_PROMPT, 300, migrate_then_kill_source)
    await outcome["task"]
    assert text == reference and tokens == 300
    # The destination had reserved blocks for the request: its lease runs out and frees them.
    await wait_for(lambda: migration_status(faults, outcome["dest"])["reserved_blocks"] == 0, timeout=20)
    await assert_nothing_left(faults, outcome["killed"])


QUESTIONS = [  # distinct topics: no two are semantic neighbours
    "What is the capital of Australia?", "How do volcanoes form?", "Who wrote Moby Dick?",
    "Why is the sky blue?", "How many bones are in the human body?", "What causes tides?",
    "Who painted the Mona Lisa?", "How does a refrigerator work?", "What is photosynthesis?",
    "When did the Roman Empire fall?", "How far is the Moon from Earth?", "What is inflation?",
    "How do bees make honey?", "What language is spoken in Brazil?", "What is a black hole?",
    "How are diamonds formed?", "Who invented the telephone?", "What is the boiling point of water?",
]


def cache_stats(app) -> dict:
    return httpx.get(app.base + "/admin/v1/cache/stats", headers=ADMIN, timeout=30).json()


async def test_redis_stopped_and_restarted_under_traffic(faults, redis_server) -> None:
    c = client(faults, KEY)

    async def ask(i: int) -> tuple[str, str]:
        r = await c.chat.completions.with_raw_response.create(
            model="tiny", max_tokens=8, temperature=0,
            messages=[{"role": "user", "content": QUESTIONS[i]}])
        choice = r.parse().choices[0]
        assert choice.finish_reason in ("stop", "length")  # a whole answer (random weights: any text)
        return choice.message.content, r.headers["x-turnout-cache"]

    before = [await ask(i) for i in range(3)]
    assert all(tier == "miss" for _, tier in before)
    assert [await ask(i) for i in range(3)] == [(t, "hit-exact") for t, _ in before]
    assert cache_stats(faults)["total"]["entries"] == 3

    # Redis goes away with requests in flight: cache and limits fail open, all answer.
    traffic = [asyncio.create_task(ask(i)) for i in range(3, 13)]
    await asyncio.sleep(0.05)
    redis_server.stop()
    during = await asyncio.gather(*traffic, *[ask(i) for i in range(13, 18)])
    assert len(during) == 15 and all(tier == "miss" or tier.startswith("hit") for _, tier in during)
    await wait_for(lambda: not cache_stats(faults)["store"]["healthy"], timeout=30)
    assert all(tier == "miss" for _, tier in [await ask(i) for i in range(3)])

    # Back, empty (no persistence): the index drops what Redis lost (no orphan entries),
    # and the cache fills and answers again.
    redis_server.start()
    await wait_for(lambda: cache_stats(faults)["store"]["healthy"]
                   and cache_stats(faults)["total"]["entries"] == 0, timeout=60)
    assert (await ask(0))[1] == "miss"
    await wait_for(lambda: cache_stats(faults)["total"]["entries"] == 1, timeout=10)
    assert await ask(0) == (before[0][0], "hit-exact")


async def test_a_model_with_no_replica_up_answers_503_then_recovers(faults) -> None:
    await all_up(faults)
    for r in replicas(faults, ADMIN):
        await asyncio.to_thread(kill_replica, r["replica_id"])
    # Once their reports expire, the gateway knows: a fast 503 with Retry-After, no wait.
    await wait_for(lambda: not replicas(faults, ADMIN), timeout=30)
    with pytest.raises(APIStatusError) as e:
        await stream(faults, PROMPT, 20)
    assert e.value.status_code == 503 and e.value.response.headers["retry-after"]
    assert e.value.body["code"] == "model_unavailable"
    # Serve restarts the replicas; the model answers again.
    await all_up(faults, 1)
    _, text, tokens = await stream(faults, PROMPT, 20)
    assert text and tokens == 20


async def test_shutting_the_app_down_finishes_the_stream_in_flight(faults) -> None:
    from ray import serve

    async def shut_down(replica: dict) -> None:
        await asyncio.to_thread(serve.delete, "faults", False)

    _, text, tokens = await stream_and(faults, PROMPT, 300, shut_down)
    assert tokens == 300 and text
    # The app is gone for new requests.
    await wait_for(lambda: httpx.get(faults.base + "/healthz", timeout=10).status_code == 404, timeout=120)
