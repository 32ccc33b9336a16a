"""What the Turnout gateway adds over Ray Serve's own HTTP floor.

(a) a direct handle call to the model deployment, (b) HTTP through a bare Ray Serve
ingress that only forwards to the same deployment (same hops as the gateway), and
(c) HTTP through the Turnout gateway; the model answers at once (max_tokens=1 on the
tiny model). Then requests/s through the gateway at 1, 8 and 32 concurrent clients.

    python -m bench.gateway_overhead [--quick] [--json PATH]
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from ray import serve

from bench.common import parser, pct, progress, start_serve, stop_serve, table, write_json

BODY = {"model": "tiny-a", "max_tokens": 1, "temperature": 0,
        "messages": [{"role": "user", "content": "hello"}]}


def bare_ingress_app(handle):
    """Ray Serve's floor: an ingress that forwards the same payload and returns the items."""
    api = FastAPI()

    @serve.deployment(name="bare", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
    @serve.ingress(api)
    class Bare:
        def __init__(self, model) -> None:
            self.model = model

        @api.post("/forward")
        async def forward(self, request: Request) -> dict:
            body = await request.json()
            payload = {"request_id": uuid.uuid4().hex, "messages": body["messages"],
                       "sampling": {"max_tokens": body["max_tokens"], "temperature": 0}}
            items = [i async for i in self.model.options(stream=True).generate.remote(payload)]
            return {"items": items}

    return Bare.bind(handle)


async def direct_call(handle) -> float:
    payload = {"request_id": uuid.uuid4().hex, "messages": BODY["messages"],
               "sampling": {"max_tokens": 1, "temperature": 0}}
    t = time.perf_counter()
    async for _ in handle.options(stream=True).generate.remote(payload):
        pass
    return time.perf_counter() - t


async def http_call(client: httpx.AsyncClient, url: str) -> float:
    t = time.perf_counter()
    r = await client.post(url, json=BODY)
    r.raise_for_status()
    return time.perf_counter() - t


async def latencies(handle, gw_url: str, bare_url: str, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"handle": [], "serve_http": [], "turnout": []}
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(10):  # warm every path
            await direct_call(handle)
            await http_call(client, bare_url)
            await http_call(client, gw_url)
        for i in range(n):  # interleaved, so drift hits every path alike
            out["handle"].append(await direct_call(handle))
            out["serve_http"].append(await http_call(client, bare_url))
            out["turnout"].append(await http_call(client, gw_url))
            if (i + 1) % 100 == 0:
                progress(f"latency round {i + 1}/{n}")
    return out


async def throughput(url: str, concurrency: int, seconds: float) -> float:
    done = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await http_call(client, url)
                done += 1
        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - t)


def main() -> None:
    args = parser(__doc__.split("\n")[0]).parse_args()
    from bench.common import free_port
    from deploy.app import build_application, model_deployment_name
    from deploy.config import load_config

    n = 150 if args.quick else 600
    seconds = 6 if args.quick else 20
    port = free_port()
    progress("starting Ray Serve and the tiny model (about a minute)")
    start_serve(port)
    try:
        cfg = load_config(Path(__file__).parent.parent / "tests" / "tiny.yaml")
        cfg.models = cfg.models[:1]
        serve.run(build_application(cfg), name="turnout", route_prefix="/")
        handle = serve.get_deployment_handle(model_deployment_name("tiny-a"), app_name="turnout")
        serve.run(bare_ingress_app(handle), name="bare", route_prefix="/bare")
        base = f"http://127.0.0.1:{port}"
        lat = asyncio.run(latencies(handle, f"{base}/v1/chat/completions", f"{base}/bare/forward", n))
        rps = {}
        for c in (1, 8, 32):
            progress(f"throughput at {c} concurrent clients")
            rps[str(c)] = asyncio.run(throughput(f"{base}/v1/chat/completions", c, seconds))
    finally:
        stop_serve()
    p = {k: (pct(v, 50) * 1e3, pct(v, 99) * 1e3) for k, v in lat.items()}
    result = {
        "requests_per_path": n,
        "handle_p50_ms": p["handle"][0], "handle_p99_ms": p["handle"][1],
        "serve_http_p50_ms": p["serve_http"][0], "serve_http_p99_ms": p["serve_http"][1],
        "turnout_p50_ms": p["turnout"][0], "turnout_p99_ms": p["turnout"][1],
        "added_p50_ms": p["turnout"][0] - p["serve_http"][0],
        "added_p99_ms": p["turnout"][1] - p["serve_http"][1],
        "floor_p50_ms": p["serve_http"][0] - p["handle"][0],
        "floor_p99_ms": p["serve_http"][1] - p["handle"][1],
        "rps": rps,
    }
    rows = [
        ["(a) handle call", p["handle"][0], p["handle"][1], "-"],
        ["(b) Ray Serve HTTP floor", p["serve_http"][0], p["serve_http"][1],
         f"{p['serve_http'][0] / p['handle'][0]:.2f}x of (a)"],
        ["(c) Turnout gateway", p["turnout"][0], p["turnout"][1],
         f"{p['turnout'][0] / p['serve_http'][0]:.2f}x of (b)"],
    ]
    print(table(["path (max_tokens=1, tiny model)", "p50 ms", "p99 ms", "p50 ratio"], rows))
    print()
    print(table(["added by Turnout over (b)", "p50 ms", "p99 ms"],
                [["gateway - serve floor", result["added_p50_ms"], result["added_p99_ms"]]]))
    print()
    print(table(["concurrent clients", "requests/s through the gateway"],
                [[c, v] for c, v in rps.items()]))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
