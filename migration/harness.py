"""Two engines and their agents in one process, and a client that follows handoffs.

Plays the parts the replica and the gateway play in production (tests and the
benchmark use it): a replica-shaped stream that ends with the handoff marker, and a
client that follows the marker to the next replica and records every token with its
arrival time.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

from migration.agent import MigrationAgent
from migration.protocol import kv_transfer_config


def engine_args(max_model_len: int = 2048, block_size: int = 32) -> dict:
    # CPU attention needs block sizes that are multiples of 32. Prefix caching stays on
    # (vLLM's default): a destination may hold part of a migrated prompt already.
    return {"block_size": block_size, "max_model_len": max_model_len, "dtype": "float32",
            "enforce_eager": True, "kv_transfer_config": kv_transfer_config()}


async def start_hosts(n: int, max_model_len: int = 2048, kv_space_gib: int = 1,
                      prefix_caching: bool = True) -> list[Any]:
    from replicas import packs
    from replicas.engine import EngineHost

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_space_gib))
    path = str(packs.resolve("tiny-llama"))
    hosts = []
    for i in range(n):  # one at a time: two engines starting at once thrash 2 cores
        args = {**engine_args(max_model_len), "enable_prefix_caching": prefix_caching}
        host = EngineHost("tiny", path, args, replica_id=f"r{i}", cpu_threads=1)
        await host.start()
        hosts.append(host)
    return hosts


@dataclass
class ClientRun:
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    times: list[float] = field(default_factory=list)  # arrival time of each token
    engine_times: list[float] = field(default_factory=list)  # engine-core emit time (monotonic)
    replicas: list[str] = field(default_factory=list)  # replicas the stream came from
    handoffs: list[dict] = field(default_factory=list)
    finish_reason: str | None = None

    def longest_gap(self, start: int = 0) -> float:
        t = self.times[start:]
        return max((b - a for a, b in zip(t, t[1:], strict=False)), default=0.0)


async def replica_stream(agent: MigrationAgent, request_id: str, prompt: list[int], sampling: Any):
    """What a replica's generate does: the engine stream, then the handoff marker."""
    async for chunk in agent.host.generate(request_id, prompt, sampling,
                                           tracked={"sampling": sampling}):
        if chunk.finish_reason == "abort":
            chunk.handoff = await agent.handoff(request_id)
        yield chunk


async def client(agents: dict[str, MigrationAgent], replica_id: str, request_id: str,
                 prompt: list[int], sampling: Any, run: ClientRun | None = None) -> ClientRun:
    """What the gateway does: stream, and on a handoff marker follow the request."""
    run = run or ClientRun()
    stream = replica_stream(agents[replica_id], request_id, prompt, sampling)
    while stream is not None:
        run.replicas.append(replica_id)
        nxt = None
        async for chunk in stream:
            now = time.perf_counter()
            run.token_ids += chunk.token_ids
            run.times += [now] * len(chunk.token_ids)
            run.engine_times += [chunk.engine_time] * len(chunk.token_ids)
            run.text += chunk.text
            if chunk.handoff:
                run.handoffs.append(chunk.handoff)
                if chunk.handoff["delivered"] + (_delivered_before(run)) != len(run.token_ids):
                    raise AssertionError(f"handoff says {chunk.handoff['delivered']} delivered, "
                                         f"client has {len(run.token_ids)}")
                replica_id = chunk.handoff["replica_id"]
                nxt = agents[replica_id].stream(chunk.handoff["request_id"])
            elif chunk.finish_reason:
                run.finish_reason = chunk.finish_reason
        stream = nxt
    return run


def _delivered_before(run: ClientRun) -> int:
    """Tokens the client had before the current hop's request started."""
    return sum(h["delivered"] for h in run.handoffs[:-1])


async def migrate_when(run: ClientRun, n_tokens: int, source: MigrationAgent, request_id: str,
                       dest: MigrationAgent | None = None, dest_address: str | None = None,
                       mode: str | None = None) -> dict:
    while len(run.token_ids) < n_tokens:
        await asyncio.sleep(0.001)
    address = dest_address if dest_address is not None else dest.address()
    dest_id = dest.replica_id if dest is not None else "nowhere"
    return await source.migrate_out(request_id, dest_id, address, mode)
