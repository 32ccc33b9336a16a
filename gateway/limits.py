"""Per-tenant rate limits: requests per minute, tokens per minute, concurrent streams.

With `gateway.limits_redis_url` the counters live in Redis, so every gateway replica
draws on one budget; without it each replica keeps its own counters in process.
Windows are fixed: the first request of a window starts a counter that expires after
`window_s` (INCR + PEXPIRE inside one Lua script, so replicas cannot race), and a
rejected request is told to come back when that counter expires (`Retry-After`).

Token accounting is an up-front estimate, charged when the request is admitted and
never refunded: ceil(body bytes / 4) for the prompt plus, per generated choice,
`max_tokens` (DEFAULT_COMPLETION_TOKENS when the request does not say). A request
whose estimate alone exceeds the whole budget is charged the whole budget, so it can
still run, alone, in a fresh window.

A stream holds a slot from admission until its last byte (or the client leaving).
In Redis a slot is a lease that expires after `stream_lease_s`, so a gateway replica
that dies cannot leak slots for longer than that.

When Redis does not answer, requests are admitted unlimited (fail open, the default)
or refused with 503 + Retry-After (fail closed); either way it is counted, and Redis
is tried again after RETRY_S, so limits come back on their own.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import Response, StreamingResponse

from gateway.config import GatewaySpec, TenantSpec
from gateway.errors import APIError
from replicas.telemetry import counter

logger = logging.getLogger("turnout.gateway")

DEFAULT_COMPLETION_TOKENS = 256
RETRY_S = 1.0
UNAVAILABLE = counter("turnout_gateway_limiter_unavailable",
                      "Requests admitted or refused while the rate-limit store was unreachable.",
                      ("tenant", "outcome"))

# Returns {code, wait_ms}: 0 admitted, 1 requests, 2 streams, 3 tokens over budget.
_ADMIT = """
local window, rlimit, tlimit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, slimit, lease = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[7])
local function used(k) return tonumber(redis.call('GET', k) or '0') end
local function wait(k)
  local p = redis.call('PTTL', k)
  if p < 0 then return window end
  return p
end
local function charge(k, n)
  redis.call('INCRBY', k, n)
  if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, window) end
end
local now = 0
if slimit > 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= slimit then return {2, 1000} end
end
if rlimit > 0 and used(KEYS[1]) + 1 > rlimit then return {1, wait(KEYS[1])} end
if tlimit > 0 and used(KEYS[2]) + tokens > tlimit then return {3, wait(KEYS[2])} end
if rlimit > 0 then charge(KEYS[1], 1) end
if tlimit > 0 then charge(KEYS[2], tokens) end
if slimit > 0 then
  redis.call('ZADD', KEYS[3], now + lease, ARGV[6])
  redis.call('PEXPIRE', KEYS[3], lease)
end
return {0, 0}
"""

_REASONS = {1: ("requests", "requests_per_minute"), 2: ("concurrent streams", "max_concurrent_streams"),
            3: ("tokens", "tokens_per_minute")}


def estimate_tokens(body_bytes: int, max_tokens: int | None, choices: int) -> int:
    """The up-front token charge of one request (see the module docstring)."""
    return math.ceil(body_bytes / 4) + choices * (max_tokens or DEFAULT_COMPLETION_TOKENS)


@dataclass
class Ticket:
    """An admitted request; `release` frees its stream slot (idempotent)."""

    limiter: Any = None
    tenant: str = ""
    stream_id: str | None = None
    released: bool = field(default=False)

    async def release(self) -> None:
        if self.released or self.stream_id is None or self.limiter is None:
            return
        self.released = True
        await self.limiter.release(self.tenant, self.stream_id)

    async def hold(self, response: Response) -> Response:
        """Keep the slot until a streamed body ends (or its client leaves); otherwise free it now."""
        if self.stream_id is None or not isinstance(response, StreamingResponse):
            await self.release()
            return response
        body = response.body_iterator

        async def guarded():
            try:
                async for chunk in body:
                    yield chunk
            finally:
                await self.release()

        response.body_iterator = guarded()
        return response


class LocalCounters:
    """In-process counters: one gateway replica's own budget."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._counts: dict[str, tuple[float, int]] = {}  # key -> (window end, used)
        self._streams: dict[str, set[str]] = {}

    def _used(self, key: str, now: float) -> tuple[float, int]:
        end, used = self._counts.get(key, (0.0, 0))
        return (end, used) if end > now else (now + self.window_s, 0)

    async def admit(self, keys: tuple[str, str, str], rpm: int, tpm: int, tokens: int,
                    streams: int, stream_id: str, lease_s: float) -> tuple[int, float]:
        now = time.monotonic()
        (rend, rused), (tend, tused) = self._used(keys[0], now), self._used(keys[1], now)
        slots = self._streams.setdefault(keys[2], set())
        if streams and len(slots) >= streams:
            return 2, 1.0
        if rpm and rused + 1 > rpm:
            return 1, rend - now
        if tpm and tused + tokens > tpm:
            return 3, tend - now
        self._counts[keys[0]], self._counts[keys[1]] = (rend, rused + 1), (tend, tused + tokens)
        if streams:
            slots.add(stream_id)
        return 0, 0.0

    async def release(self, key: str, stream_id: str) -> None:
        self._streams.get(key, set()).discard(stream_id)


class RedisCounters:
    """Counters in Redis, shared by every gateway replica that uses the same URL and prefix."""

    def __init__(self, url: str, window_s: float) -> None:
        import redis.asyncio as aioredis

        self.window_ms = int(window_s * 1000)
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        self.script = self.redis.register_script(_ADMIT)

    async def admit(self, keys: tuple[str, str, str], rpm: int, tpm: int, tokens: int,
                    streams: int, stream_id: str, lease_s: float) -> tuple[int, float]:
        code, wait_ms = await self.script(keys=list(keys), args=[
            self.window_ms, rpm, tpm, tokens, streams, stream_id, int(lease_s * 1000)])
        return int(code), int(wait_ms) / 1000

    async def release(self, key: str, stream_id: str) -> None:
        await self.redis.zrem(key, stream_id)

    async def close(self) -> None:
        await self.redis.aclose()


class RateLimiter:
    """Admits or refuses a tenant's request; one per gateway replica."""

    def __init__(self, spec: GatewaySpec, window_s: float = 60.0) -> None:
        self.prefix = spec.limits_key_prefix
        self.fail_open = spec.limits_fail_open
        self.lease_s = spec.limits_stream_lease_s
        self.store: LocalCounters | RedisCounters = (
            RedisCounters(spec.limits_redis_url, window_s) if spec.limits_redis_url
            else LocalCounters(window_s))
        self._down_until = 0.0
        self.unavailable = {"allowed": 0, "refused": 0}  # this replica's outage count

    def _keys(self, tenant: str) -> tuple[str, str, str]:
        p = f"{self.prefix}{tenant}:"
        return p + "rpm", p + "tpm", p + "streams"

    async def admit(self, tenant: TenantSpec, tokens: int, stream: bool) -> Ticket:
        rpm, tpm = tenant.requests_per_minute or 0, tenant.tokens_per_minute or 0
        streams = (tenant.max_concurrent_streams or 0) if stream else 0
        if not (rpm or tpm or streams):
            return Ticket()
        stream_id = uuid.uuid4().hex if streams else None
        try:
            code, wait_s = await self._admit(tenant.name, rpm, tpm, min(tokens, tpm) if tpm else tokens,
                                             streams, stream_id or "")
        except Exception as e:  # noqa: BLE001 - any store failure is an outage, handled as configured
            return self._unavailable(tenant.name, e)
        if code == 0:
            return Ticket(self, tenant.name, stream_id)
        what, knob = _REASONS[code]
        raise APIError(429, f"Rate limit reached for tenant '{tenant.name}': too many {what} "
                            f"(limit {getattr(tenant, knob)}). Retry after the time in Retry-After.",
                       None, "rate_limit_exceeded", {"Retry-After": str(max(1, math.ceil(wait_s)))})

    async def _admit(self, tenant: str, rpm: int, tpm: int, tokens: int, streams: int,
                     stream_id: str) -> tuple[int, float]:
        if time.monotonic() < self._down_until:
            raise ConnectionError("rate-limit store marked down")
        try:
            return await self.store.admit(self._keys(tenant), rpm, tpm, tokens, streams, stream_id,
                                          self.lease_s)
        except Exception:
            self._down_until = time.monotonic() + RETRY_S
            raise

    def _unavailable(self, tenant: str, error: Exception) -> Ticket:
        outcome = "allowed" if self.fail_open else "refused"
        UNAVAILABLE.inc(tenant=tenant, outcome=outcome)
        self.unavailable[outcome] += 1
        logger.warning("rate-limit store unavailable (%s): request %s", type(error).__name__, outcome)
        if self.fail_open:
            return Ticket()
        raise APIError(503, "Rate limits cannot be checked right now; please retry shortly.",
                       None, "rate_limiter_unavailable", {"Retry-After": str(math.ceil(RETRY_S))})

    async def close(self) -> None:
        if isinstance(self.store, RedisCounters):
            await self.store.close()

    async def release(self, tenant: str, stream_id: str) -> None:
        try:
            await self.store.release(self._keys(tenant)[2], stream_id)
        except Exception as e:  # noqa: BLE001 - the lease expires the slot anyway
            logger.warning("stream slot release failed (%s); it expires with its lease", type(e).__name__)
