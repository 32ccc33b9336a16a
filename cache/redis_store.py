"""Redis document store, shared by every gateway replica.

Keys under one prefix P:
  P:doc:ID        hash: metadata, vector (float32 bytes), response JSON; expires itself
  P:x:TENANT:HASH exact-tier key -> ID (same expiry)
  P:lru:T:C       zset ID -> recency (LRU) or hits (LFU): the quota's eviction order
  P:exp:T:C       zset ID -> hard expiry time, to forget expired IDs
  P:parts         set of "T:C" partitions, for rebuild and invalidation
  P:stream        events (add / del / inval) each replica tails; P:seq numbers them,
                  so a replica that sees a gap (trimmed stream, Redis restarted
                  empty) rebuilds from the documents instead of drifting.
Writes that must stay consistent (insert + quota eviction + event) run as one Lua
script. A hit's recency (LRU) or hit count (LFU) is not written on the hit path: touches
collect in memory and go out in one pipeline TOUCH_DELAY_S later, and always before the
next insert, whose quota eviction reads them (a hit costs one HGET round trip). Any
Redis error marks the store unhealthy: callers get a miss or a dropped store at once
(fail open) until `ping()` succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cache.index import EntryMeta
from cache.store import Event

_INSERT = """
local id, now, ttl, exp_at = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local quota, lfu, prefix, maxlen = tonumber(ARGV[5]), ARGV[6] == '1', ARGV[7], ARGV[8]
local fields = {}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('SADD', KEYS[7], ARGV[9])
for _, d in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('ZREM', KEYS[2], d); redis.call('ZREM', KEYS[3], d); redis.call('DEL', prefix .. ':doc:' .. d)
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[4], id, 'PX', ttl)
local score = now
if lfu then score = now / 1e10 end
redis.call('ZADD', KEYS[2], score, id)
redis.call('ZADD', KEYS[3], exp_at, id)
local ev = {'op', 'add', 'seq', redis.call('INCR', KEYS[6])}
for i = 1, #fields, 2 do
  if fields[i] ~= 'r' then ev[#ev + 1] = fields[i]; ev[#ev + 1] = fields[i + 1] end
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*', unpack(ev))
local victims = {}
local over = redis.call('ZCARD', KEYS[2]) - quota
if over > 0 then
  for _, v in ipairs(redis.call('ZRANGE', KEYS[2], 0, over)) do
    if #victims < over and v ~= id then victims[#victims + 1] = v end
  end
  for _, v in ipairs(victims) do
    local dk = prefix .. ':doc:' .. v
    local xk = redis.call('HGET', dk, 'xk')
    if xk and redis.call('GET', xk) == v then redis.call('DEL', xk) end
    redis.call('DEL', dk); redis.call('ZREM', KEYS[2], v); redis.call('ZREM', KEYS[3], v)
  end
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*', 'op', 'del',
             'seq', redis.call('INCR', KEYS[6]), 'ids', table.concat(victims, ','))
end
return victims
"""

_DELETE = """
local prefix, maxlen, id = ARGV[1], ARGV[2], ARGV[3]
local dk = prefix .. ':doc:' .. id
local f = redis.call('HMGET', dk, 't', 'c', 'xk')
if not f[1] then return 0 end
if f[3] and redis.call('GET', f[3]) == id then redis.call('DEL', f[3]) end
redis.call('DEL', dk)
redis.call('ZREM', prefix .. ':lru:' .. f[1] .. ':' .. f[2], id)
redis.call('ZREM', prefix .. ':exp:' .. f[1] .. ':' .. f[2], id)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'op', 'del', 'seq', redis.call('INCR', KEYS[2]), 'ids', id)
return 1
"""

_INVALIDATE = """
local prefix, maxlen, tenant, category = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n = 0
for _, part in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local sep = string.find(part, ':', 1, true)
  local t, c = string.sub(part, 1, sep - 1), string.sub(part, sep + 1)
  if (tenant == '' or tenant == t) and (category == '' or category == c) then
    local lru = prefix .. ':lru:' .. part
    for _, v in ipairs(redis.call('ZRANGE', lru, 0, -1)) do
      local dk = prefix .. ':doc:' .. v
      local xk = redis.call('HGET', dk, 'xk')
      if xk then redis.call('DEL', xk) end
      n = n + redis.call('DEL', dk)
    end
    redis.call('DEL', lru, prefix .. ':exp:' .. part)
    redis.call('SREM', KEYS[3], part)
  end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'op', 'inval', 'seq', redis.call('INCR', KEYS[2]),
           't', tenant, 'c', category)
return n
"""

_SNAPSHOT = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
return {id, redis.call('GET', KEYS[2]) or '0'}
"""

TOUCH_DELAY_S = 0.02

_META_FIELDS = ("id", "t", "c", "m", "sm", "x", "ctx", "sig", "ca", "ea")


def _meta_fields(meta: EntryMeta) -> dict[str, str]:
    return {"id": str(meta.id), "t": meta.tenant, "c": meta.category, "m": meta.model,
            "sm": meta.served_model, "x": meta.xkey, "ctx": meta.ctx, "sig": meta.sig,
            "ca": repr(meta.created), "ea": repr(meta.expires_at)}


def _meta_from(h: dict[bytes, bytes]) -> EntryMeta:
    g = {k.decode(): v for k, v in h.items()}
    s = {k: g[k].decode() for k in _META_FIELDS}
    return EntryMeta(id=int(s["id"]), tenant=s["t"], category=s["c"], model=s["m"], served_model=s["sm"],
                     xkey=s["x"], ctx=s["ctx"], sig=s["sig"], created=float(s["ca"]),
                     expires_at=float(s["ea"]))


def _vector(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.float32).copy()


class RedisStore:
    shared = True

    def __init__(self, url: str, prefix: str, timeout_s: float = 0.25, stream_maxlen: int = 100_000) -> None:
        self.p = prefix
        self.maxlen = str(stream_maxlen)
        self.healthy = True
        self.failures = 0
        opts = {"socket_connect_timeout": timeout_s, "retry_on_timeout": False}
        self._r = aioredis.Redis.from_url(url, socket_timeout=timeout_s, **opts)
        # The tailer blocks in XREAD, so it gets its own client with a longer timeout.
        self._tail = aioredis.Redis.from_url(url, socket_timeout=timeout_s + 2.0, **opts)
        self._insert = self._r.register_script(_INSERT)
        self._delete = self._r.register_script(_DELETE)
        self._inval = self._r.register_script(_INVALIDATE)
        self._snap = self._r.register_script(_SNAPSHOT)
        self._cursor = "0-0"
        # (eviction zset, lfu) -> entry id -> latest time (LRU) or hits since the last flush (LFU)
        self._touches: dict[tuple[str, bool], dict[str, float]] = {}
        self._flusher: asyncio.Task | None = None

    def _fail(self) -> None:
        self.failures += 1
        self.healthy = False

    def _part(self, tenant: str, category: str) -> str:
        return f"{tenant}:{category}"

    async def next_id(self) -> int | None:
        if not self.healthy:
            return None
        try:
            return int(await self._r.incr(f"{self.p}:ids"))
        except (RedisError, OSError):
            self._fail()
            return None

    async def insert(self, meta: EntryMeta, vector: np.ndarray, response: dict, quota: int,
                     lfu: bool) -> list[int] | None:
        if not self.healthy:
            return None
        await self.flush_touches()  # the quota eviction below must see recent hits
        now = time.time()
        part = self._part(meta.tenant, meta.category)
        xk = f"{self.p}:x:{meta.tenant}:{meta.xkey}"
        fields = _meta_fields(meta) | {"xk": xk, "v": vector.astype(np.float32).tobytes(),
                                       "r": json.dumps(response)}
        flat = [x for kv in fields.items() for x in kv]
        ttl_ms = max(int((meta.expires_at - now) * 1000), 1)
        keys = [f"{self.p}:doc:{meta.id}", f"{self.p}:lru:{part}", f"{self.p}:exp:{part}", xk,
                f"{self.p}:stream", f"{self.p}:seq", f"{self.p}:parts"]
        args = [meta.id, repr(now), ttl_ms, repr(meta.expires_at), quota, int(lfu), self.p, self.maxlen, part]
        try:
            victims = await self._insert(keys=keys, args=args + flat)
        except (RedisError, OSError):
            self._fail()
            return None
        return [int(v) for v in victims]

    async def fetch(self, meta: EntryMeta, lfu: bool) -> dict | None:
        """The response of a hit; its eviction score is touched in the next batch."""
        if not self.healthy:
            return None
        try:
            raw = await self._r.hget(f"{self.p}:doc:{meta.id}", "r")
        except (RedisError, OSError):
            self._fail()
            return None
        if raw is None:
            return None
        self._touch(meta, lfu)
        return json.loads(raw)

    def _touch(self, meta: EntryMeta, lfu: bool) -> None:
        ids = self._touches.setdefault((f"{self.p}:lru:{self._part(meta.tenant, meta.category)}", lfu), {})
        key = str(meta.id)
        ids[key] = ids.get(key, 0) + 1 if lfu else time.time()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(TOUCH_DELAY_S)
        await self.flush_touches()

    async def flush_touches(self) -> None:
        """Write the collected touches: ZADD XX, so an entry evicted meanwhile stays gone."""
        pending, self._touches = self._touches, {}
        if not pending or not self.healthy:
            return
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for (key, lfu), ids in pending.items():
                    if lfu:
                        for i, hits in ids.items():
                            pipe.zadd(key, {i: hits}, xx=True, incr=True)
                    else:
                        pipe.zadd(key, ids, xx=True)
                await pipe.execute()
        except (RedisError, OSError):
            self._fail()

    async def delete(self, entry_id: int) -> bool:
        try:
            keys = [f"{self.p}:stream", f"{self.p}:seq"]
            return bool(await self._delete(keys=keys, args=[self.p, self.maxlen, entry_id]))
        except (RedisError, OSError):
            self._fail()
            return False

    async def invalidate(self, tenant: str, category: str) -> int:
        try:
            keys = [f"{self.p}:stream", f"{self.p}:seq", f"{self.p}:parts"]
            return int(await self._inval(keys=keys, args=[self.p, self.maxlen, tenant, category]))
        except (RedisError, OSError):
            self._fail()
            return 0

    async def snapshot(self) -> int:
        """Start tailing from now; returns the event sequence number to continue from."""
        cursor, seq = await self._snap(keys=[f"{self.p}:stream", f"{self.p}:seq"])
        self._cursor = cursor.decode()
        return int(seq)

    async def load_all(self) -> list[tuple[EntryMeta, np.ndarray]]:
        """Every live entry (for a rebuild); forgets ids whose documents expired."""
        out: list[tuple[EntryMeta, np.ndarray]] = []
        for part in await self._r.smembers(f"{self.p}:parts"):
            lru = f"{self.p}:lru:{part.decode()}"
            ids = await self._r.zrange(lru, 0, -1)
            for start in range(0, len(ids), 500):
                batch = ids[start:start + 500]
                async with self._r.pipeline(transaction=False) as pipe:
                    for i in batch:
                        pipe.hmget(f"{self.p}:doc:{i.decode()}", [*_META_FIELDS, "v"])
                    rows = await pipe.execute()
                gone = []
                for i, row in zip(batch, rows, strict=True):
                    if row[0] is None:
                        gone.append(i)
                        continue
                    h = dict(zip([f.encode() for f in _META_FIELDS], row[:-1], strict=True))
                    out.append((_meta_from(h), _vector(row[-1])))
                if gone:
                    await self._r.zrem(lru, *gone)
        return out

    async def poll(self, block_ms: int) -> list[Event] | None:
        """Events after the cursor (waiting up to block_ms; 0 = don't wait); None on error."""
        if not self.healthy:
            return None
        try:
            client = self._tail if block_ms else self._r
            res = await client.xread({f"{self.p}:stream": self._cursor}, count=1000,
                                     block=block_ms or None)
        except (RedisError, OSError):
            self._fail()
            return None
        events = []
        for _, entries in res or []:
            for sid, fields in entries:
                self._cursor = _later(self._cursor, sid.decode())
                events.append(_event(fields))
        return events

    async def ping(self) -> bool:
        try:
            await self._r.ping()
        except (RedisError, OSError):
            self.failures += 1
            return False
        self.healthy = True
        return True

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.flush_touches()
        for c in (self._r, self._tail):
            with contextlib.suppress(RedisError, OSError):
                await c.aclose()


def _later(a: str, b: str) -> str:
    # The blocking tailer and an explicit sync read concurrently: keep the furthest cursor.
    def key(s: str) -> tuple[int, int]:
        ms, _, n = s.partition("-")
        return int(ms), int(n or 0)

    return b if key(b) > key(a) else a


def _event(fields: dict[bytes, bytes]) -> Event:
    op = fields[b"op"].decode()
    seq = int(fields[b"seq"])
    if op == "add":
        return Event(op, seq, meta=_meta_from(fields), vector=_vector(fields[b"v"]))
    if op == "del":
        raw = fields[b"ids"].decode()
        return Event(op, seq, ids=[int(i) for i in raw.split(",") if i])
    return Event(op, seq, tenant=fields[b"t"].decode(), category=fields[b"c"].decode())
