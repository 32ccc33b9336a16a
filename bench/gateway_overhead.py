"""What the Turnout gateway adds over Ray Serve's own HTTP floor.

(a) a direct handle call to the model deployment, (b) HTTP through a bare Ray Serve
ingress that only forwards to the same deployment (same hops as the gateway), and
(c) HTTP through the Turnout gateway; the model answers at once (max_tokens=1 on the
tiny model). Then requests/s through the gateway at 1, 8 and 32 concurrent clients.
All of it once per ingress (deploy/ingress.py): Serve's HAProxy ingress, the default,
and Serve's Python proxy, each in a Ray of its own.

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

from bench.common import in_own_process, parser, pct, progress, start_serve, stop_serve, table, write_json

INGRESSES = ("haproxy", "proxy")  # deploy/ingress.py; the default first
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


def measure(quick: bool, ingress: str) -> dict:
    """One Ray + Serve with the given ingress (a process of its own: Serve reads the flag
    at import); latencies of the three paths and the gateway's throughput."""
    from bench.common import free_port
    from deploy.app import build_application, model_deployment_name
    from deploy.config import load_config

    n = 100 if quick else 600
    seconds = 4 if quick else 20
    port = free_port()
    progress(f"{ingress} ingress: starting Ray Serve and the tiny model (about a minute)")
    start_serve(port, ingress)
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
            progress(f"{ingress} ingress: throughput at {c} concurrent clients")
            rps[str(c)] = asyncio.run(throughput(f"{base}/v1/chat/completions", c, seconds))
    finally:
        stop_serve()
    p = {k: (pct(v, 50) * 1e3, pct(v, 99) * 1e3) for k, v in lat.items()}
    return {
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


def main() -> None:
    args = parser(__doc__.split("\n")[0]).parse_args()
    result: dict = {}
    for ingress in INGRESSES:
        result[ingress] = in_own_process(measure, args.quick, ingress)
    write_json(args.json, result)  # first: the numbers survive a printing bug
    rows = []
    for ingress, r in result.items():
        rows += [
            [f"{ingress}: (a) handle call", r["handle_p50_ms"], r["handle_p99_ms"], "-"],
            [f"{ingress}: (b) Ray Serve HTTP floor", r["serve_http_p50_ms"], r["serve_http_p99_ms"],
             f"{r['serve_http_p50_ms'] / r['handle_p50_ms']:.2f}x of (a)"],
            [f"{ingress}: (c) Turnout gateway", r["turnout_p50_ms"], r["turnout_p99_ms"],
             f"{r['turnout_p50_ms'] / r['serve_http_p50_ms']:.2f}x of (b)"],
        ]
    print(table(["path (max_tokens=1, tiny model)", "p50 ms", "p99 ms", "p50 ratio"], rows))
    print()
    print(table(["added by Turnout over (b)", "p50 ms", "p99 ms"],
                [[f"{i}: gateway - serve floor", r["added_p50_ms"], r["added_p99_ms"]]
                 for i, r in result.items()]))
    print()
    print(table(["concurrent clients"] + [f"{i}: requests/s" for i in result],
                [[c] + [r["rps"][c] for r in result.values()] for c in result[INGRESSES[0]]["rps"]]))
    h, p = result["haproxy"], result["proxy"]
    print(f"\nthe gateway's p50 through HAProxy is {p['turnout_p50_ms'] / h['turnout_p50_ms']:.2f}x "
          f"faster than through Serve's Python proxy")


if __name__ == "__main__":
    main()
