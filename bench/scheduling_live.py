"""Live half of bench/scheduling.py: three replicas of the tiny model on CPU, Ray Serve's
default router (power of two choices) against freeness dispatch plus the rescheduler,
replaying a burst cut from the Azure conversation trace at overload, in one run.

KV memory is made the constraint (160 blocks of 32 tokens per replica), since that is
what freeness measures; lengths are scaled down so a CPU replays the burst in minutes.
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources

import numpy as np
from openai import AsyncOpenAI

from bench.common import free_port, pct, progress, start_serve, stop_serve

ARMS = {"power_of_two": {"request_router": "power_of_two", "migration": False},
        "freeness_migration": {"request_router": "freeness", "migration": True}}


def burst(n: int, seed: int = 0) -> list[tuple[float, int, int]]:
    """(arrival s, prompt words, output tokens) for n requests cut from the trace."""
    from migration.sim.trace import load_trace

    with resources.as_file(resources.files("migration").joinpath("data/AzureLLMInferenceTrace_conv.csv")) as p:
        trace = load_trace(p)
    start = np.random.default_rng(seed).integers(0, len(trace) - n)
    sl = slice(start, start + n)
    arrivals = (trace.arrival_s[sl] - trace.arrival_s[start]) / 20.0  # 20x faster: overload
    prompts = np.clip(trace.prompt[sl] // 8, 16, 400)
    outputs = np.clip(trace.output[sl] // 2, 16, 300)
    return [(float(a), int(p), int(o)) for a, p, o in zip(arrivals, prompts, outputs, strict=True)]


def config(arm: dict, replicas: int):
    from deploy.config import parse_config

    return parse_config({
        "models": [{"name": "tiny", "source": "tiny-llama", "replicas": replicas,
                    "request_router": arm["request_router"], "max_ongoing_requests": 64,
                    "engine_args": {"max_model_len": 2048, "block_size": 32, "dtype": "float32",
                                    "num_gpu_blocks_override": 160},
                    "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}}],
        "gateway": {"default_model": "tiny"},
        "migration": {"enabled": arm["migration"]},
    })


async def replay(base: str, requests: list[tuple[float, int, int]]) -> list[float]:
    async with AsyncOpenAI(base_url=base, api_key="unused", max_retries=0, timeout=600) as client:
        return await _replay(client, requests)


async def _replay(client: AsyncOpenAI, requests: list[tuple[float, int, int]]) -> list[float]:
    t0 = time.perf_counter()

    async def one(at: float, words: int, out: int) -> float:
        await asyncio.sleep(max(0.0, at - (time.perf_counter() - t0)))
        sent = time.perf_counter()
        stream = await client.chat.completions.create(
            model="tiny", stream=True, max_tokens=out, temperature=0,
            messages=[{"role": "user", "content": "replica cache router " * (words // 3)}])
        ttft = None
        async for ch in stream:
            if ttft is None and ch.choices and ch.choices[0].delta.content:
                ttft = time.perf_counter() - sent
        return ttft if ttft is not None else float("nan")

    return await asyncio.gather(*(one(*r) for r in requests))


def run_live(quick: bool) -> dict:
    from ray import serve

    from deploy.app import build_application
    from replicas.fleet import kill_registry

    replicas, n = (2, 24) if quick else (3, 80)
    requests = burst(n)
    port = free_port()
    start_serve(port)
    out: dict = {}
    try:
        for name, arm in ARMS.items():
            progress(f"live: deploying {replicas} replicas with {name} (engines start ~1 min each)")
            serve.run(build_application(config(arm, replicas)), name=name, route_prefix=f"/{name}")
            progress(f"live: replaying {n} requests")
            ttfts = asyncio.run(replay(f"http://127.0.0.1:{port}/{name}/v1", requests))
            ok = [t for t in ttfts if t == t]
            out[name] = {"p50_ttft_s": pct(ok, 50), "p99_ttft_s": pct(ok, 99),
                         "completed": len(ok), "sent": n, "replicas": replicas}
            serve.delete(name)
            kill_registry(name)
    finally:
        stop_serve()
    return out
