"""The semantic cache against the real Redis: expiry, quotas, isolation, rebuild, replicas."""

from __future__ import annotations

import asyncio
import time

import pytest
from cache_helpers import REDIS, answer, keyed, make, near, prefix, spec, unit, wipe

from cache.config import CategoryPolicy

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def pfx():
    p = prefix()
    yield p
    await wipe(REDIS, p)


async def test_exact_and_semantic_hits_and_threshold(pfx):
    c = await make(spec(), pfx)
    v = unit(1)
    k, p = keyed("how do I reverse a list")
    assert await c.lookup("t1", "auto", "chat", v, k, p) is None
    assert await c.store("t1", "auto", "chat", v, k, answer("use reversed()"), p)
    hit = await c.lookup("t1", "auto", "chat", v, k, p)
    assert hit.tier == "exact" and hit.response["choices"][0]["message"]["content"] == "use reversed()"
    assert hit.response["turnout_cache"]["hit"] is True
    k2, p2 = keyed("reverse a list, how?")
    hit = await c.lookup("t1", "auto", "chat", near(v, 0.93), k2, p2)
    assert hit is not None and hit.tier == "semantic" and hit.similarity == pytest.approx(0.93, abs=1e-3)
    assert await c.lookup("t1", "auto", "chat", near(v, 0.85), k2, p2) is None  # below 0.9
    # code's threshold is 0.95: the same vector distance misses there
    await c.store("t1", "auto", "code", v, k, answer("code answer"), p)
    assert await c.lookup("t1", "auto", "code", near(v, 0.93), k2, p2) is None
    # numbers differ: the guard refuses a near-identical vector
    k3, p3 = keyed("how do I reverse a list 3 times")
    assert await c.lookup("t1", "auto", "chat", near(v, 0.99), k3, p3) is None
    s = c.stats("t1")
    assert s["tenants"]["t1"]["chat"]["hits_semantic"] == 1 and s["tenants"]["t1"]["chat"]["entries"] == 1
    await c.close()


async def test_not_cacheable_requests_bypass(pfx):
    c = await make(spec(), pfx)
    v = unit(2)
    k, p = keyed("hello", temperature=0.7)
    assert await c.store("t1", "auto", "chat", v, k, answer("hi"), p) is None
    k, p = keyed("hello", tools=[{"type": "function", "function": {"name": "f"}}])
    assert await c.store("t1", "auto", "chat", v, k, answer("hi"), p) is None
    assert c.stats()["total"]["entries"] == 0
    await c.close()


async def test_per_category_ttl_expiry(pfx):
    s = spec(chat=CategoryPolicy(threshold=0.9, ttl_s=0.6, max_ttl_factor=1.0),
             code=CategoryPolicy(threshold=0.95, ttl_s=60))
    c = await make(s, pfx)
    k1, p1 = keyed("short lived")
    k2, p2 = keyed("long lived")
    await c.store("t1", "auto", "chat", unit(3), k1, answer("a"), p1)
    await c.store("t1", "auto", "code", unit(4), k2, answer("b"), p2)
    await asyncio.sleep(0.9)
    assert await c.lookup("t1", "auto", "chat", unit(3), k1, p1) is None
    assert await c.lookup("t1", "auto", "code", unit(4), k2, p2) is not None
    c._sweep(time.time())
    assert c.stats()["tenants"]["t1"]["chat"]["entries"] == 0
    await c.close()


@pytest.mark.parametrize("eviction", ["lru", "lfu"])
async def test_quota_eviction(pfx, eviction):
    s = spec(chat=CategoryPolicy(threshold=0.9, quota=3, eviction=eviction))
    c = await make(s, pfx)
    keys = [keyed(f"question {w}") for w in ("alpha", "beta", "gamma", "delta")]
    for i, (k, p) in enumerate(keys[:3]):
        await c.store("t1", "auto", "chat", unit(10 + i), k, answer(str(i)), p)
    # use alpha (twice, for LFU) so beta becomes the victim under both rules
    for _ in range(2):
        assert await c.lookup("t1", "auto", "chat", unit(10), *keys[0]) is not None
    await c.lookup("t1", "auto", "chat", unit(12), *keys[2])
    await c.store("t1", "auto", "chat", unit(13), keys[3][0], answer("3"), keys[3][1])
    assert await c.lookup("t1", "auto", "chat", unit(11), *keys[1]) is None
    for i in (0, 2, 3):
        assert await c.lookup("t1", "auto", "chat", unit(10 + i), *keys[i]) is not None
    st = c.stats("t1")["tenants"]["t1"]["chat"]
    assert st["entries"] == 3 and st["evictions"] == 1
    await c.close()


async def test_a_hit_on_one_replica_protects_its_entry_from_eviction_on_another(pfx):
    """Touches leave the hit path in a batch: they still reach Redis without an insert on
    the replica that took the hit, and the next quota eviction anywhere honours them."""
    s = spec(chat=CategoryPolicy(threshold=0.9, quota=2, eviction="lru"))
    a, b = await make(s, pfx), await make(s, pfx)
    keys = [keyed(f"question {w}") for w in ("alpha", "beta", "gamma")]
    for i, (k, p) in enumerate(keys[:2]):
        await a.store("t1", "auto", "chat", unit(20 + i), k, answer(str(i)), p)
    await b.sync()
    assert await b.lookup("t1", "auto", "chat", unit(20), *keys[0]) is not None  # alpha is now the newest
    # b never inserts: its touch must arrive on its own before a's eviction reads the order
    for _ in range(50):
        await asyncio.sleep(0.02)
        if not b.docs._touches:
            break
    await a.store("t1", "auto", "chat", unit(22), keys[2][0], answer("2"), keys[2][1])
    await a.sync()
    assert await a.lookup("t1", "auto", "chat", unit(21), *keys[1]) is None  # beta was the LRU victim
    assert await a.lookup("t1", "auto", "chat", unit(20), *keys[0]) is not None
    await a.close()
    await b.close()


async def test_tenant_isolation_and_model_partition(pfx):
    c = await make(spec(), pfx)
    v = unit(5)
    k, p = keyed("what is up")
    await c.store("t1", "auto", "chat", v, k, answer("routed", model="m1"), p)
    assert await c.lookup("t2", "auto", "chat", v, k, p) is None
    assert await c.lookup("t1", "auto", "chat", v, k, p) is not None
    kn, pn = keyed("what is up", model="m1")
    assert await c.lookup("t1", "m1", "chat", v, kn, pn) is None  # named model: only its own answers
    await c.store("t1", "m1", "chat", v, kn, answer("named", model="m1"), pn)
    kn2, pn2 = keyed("what's up", model="m2")
    assert await c.lookup("t1", "m2", "chat", near(v, 0.97), kn2, pn2) is None
    hit = await c.lookup("t1", "m1", "chat", near(v, 0.97), keyed("what's up", model="m1")[0], pn)
    assert hit.response["choices"][0]["message"]["content"] == "named"
    await c.close()


async def test_restart_rebuilds_from_redis(pfx):
    c = await make(spec(), pfx)
    vs = [unit(20 + i) for i in range(5)]
    for i, v in enumerate(vs):
        await c.store("t1", "auto", "chat", v, keyed(f"q{i} text")[0], answer(f"a{i}"), keyed("x")[1])
    await c.close()
    c2 = await make(spec(), pfx)  # a new process: empty memory, same Redis
    for i, v in enumerate(vs):
        hit = await c2.lookup("t1", "auto", "chat", near(v, 0.96, seed=i), keyed(f"q{i} paraphrased")[0],
                              keyed("x")[1])
        assert hit is not None and hit.response["choices"][0]["message"]["content"] == f"a{i}"
    await c2.close()


async def test_invalidation_entry_category_tenant_all(pfx):
    a, b = await make(spec(), pfx), await make(spec(), pfx)
    ids = {}
    for t in ("t1", "t2"):
        for cat, seed in (("chat", 30), ("code", 31)):
            k, p = keyed(f"{t} {cat} question")
            ids[(t, cat)] = await a.store(t, "auto", cat, unit(seed), k, answer("x"), p)
    assert await a.invalidate(entry_id=ids[("t1", "chat")]) == 1
    assert await a.invalidate(category="code", tenant="t2") == 1
    await b.sync()
    for c in (a, b):
        e = {(t, cat): v["entries"] for t, d in c.stats()["tenants"].items() for cat, v in d.items()}
        assert e.get(("t1", "chat"), 0) == 0 and e[("t1", "code")] == 1
        assert e[("t2", "chat")] == 1 and e.get(("t2", "code"), 0) == 0
    assert await b.invalidate() == 2
    await a.sync()
    assert a.stats()["total"]["entries"] == 0 and b.stats()["total"]["entries"] == 0
    await a.close()
    await b.close()


async def test_two_replicas_insert_and_lookup_concurrently_and_agree(pfx):
    s = spec(chat=CategoryPolicy(threshold=0.9, quota=40))
    a, b = await make(s, pfx), await make(s, pfx)
    n = 60

    async def writer(c, start):
        for i in range(start, n, 2):
            k, p = keyed(f"question number {i}")
            await c.store("t1", "auto", "chat", unit(100 + i), k, answer(f"answer {i}"), p)
            await c.lookup("t1", "auto", "chat", unit(100 + i - 1), *keyed(f"question number {i - 1}"))

    await asyncio.gather(writer(a, 0), writer(b, 1))
    await a.sync()
    await b.sync()
    seen = []
    for c in (a, b):
        live = []
        for i in range(n):
            hit = await c.lookup("t1", "auto", "chat", near(unit(100 + i), 0.97), keyed(f"question no. {i}")[0],
                                 keyed("x")[1])
            live.append(hit.response["choices"][0]["message"]["content"] if hit else None)
        seen.append(live)
    assert seen[0] == seen[1]
    assert sum(x is not None for x in seen[0]) == 40  # the quota holds across replicas
    assert all(x in (None, f"answer {i}") for i, x in enumerate(seen[0]))
    await a.close()
    await b.close()
