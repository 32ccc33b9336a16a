"""Helpers for live fleet tests: admin reads, waiting, streaming, killing replicas."""

from __future__ import annotations

import asyncio
import time

import httpx
from openai import AsyncOpenAI


def overview(app, admin: dict) -> dict:
    r = httpx.get(app.base + "/admin/v1/overview", headers=admin, timeout=30)
    r.raise_for_status()
    return r.json()


def replicas(app, admin: dict, model: int = 0) -> list[dict]:
    return overview(app, admin)["models"][model]["replicas"]


async def wait_for(cond, timeout: float = 60.0, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = await asyncio.to_thread(cond)
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError("condition not met in time")


def client(app, api_key: str = "unused") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=app.openai_base, api_key=api_key, max_retries=0, timeout=300)


async def stream_text(c: AsyncOpenAI, prompt: str, max_tokens: int, on_chunk=None,
                      model: str = "tiny", extra_body: dict | None = None) -> tuple[str, str, int]:
    """Greedy chat stream: (request id, text, completion tokens from the usage chunk)."""
    stream = await c.chat.completions.create(
        model=model, stream=True, max_tokens=max_tokens, temperature=0, extra_body=extra_body,
        stream_options={"include_usage": True}, messages=[{"role": "user", "content": prompt}])
    text, rid, tokens = "", "", 0
    async for ch in stream:
        rid = ch.id
        if ch.usage:
            tokens = ch.usage.completion_tokens
        for c_ in ch.choices:
            text += c_.delta.content or ""
        if on_chunk:
            await on_chunk(rid, text)
    return rid, text, tokens


def kill_replica(replica_id: str) -> None:
    """Kill a Serve replica's actor process (Serve's controller then starts a new one)."""
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith("SERVE_REPLICA") and actor["name"].endswith("#" + replica_id):
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
            return
    raise AssertionError(f"no actor for replica {replica_id}")
