"""Soak test on loopback: a mix of cache hits, streams, plain completions, a rate-capped
tenant and live migrations, at the rate the CPU sustains, counting every request's fate.

    python -m bench.load [--quick] [--json PATH] [--minutes M]

Three phases in one run against one deployed app (tiny model, KV migration and the
rescheduler on, semantic cache on Redis when one answers):
  1. baseline: the same mix one request at a time (latency with no contention);
  2. capacity: eight clients back to back (the throughput the CPU sustains);
  3. soak: Poisson arrivals at 80% of that throughput for the soak's length, with an
     admin migration of a running request every few seconds.
Every request ends as completed, failed (by cause) or hung (no end within its deadline).
Failures a limit asks for (429 from the capped tenant) are counted apart as expected.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bench.common import free_port, parser, pct, progress, start_serve, stop_serve, table, write_json

ADMIN = {"authorization": "Bearer load-admin"}
HUNG_AFTER_S = 180.0  # a request with no end by then is hung
QUESTIONS = ["What is the capital of Australia?", "How do volcanoes form?", "Who wrote Moby Dick?",
             "Why is the sky blue?", "What causes tides?", "Who painted the Mona Lisa?",
             "What is photosynthesis?", "How far is the Moon?"]
EXPECTED = {"rate_limited"}  # causes a configured limit asks for


def config(replicas: int, redis_url: str | None):
    from deploy.config import parse_config

    return parse_config({
        "models": [{"name": "tiny", "source": "tiny-llama", "replicas": replicas, "max_ongoing_requests": 64,
                    "engine_args": {"max_model_len": 2048, "block_size": 32, "dtype": "float32",
                                    "num_gpu_blocks_override": 256},
                    "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}}],
        "gateway": {"default_model": "tiny", "require_auth": True, "admin_keys": ["load-admin"],
                    "tenants": [{"name": "soak", "api_keys": ["soak-key"]},
                                {"name": "capped", "api_keys": ["capped-key"], "requests_per_minute": 20}],
                    "limits_redis_url": redis_url, "limits_key_prefix": f"turnout-load:{time.time()}:"},
        "cache": {"enabled": True, "redis_url": redis_url, "key_prefix": f"turnout-load:{time.time()}:"},
        "migration": {"enabled": True, "rescheduler_auto": True},
    })


def redis_url() -> str | None:
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping()
        return "redis://127.0.0.1:6379/0"
    except Exception:
        return None


@dataclass
class Tally:
    sent: int = 0
    completed: int = 0
    failed: Counter = field(default_factory=Counter)
    hung: int = 0
    latencies: list[float] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    cache_hits: int = 0

    def as_dict(self) -> dict:
        unexpected = sum(n for cause, n in self.failed.items() if cause not in EXPECTED)
        return {"sent": self.sent, "completed": self.completed, "failed": dict(self.failed),
                "unexpected_failures": unexpected, "hung": self.hung, "cache_hits": self.cache_hits,
                "p50_latency_s": pct(self.latencies, 50), "p99_latency_s": pct(self.latencies, 99),
                "kinds": dict(self.kinds)}


def pick(rng: random.Random) -> dict:
    """One request of the mix."""
    r = rng.random()
    if r < 0.3:  # a repeated question: a cache hit after its first time
        return {"kind": "cached", "path": "/chat/completions", "key": "soak-key", "body": {
            "model": "tiny", "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}]}}
    if r < 0.8:
        words = rng.randint(10, 300)
        return {"kind": "stream", "path": "/chat/completions", "key": "soak-key", "body": {
            "model": "tiny", "max_tokens": rng.randint(16, 200), "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"{rng.random():.6f} " + "replica cache " * words}]}}
    if r < 0.9:
        return {"kind": "completion", "path": "/completions", "key": "soak-key", "body": {
            "model": "tiny", "max_tokens": rng.randint(8, 64), "temperature": 0.7, "seed": rng.randint(0, 99),
            "prompt": f"{rng.random():.6f} the router chose"}}
    return {"kind": "capped", "path": "/chat/completions", "key": "capped-key", "body": {
        "model": "tiny", "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": f"{rng.random():.6f} hello"}]}}


def cause_of(status: int, body: bytes | dict) -> str:
    try:
        err = (json.loads(body) if isinstance(body, bytes) else body)["error"]
        return err.get("code") or err.get("type") or f"http_{status}"
    except Exception:
        return f"http_{status}"


async def one(client: httpx.AsyncClient, base: str, req: dict, tally: Tally) -> None:
    """Send one request and file its fate; returns when it ended or counted as hung."""
    tally.sent += 1
    tally.kinds[req["kind"]] += 1
    started = time.perf_counter()
    try:
        async with asyncio.timeout(HUNG_AFTER_S):
            outcome = await send(client, base, req, tally)
    except TimeoutError:
        tally.hung += 1
        return
    except httpx.HTTPError as e:
        tally.failed[f"client_{type(e).__name__}"] += 1
        return
    if outcome is None:
        tally.completed += 1
        tally.latencies.append(time.perf_counter() - started)
    else:
        tally.failed[outcome] += 1


async def send(client: httpx.AsyncClient, base: str, req: dict, tally: Tally) -> str | None:
    """None when the request completed correctly, else the cause of its failure."""
    headers = {"authorization": f"Bearer {req['key']}"}
    body = req["body"]
    if not body.get("stream"):
        r = await client.post(base + req["path"], json=body, headers=headers)
        if r.status_code != 200:
            return "rate_limited" if r.status_code == 429 else cause_of(r.status_code, r.content)
        data = r.json()
        if r.headers.get("x-turnout-cache", "").startswith("hit"):
            tally.cache_hits += 1
            return None
        ok = data["usage"]["completion_tokens"] >= 1 and data["choices"][0]["finish_reason"] in ("stop", "length")
        return None if ok else "bad_answer"
    async with client.stream("POST", base + req["path"], json=body, headers=headers) as r:
        if r.status_code != 200:
            return "rate_limited" if r.status_code == 429 else cause_of(r.status_code, await r.aread())
        finish, usage, done = None, None, False
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            event = json.loads(line[6:])
            if "error" in event:
                return "stream_" + cause_of(500, event)
            for ch in event.get("choices", []):
                finish = ch.get("finish_reason") or finish
            usage = event.get("usage") or usage
        if not done or usage is None:
            return "stream_truncated"
        # A stream whose replica died or moved must still deliver every token it promised.
        if finish == "length" and usage["completion_tokens"] != body["max_tokens"]:
            return "stream_tokens_lost"
        return None


async def closed_loop(base: str, clients: int, seconds: float, rng: random.Random) -> Tally:
    tally = Tally()
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=HUNG_AFTER_S + 10) as client:
        async def worker() -> None:
            while time.perf_counter() < deadline:
                await one(client, base, pick(rng), tally)
        await asyncio.gather(*(worker() for _ in range(clients)))
    return tally


async def migrate_now_and_then(app_base: str, stop: asyncio.Event, every_s: float) -> int:
    """Every few seconds, move one running request to another replica (admin API)."""
    done = 0
    async with httpx.AsyncClient(timeout=60) as client:
        while not stop.is_set():
            await asyncio.sleep(every_s)
            try:
                ov = (await client.get(app_base + "/admin/v1/overview", headers=ADMIN)).json()
                running = [q["request_id"] for r in ov["models"][0]["replicas"] for q in r["requests"]
                           if not q["waiting"] and not q["migrating"]]
                if running:
                    r = await client.post(app_base + "/admin/v1/migrations", headers=ADMIN,
                                          json={"request_id": running[0], "destination": "auto"})
                    done += r.status_code == 202 and r.json().get("stage") == "done"
            except (httpx.HTTPError, KeyError, ValueError):
                pass
    return done


async def soak(app_base: str, rate: float, seconds: float, rng: random.Random) -> tuple[Tally, int]:
    tally, tasks = Tally(), []
    stop = asyncio.Event()
    migrator = asyncio.create_task(migrate_now_and_then(app_base, stop, 3.0))
    t0 = time.perf_counter()
    next_report = t0 + 10
    async with httpx.AsyncClient(timeout=HUNG_AFTER_S + 10,
                                 limits=httpx.Limits(max_connections=500)) as client:
        while (now := time.perf_counter()) - t0 < seconds:
            tasks.append(asyncio.create_task(one(client, app_base + "/v1", pick(rng), tally)))
            if now > next_report:
                progress(f"soak {now - t0:.0f}/{seconds:.0f} s: sent {tally.sent}, completed "
                         f"{tally.completed}, failed {sum(tally.failed.values())}, hung {tally.hung}")
                next_report += 10
            await asyncio.sleep(rng.expovariate(rate))
        progress(f"soak: arrivals stopped; waiting for {sum(not t.done() for t in tasks)} in flight")
        await asyncio.gather(*tasks)
    stop.set()
    return tally, await migrator


def leftover_kv(app_base: str) -> int:
    ov = httpx.get(app_base + "/admin/v1/overview", headers=ADMIN, timeout=30).json()
    return sum(r["kv_blocks_used"] + r["running"] + r["waiting"] for r in ov["models"][0]["replicas"])


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, help="soak length (default 10; 40 s with --quick)")
    args = p.parse_args()
    if args.minutes is not None and args.minutes <= 0:
        raise SystemExit("bench.load: --minutes must be positive")
    from ray import serve

    from deploy.app import build_application
    from replicas.fleet import kill_registry

    soak_s = 60 * args.minutes if args.minutes else (40 if args.quick else 600)
    base_s, cap_s = (10, 15) if args.quick else (30, 45)
    rng = random.Random(7)
    port = free_port()
    start_serve(port)
    try:
        url = redis_url()
        progress(f"deploying 2 tiny replicas with migration and the cache (Redis: {url or 'none, in memory'})")
        serve.run(build_application(config(2, url)), name="load", route_prefix="/load")
        app_base = f"http://127.0.0.1:{port}/load"
        progress(f"baseline: one client for {base_s} s")
        baseline = asyncio.run(closed_loop(app_base + "/v1", 1, base_s, rng))
        progress(f"capacity: eight clients for {cap_s} s")
        capacity = asyncio.run(closed_loop(app_base + "/v1", 8, cap_s, rng))
        rate = 0.8 * capacity.completed / cap_s
        progress(f"soak: {rate:.2f} requests/s for {soak_s:.0f} s")
        tally, migrations = asyncio.run(soak(app_base, rate, soak_s, rng))
        time.sleep(2)
        leftover = leftover_kv(app_base)
        serve.delete("load")
        kill_registry("load")
    finally:
        stop_serve()
    out = {**tally.as_dict(), "rate_rps": rate, "soak_s": soak_s, "migrations": migrations,
           "leftover_kv_blocks_and_requests": leftover,
           "baseline": baseline.as_dict(), "capacity_rps": capacity.completed / cap_s,
           "p99_ratio_vs_baseline": tally.as_dict()["p99_latency_s"] / baseline.as_dict()["p99_latency_s"]}
    rows = [["baseline (1 client)", baseline.sent, baseline.completed, sum(baseline.failed.values()),
             baseline.hung, out["baseline"]["p50_latency_s"], out["baseline"]["p99_latency_s"]],
            [f"soak ({rate:.1f} req/s, {soak_s / 60:.0f} min)", tally.sent, tally.completed,
             sum(tally.failed.values()), tally.hung, out["p50_latency_s"], out["p99_latency_s"]]]
    print(table(["phase", "sent", "completed", "failed", "hung", "p50 s", "p99 s"], rows))
    print(f"failed by cause: {dict(tally.failed) or 'none'} (expected: {sorted(EXPECTED)}); "
          f"migrations done: {migrations}; cache hits: {tally.cache_hits}; "
          f"KV blocks/requests left after: {leftover}; p99 soak/baseline: {out['p99_ratio_vs_baseline']:.2f}x")
    write_json(args.json, out)


if __name__ == "__main__":
    main()
