"""Per-tenant rate limits against the real Redis: shared budgets, windows, outages."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid

import pytest
import redis
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.config import GatewaySpec, TenantSpec
from gateway.errors import APIError
from gateway.limits import DEFAULT_COMPLETION_TOKENS, RETRY_S, RateLimiter, estimate_tokens
from tests.conftest import free_port
from tests.redis_server import start_redis

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix():
    p = f"turnout-test-limits:{uuid.uuid4().hex[:8]}:"
    yield p
    r = redis.Redis.from_url(REDIS)
    for k in r.scan_iter(p + "*"):
        r.delete(k)
    r.close()


def tenant(name: str = "t", **limits) -> TenantSpec:
    return TenantSpec(name=name, **limits)


def limiter(prefix: str | None, window_s: float = 60.0, **spec) -> RateLimiter:
    url = REDIS if prefix else None
    return RateLimiter(GatewaySpec(limits_redis_url=url, limits_key_prefix=prefix or "x:", **spec),
                       window_s=window_s)


async def refused(lim: RateLimiter, t: TenantSpec, tokens: int = 1, stream: bool = False) -> APIError:
    with pytest.raises(APIError) as e:
        await lim.admit(t, tokens, stream)
    return e.value


def assert_rate_limited(e: APIError) -> None:
    assert e.status == 429
    assert e.body()["error"]["code"] == "rate_limit_exceeded"
    assert e.body()["error"]["type"] == "rate_limit_error"
    assert int(e.headers["Retry-After"]) >= 1


def test_token_estimate_counts_prompt_bytes_and_every_choice() -> None:
    assert estimate_tokens(400, 10, 2) == 100 + 20
    assert estimate_tokens(1, None, 1) == 1 + DEFAULT_COMPLETION_TOKENS


async def test_in_process_requests_per_minute() -> None:
    lim, t = limiter(None), tenant(requests_per_minute=2)
    await lim.admit(t, 1, False)
    await lim.admit(t, 1, False)
    e = await refused(lim, t)
    assert_rate_limited(e)
    assert "requests" in e.message and 50 <= int(e.headers["Retry-After"]) <= 60
    await lim.admit(tenant("other", requests_per_minute=2), 1, False)  # its own budget
    await lim.admit(tenant("free"), 10**6, True)  # no limits: never refused


async def test_two_replicas_share_one_request_budget(prefix: str) -> None:
    a, b = limiter(prefix), limiter(prefix)
    t = tenant(requests_per_minute=3)
    try:
        await a.admit(t, 1, False)
        await b.admit(t, 1, False)
        await a.admit(t, 1, False)
        assert_rate_limited(await refused(b, t))
        assert_rate_limited(await refused(a, t))
        await b.admit(tenant("other", requests_per_minute=3), 1, False)
    finally:
        await a.close()
        await b.close()


async def test_two_replicas_share_one_token_budget(prefix: str) -> None:
    a, b = limiter(prefix), limiter(prefix)
    t = tenant(tokens_per_minute=1000)
    try:
        await a.admit(t, 400, False)
        await b.admit(t, 400, False)
        e = await refused(a, t, 400)
        assert_rate_limited(e)
        assert "tokens" in e.message
        await b.admit(t, 200, False)  # what is left still fits
        # A request larger than the whole budget is charged the budget, not refused forever.
        big = tenant("big", tokens_per_minute=100)
        await a.admit(big, 10_000, False)
        assert_rate_limited(await refused(b, big, 1))
    finally:
        await a.close()
        await b.close()


async def test_window_resets(prefix: str) -> None:
    lim, t = limiter(prefix, window_s=1.0), tenant(requests_per_minute=1)
    try:
        await lim.admit(t, 1, False)
        e = await refused(lim, t)
        assert e.headers["Retry-After"] == "1"
        await asyncio.sleep(1.2)
        await lim.admit(t, 1, False)
    finally:
        await lim.close()


async def test_concurrent_streams_are_shared_and_freed_when_the_stream_ends(prefix: str) -> None:
    a, b = limiter(prefix), limiter(prefix)
    t = tenant(max_concurrent_streams=1)
    try:
        first = await a.admit(t, 1, True)
        e = await refused(b, t, stream=True)
        assert_rate_limited(e)
        assert "concurrent streams" in e.message
        await b.admit(t, 1, False)  # non-streaming requests hold no slot

        async def body():
            yield b"data: x\n\n"

        held = await first.hold(StreamingResponse(body()))
        assert_rate_limited(await refused(b, t, stream=True))  # still streaming
        assert [c async for c in held.body_iterator] == [b"data: x\n\n"]
        second = await b.admit(t, 1, True)  # the slot came back when the body ended
        await second.hold(JSONResponse({}))  # a cached, non-streamed answer frees it at once
        await (await a.admit(t, 1, True)).release()
    finally:
        await a.close()
        await b.close()


async def test_stream_slot_of_a_dead_replica_expires_with_its_lease(prefix: str) -> None:
    dead = limiter(prefix, limits_stream_lease_s=0.3)
    live = limiter(prefix, limits_stream_lease_s=0.3)
    t = tenant(max_concurrent_streams=1)
    try:
        await dead.admit(t, 1, True)  # never released
        assert_rate_limited(await refused(live, t, stream=True))
        await asyncio.sleep(0.5)
        await live.admit(t, 1, True)
    finally:
        await dead.close()
        await live.close()


async def test_redis_down_fails_open_by_default() -> None:
    lim = RateLimiter(GatewaySpec(limits_redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    t = tenant(requests_per_minute=1)
    try:
        for _ in range(3):
            await lim.admit(t, 1, False)
        assert lim.unavailable == {"allowed": 3, "refused": 0}
    finally:
        await lim.close()


async def test_redis_down_fails_closed_when_configured() -> None:
    lim = RateLimiter(GatewaySpec(limits_redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                  limits_fail_open=False))
    try:
        e = await refused(lim, tenant(requests_per_minute=5))
        assert e.status == 503 and e.headers["Retry-After"] == "1"
        assert e.body()["error"]["code"] == "rate_limiter_unavailable"
        assert lim.unavailable == {"allowed": 0, "refused": 1}
        await lim.admit(tenant("free"), 1, False)  # tenants without limits never touch Redis
    finally:
        await lim.close()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
async def test_limits_come_back_when_redis_returns() -> None:
    port = free_port()
    server = start_redis(port, tempfile.mkdtemp())
    lim = RateLimiter(GatewaySpec(limits_redis_url=f"redis://127.0.0.1:{port}/0", limits_fail_open=False))
    t = tenant(requests_per_minute=2)
    try:
        await lim.admit(t, 1, False)
        server.terminate()
        server.wait(10)
        assert (await refused(lim, t)).status == 503
        server = start_redis(port, tempfile.mkdtemp())  # restarted empty: a fresh budget
        await asyncio.sleep(RETRY_S + 0.1)
        await lim.admit(t, 1, False)
        await lim.admit(t, 1, False)
        assert_rate_limited(await refused(lim, t))
        assert lim.unavailable["refused"] >= 1
    finally:
        await lim.close()
        server.terminate()
        server.wait(10)
