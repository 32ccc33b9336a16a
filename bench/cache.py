"""Cache lookup latency: in-memory HNSW + Redis document fetch vs a brute-force scan.

    python -m bench.cache [--quick] [--json PATH]

Per entry count (10k, 100k, 1M; --quick stops at 100k) one index of synthetic
clustered unit vectors (one tenant-category, the worst case) is searched with
paraphrase-like queries (cosine PARAPHRASE_COS to an entry: the band the
per-category thresholds hit in); each lookup = search + fetching the hit's document from
the real Redis (one HGET, its score bump batched for later: the live code path). Redis holds
2,000 documents; a hash lookup costs the same at any key count. Baselines in the
same run: a numpy brute-force scan (+ the same fetch); a vector search inside
Redis needs RediSearch / Redis 8 vector sets, which the running Redis lacks: reported
as not available. "incl. embed" adds embedding the query text (all-MiniLM-L6-v2,
1 thread) in the same timed loop.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import numpy as np
import redis

from bench import common
from cache.embedder import DIM, shared_embedder
from cache.index import EntryMeta, VectorIndex
from cache.redis_store import RedisStore

REDIS = "redis://127.0.0.1:6379/0"
DOCS = 2000
PARAPHRASE_COS = 0.9  # a query's cosine to the entry it paraphrases


def clustered(n: int, seed: int = 0, clusters: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, DIM)).astype(np.float32)
    x = centers[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def paraphrases(x: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at cosine `cos` to each row of x, in a random direction."""
    noise = rng.standard_normal(x.shape).astype(np.float32)
    noise -= (noise * x).sum(1, keepdims=True) * x  # orthogonal to x
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (cos * x + np.sqrt(1 - cos * cos) * noise).astype(np.float32)  # np.sqrt gave a float64 scalar


def meta(i: int) -> EntryMeta:
    return EntryMeta(i, "bench", "chat", "auto", "m", f"x{i}", "ctx", "", time.time(), time.time() + 3600)


def pct(xs: list[float]) -> tuple[float, float]:
    """(p50, p99) of one sample."""
    return common.pct(xs, 50), common.pct(xs, 99)


async def redis_vector_search_available(store: RedisStore) -> bool:
    try:
        mods = await store._r.execute_command("MODULE", "LIST")
    except Exception:
        return False
    return any(b"search" in str(m).encode().lower() for m in mods)


def gateway_hit_path(quick: bool, ingress: str) -> dict:
    """Hit latency through the real gateway (Ray Serve, one tiny model, Redis documents):
    exact and semantic hits as the client sees them and as the gateway spends them
    (Server-Timing), against a miss answered by the model and the embedding alone.
    Runs in a process of its own per ingress: Serve reads the ingress flag at import."""
    import httpx

    from bench.common import free_port, start_serve, stop_serve
    from deploy.config import parse_config

    n = 60 if quick else 300
    prefix = f"turnout-bench-hit-{uuid.uuid4().hex[:8]}:"
    cfg = parse_config({
        "models": [{"name": "tiny", "source": "tiny-llama",
                    "engine_args": {"max_model_len": 2048, "block_size": 32, "dtype": "float32"},
                    "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}}],
        "cache": {"enabled": True, "redis_url": REDIS, "key_prefix": prefix}})
    port = free_port()
    print(f"[bench.cache] gateway hit path ({ingress} ingress): starting Ray Serve and the tiny model",
          file=sys.stderr)
    start_serve(port, ingress)
    from ray import serve

    from deploy.app import build_application
    from replicas.fleet import kill_registry

    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    def post(c: httpx.Client, text: str) -> tuple[float, dict[str, float], str]:
        body = {"model": "tiny", "max_tokens": 16, "temperature": 0,
                "messages": [{"role": "user", "content": text}]}
        t = time.perf_counter()
        r = c.post(url, json=body)
        wall = (time.perf_counter() - t) * 1e3
        r.raise_for_status()
        # Server-Timing: "gateway;dur=.., exact;dur=.., embed;dur=.., lookup;dur=.." on hits.
        steps = {}
        for part in filter(None, r.headers.get("server-timing", "").split(",")):
            name, _, dur = part.strip().partition(";dur=")
            steps[name] = float(dur)
        return wall, steps, r.headers.get("x-turnout-cache", "")

    res: dict[str, list[tuple[float, dict[str, float]]]] = {"miss": [], "hit-exact": [], "hit-semantic": []}
    try:
        serve.run(build_application(cfg), name="bench-hit", route_prefix="/")
        with httpx.Client(timeout=120) as c:
            for i in range(n):
                base = f"How do I sort a list of {i} numbers in Python?"
                wall, steps, tier = post(c, base)  # a miss: the model answers, the cache stores
                res["miss"].append((wall, steps))
                for text in (base, f"How can I sort a list of {i} numbers in Python?"):
                    wall, steps, tier = post(c, text)
                    if tier in res:
                        res[tier].append((wall, steps))
    finally:
        kill_registry("bench-hit")  # before Ray stops: afterwards it would start a new one
        stop_serve()
        r = redis.Redis.from_url(REDIS)
        for k in r.scan_iter(prefix + "*"):
            r.delete(k)
    out = {}
    for tier, rows in res.items():
        walls = [w for w, _ in rows]
        out[tier] = {"count": len(rows), "p50_ms": round(pct(walls)[0], 3), "p99_ms": round(pct(walls)[1], 3)}
        for step in ("gateway", "read", "admit", "exact", "embed", "lookup"):
            vals = [st[step] for _, st in rows if step in st]
            if vals:
                out[tier][f"{step}_p50_ms"] = round(pct(vals)[0], 3)
    return out


async def measure(n: int, store: RedisStore, queries: int, texts: list[str], emb) -> dict:
    t0 = time.perf_counter()
    x = clustered(n)
    index = VectorIndex(m=16, ef_construction=100, ef_search=64, capacity=n)
    index.add_many(x, [meta(i) for i in range(n)])
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    picks = rng.integers(0, n, queries)
    q = paraphrases(x[picks], PARAPHRASE_COS, rng)

    async def fetch(i: int) -> None:
        assert await store.fetch(meta(i % DOCS + 1), False) is not None

    # One design at a time: interleaving a 100 ms brute-force scan between HNSW lookups
    # would bill each HNSW fetch for the touch batch that came due during the scan.
    hnsw, brute, search, scan, found = [], [], [], [], []
    for j in range(queries):
        t = time.perf_counter()
        (m, _), *_ = index.search(q[j], 8)
        search.append((time.perf_counter() - t) * 1e3)
        await fetch(m.id)
        hnsw.append((time.perf_counter() - t) * 1e3)
        found.append(m.id)
    agree = 0
    for j in range(queries):
        t = time.perf_counter()
        best = int(np.argmax(x @ q[j]))
        scan.append((time.perf_counter() - t) * 1e3)
        await fetch(best)
        brute.append((time.perf_counter() - t) * 1e3)
        agree += int(found[j] == best)
    incl = []
    for j in range(min(queries, 100)):
        t = time.perf_counter()
        v = emb.embed_one(texts[j % len(texts)])
        (m, _), *_ = index.search(v, 8)
        await fetch(m.id)
        incl.append((time.perf_counter() - t) * 1e3)
    h50, h99 = pct(hnsw)
    b50, b99 = pct(brute)
    i50, i99 = pct(incl)
    del index, x
    return {"entries": n, "build_s": round(build_s, 1), "hnsw_p50_ms": round(h50, 3), "hnsw_p99_ms": round(h99, 3),
            "brute_p50_ms": round(b50, 3), "brute_p99_ms": round(b99, 3),
            "hnsw_incl_embed_p50_ms": round(i50, 3), "hnsw_incl_embed_p99_ms": round(i99, 3),
            "hnsw_search_only_p50_ms": round(pct(search)[0], 3), "hnsw_search_only_p99_ms": round(pct(search)[1], 3),
            "brute_scan_only_p50_ms": round(pct(scan)[0], 3),
            "recall_at_1_vs_brute": round(agree / queries, 3), "query_cos": PARAPHRASE_COS, "redis_vector_search": "not available"}


async def run(quick: bool) -> dict:
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    prefix = f"turnout-bench:{uuid.uuid4().hex[:8]}"
    store = RedisStore(REDIS, prefix, timeout_s=2.0)
    emb = shared_embedder()
    texts = [f"How do I do task number {i} in Python?" for i in range(100)]
    emb.embed_one("warm up")
    embed_ms = []
    for t in texts:
        s = time.perf_counter()
        emb.embed_one(t)
        embed_ms.append((time.perf_counter() - s) * 1e3)
    vec = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    resp = {"object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "x" * 400}, "finish_reason": "stop"}]}
    for i in range(1, DOCS + 1):
        await store.insert(meta(i), vec, resp, quota=10 * DOCS, lfu=False)
    searchable = await redis_vector_search_available(store)
    out = {"embed_p50_ms": round(pct(embed_ms)[0], 3), "embed_p99_ms": round(pct(embed_ms)[1], 3),
           "redis_vector_search_available": searchable, "entries": {}}
    try:
        for n in sizes:
            print(f"[bench.cache] {n} entries: building the index ...", file=sys.stderr)
            out["entries"][str(n)] = await measure(n, store, 300 if n < 1_000_000 else 200, texts, emb)
    finally:
        keys = [k async for k in store._r.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await store._r.delete(*keys[i:i + 500])
        await store.close()
    out["gateway_hit_path"] = {}
    for ingress in ("haproxy", "proxy"):
        out["gateway_hit_path"][ingress] = await asyncio.to_thread(
            common.in_own_process, gateway_hit_path, quick, ingress)
    return out


def print_table(res: dict) -> None:
    print(f"embedding (1 query, 1 thread): p50 {res['embed_p50_ms']:.2f} ms, p99 {res['embed_p99_ms']:.2f} ms")
    print("vector search inside Redis: " + ("available" if res["redis_vector_search_available"]
                                             else "not available (Redis without a search module)"))
    hdr = f"{'entries':>9} {'HNSW+fetch p50/p99 ms':>22} {'brute+fetch p50/p99 ms':>23} {'ratio p50':>9} " \
          f"{'incl. embed p50/p99':>20} {'search-only p50':>15} {'recall@1':>8} {'build s':>7}"
    print(hdr)
    for n, r in res["entries"].items():
        print(f"{int(n):>9} {r['hnsw_p50_ms']:>10.3f} / {r['hnsw_p99_ms']:<9.3f} {r['brute_p50_ms']:>10.3f} / "
              f"{r['brute_p99_ms']:<10.3f} {r['brute_p50_ms'] / r['hnsw_p50_ms']:>8.1f}x "
              f"{r['hnsw_incl_embed_p50_ms']:>8.2f} / {r['hnsw_incl_embed_p99_ms']:<9.2f} "
              f"{r['hnsw_search_only_p50_ms']:>15.3f} {r['recall_at_1_vs_brute']:>8.3f} {r['build_s']:>7.1f}")
    for ingress, hit in (res.get("gateway_hit_path") or {}).items():
        via = "Serve's HAProxy ingress" if ingress == "haproxy" else "Serve's Python proxy"
        print(f"through the gateway, HTTP via {via} ('gateway' = Server-Timing inside it):")
        for tier, r in hit.items():
            steps = "  ".join(f"{k.removesuffix('_p50_ms')} {v:.2f}" for k, v in r.items()
                              if k.endswith("_p50_ms") and k != "p50_ms")
            print(f"  {tier:<13} n={r['count']:<4} p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                  f"inside the gateway, p50 ms: {steps or '-'}")
        sem = hit.get("hit-semantic", {})
        if "gateway_p50_ms" in sem and "embed_p50_ms" in sem:
            print(f"  semantic hit inside the gateway = embedding + "
                  f"{sem['gateway_p50_ms'] - sem['embed_p50_ms']:.2f} ms (target: + 3 ms)")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cache")
    ap.add_argument("--quick", action="store_true", help="stop at 100k entries (< 3 minutes)")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    res = asyncio.run(run(args.quick))
    common.write_json(args.json_path, res)  # first: the numbers survive a printing bug
    print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
