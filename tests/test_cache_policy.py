"""Pure parts of the cache: adaptive policy, cacheability, keys, guard, SSE replay, memory store."""

from __future__ import annotations

import pytest
from cache_helpers import answer, keyed, make, spec, unit

from cache.config import AdaptiveSpec, CacheabilityRules, CategoryPolicy
from cache.guard import signature
from cache.keys import context_hash, exact_hash, query_text, request_key
from cache.policy import cacheable, category_load, effective, load_from_stats, next_level
from cache.responses import hit_response, sse_chunks
from replicas.stats import ReplicaStats


def test_adaptive_level_has_hysteresis_and_bounds():
    s = AdaptiveSpec(overload_at=0.85, restore_below=0.6, saturate_at=1.0)
    assert next_level(0.0, 0.8, s) == 0.0  # below overload: unchanged
    lvl = next_level(0.0, 0.9, s)
    assert 0 < lvl < 1
    assert next_level(lvl, 0.7, s) > 0  # still loosened between the two marks
    assert next_level(lvl, 0.55, s) == 0.0  # restored
    assert next_level(0.0, 3.0, s) == 1.0  # never beyond the bound
    p = CategoryPolicy(threshold=0.9, ttl_s=100, min_threshold=0.85, max_ttl_factor=3)
    assert effective(p, 1.0).threshold == pytest.approx(0.85) and effective(p, 1.0).ttl_s == 300
    assert effective(p, 0.0).threshold == 0.9 and effective(p, 0.0).ttl_s == 100


async def test_cache_adapt_moves_and_restores_threshold_and_hits_follow():
    c = await make(spec(None), "unused")
    v = unit(1)
    from cache_helpers import near

    k, p = keyed("how are you")
    await c.store("t1", "auto", "chat", v, k, answer("fine", model="small"), p)
    q = (near(v, 0.88), *keyed("how are you doing"))
    assert await c.lookup("t1", "auto", "chat", *q) is None  # 0.88 < 0.9
    pol = c.adapt({"small": 1.0, "big": 0.1})  # the model answering chat is saturated
    assert pol["chat"].threshold == pytest.approx(0.86) and pol["chat"].ttl_s == 7200
    assert await c.lookup("t1", "auto", "chat", *q) is not None
    c.adapt({"small": 0.7, "big": 0.1})  # hysteresis: still loosened
    assert c.policy("chat").threshold < 0.9
    pol = c.adapt({"small": 0.2, "big": 0.1})
    assert pol["chat"].threshold == 0.9 and pol["chat"].ttl_s == 3600
    assert await c.lookup("t1", "auto", "chat", *q) is None
    await c.close()


def test_category_load_weights_models_that_answered():
    assert category_load({"a": 3, "b": 1}, {"a": 1.0, "b": 0.0}) == 0.75
    assert category_load({}, {"a": 0.2, "b": 0.9}) == 0.9
    stats = [ReplicaStats("r1", "a", kv_blocks_used=50, kv_blocks_total=100, waiting_blocks_needed=30),
             ReplicaStats("r2", "a", kv_blocks_used=10, kv_blocks_total=100)]
    assert load_from_stats(stats) == {"a": pytest.approx(0.45)}


def test_cacheability_rules():
    pol, rules = CategoryPolicy(), CacheabilityRules()
    assert cacheable({"temperature": 0}, pol, rules)[0]
    assert not cacheable({}, pol, rules)[0]  # default temperature is 1
    assert not cacheable({"temperature": 0, "tools": [{}]}, pol, rules)[0]
    assert not cacheable({"temperature": 0, "n": 2}, pol, rules)[0]
    assert not cacheable({"temperature": 0, "cache": False}, pol, rules)[0]
    assert not cacheable({"temperature": 0}, CategoryPolicy(cacheable=False), rules)[0]
    assert not cacheable({"temperature": 0}, pol, rules, messages=20)[0]


def test_keys_normalize_and_separate_context():
    a = request_key({"model": "auto", "messages": [{"role": "user", "content": " Hi   there "}], "temperature": 0})
    b = request_key({"model": "auto", "messages": [{"role": "user", "content": "Hi there"}], "temperature": 0})
    assert exact_hash(a) == exact_hash(b) and query_text(a) == "Hi there"
    sys_a = request_key({"messages": [{"role": "system", "content": "be terse"},
                                      {"role": "user", "content": "Hi"}]})
    sys_b = request_key({"messages": [{"role": "system", "content": "be verbose"},
                                      {"role": "user", "content": "Hello"}]})
    assert context_hash(sys_a) != context_hash(sys_b)
    assert context_hash(request_key({"messages": [{"role": "user", "content": "x"}]})) == \
        context_hash(request_key({"messages": [{"role": "user", "content": "y"}]}))


def test_guard_signature():
    assert signature("What is 17 times 23?") != signature("What is 18 times 23?")
    assert signature("second highest salary") != signature("third highest salary")
    assert signature("rain tomorrow in London") != signature("rain in London")
    assert signature("Multiply 17 by 23") == signature("17 times 23, please")


def test_sse_replay_chunks_rebuild_the_message():
    resp = hit_response(answer("The capital of France is Paris, a city on the Seine."), "semantic", 0.93, 7,
                        "knowledge", 1.5)
    chunks = sse_chunks(resp, chunk_chars=10, include_usage=True)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0]["turnout_cache"]["tier"] == "semantic"
    assert all(ch["object"] == "chat.completion.chunk" and ch["id"] == resp["id"] for ch in chunks)
    text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    assert text == "The capital of France is Paris, a city on the Seine."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["total_tokens"] == 8
    assert len(chunks) > 4
    comp = hit_response({"id": "c", "object": "text_completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "text": "abc def", "finish_reason": "length"}]},
                        "exact", 1.0, 1, "chat", 0)
    tc = sse_chunks(comp)
    assert "".join(ch["choices"][0]["text"] for ch in tc) == "abc def"
    assert tc[-1]["choices"][0]["finish_reason"] == "length"


async def test_memory_store_default_works_without_redis():
    c = await make(spec(None), "unused")
    assert c.stats()["store"]["kind"] == "memory"
    k, p = keyed("q")
    eid = await c.store("t1", "auto", "chat", unit(3), k, answer("a"), p)
    assert (await c.lookup("t1", "auto", "chat", unit(3), k, p)).entry_id == eid
    assert await c.lookup_exact("t1", k, p) is not None
    assert await c.invalidate(tenant="t1") == 1
    assert await c.lookup("t1", "auto", "chat", unit(3), k, p) is None
    await c.close()
