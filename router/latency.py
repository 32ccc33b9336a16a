"""Latency model: predicted time to first token of a new request on each model.

Per replica, a new request waits for the queue ahead of it to be prefilled, then
its own prompt; every running request slows each engine step a little; and when
the free KV blocks (after what the queue needs) cannot hold its prompt, it also
waits for running requests to finish and free memory:

  ttft = base_s + (queued_prompt_tokens + prompt_tokens) / prefill_tokens_per_s
         + running * per_running_s + (kv_wait_s if KV is short else 0)

A model's TTFT is its best replica's (the replica request router sends new work to
the freest replica). A model with no live, non-draining replica has an infinite
TTFT: it is unavailable. The parameters are per model (config), and `fit_latency`
re-estimates them from observed (load, TTFT) samples by least squares.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from replicas.stats import ReplicaStats


@dataclass(frozen=True)
class LatencyParams:
    base_s: float = 0.05
    prefill_tokens_per_s: float = 2000.0
    per_running_s: float = 0.02
    kv_wait_s: float = 2.0


def replica_ttft(stats: ReplicaStats, prompt_tokens: int, params: LatencyParams) -> float:
    if stats.draining:
        return math.inf
    block = max(stats.block_size, 1)
    # The waiting queue's prompts: its blocks when reported, else assume prompts like ours.
    queued = stats.waiting_blocks_needed * block if stats.waiting_blocks_needed else stats.waiting * prompt_tokens
    need = math.ceil(prompt_tokens / block)
    free = stats.free_blocks - stats.waiting_blocks_needed - stats.headroom_blocks
    kv_short = stats.kv_blocks_total > 0 and free < need
    return (params.base_s + (queued + prompt_tokens) / params.prefill_tokens_per_s
            + stats.running * params.per_running_s + (params.kv_wait_s if kv_short else 0.0))


def model_ttft(replicas: Sequence[ReplicaStats] | None, prompt_tokens: int, params: LatencyParams) -> float:
    if not replicas:
        return math.inf
    return min(replica_ttft(s, prompt_tokens, params) for s in replicas)


def fit_latency(samples: Iterable[tuple[float, int, float]], kv_wait_s: float = 2.0) -> LatencyParams:
    """Fit base_s, 1/prefill rate and per_running_s from (tokens_to_prefill, running, ttft_s)
    samples of requests that did not wait for KV memory."""
    rows = np.array(list(samples), dtype=np.float64)
    if len(rows) < 3:
        raise ValueError("need at least 3 latency samples to fit")
    a = np.stack([np.ones(len(rows)), rows[:, 0], rows[:, 1]], axis=1)
    coef, *_ = np.linalg.lstsq(a, rows[:, 2], rcond=None)
    base, per_token, per_running = (max(float(c), 1e-9) for c in coef)
    return LatencyParams(base, 1.0 / per_token, per_running, kv_wait_s)
