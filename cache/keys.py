"""Request normalization: the exact-match key, the query text and its context.

The gateway calls `request_key(body)` and `cache_params(body)` on the validated
OpenAI request body and embeds `query_text(body)`; the cache hashes the key for
the exact tier and derives the semantic tier's context hash from it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Fields that change the answer (besides the messages or prompt and the model).
_ANSWER_FIELDS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
                  "presence_penalty", "frequency_penalty", "response_format", "logit_bias", "suffix")
# Fields that decide cacheability.
_PARAM_FIELDS = ("temperature", "tools", "functions", "tool_choice", "n", "logprobs", "top_logprobs",
                 "best_of", "stream", "cache")


def _norm_text(text: Any) -> Any:
    if isinstance(text, str):
        return " ".join(text.split())
    if isinstance(text, list):  # content parts
        return [_norm_text(p) for p in text]
    if isinstance(text, dict):
        return {k: _norm_text(v) for k, v in sorted(text.items())}
    return text


def request_key(body: dict) -> dict:
    """The normalized fields that decide the answer; equal keys mean equal answers at temperature 0."""
    key: dict[str, Any] = {"model": body.get("model", "auto")}
    if "messages" in body:
        key["messages"] = [{"role": m.get("role"), "content": _norm_text(m.get("content"))}
                           for m in body["messages"]]
    else:
        key["prompt"] = _norm_text(body.get("prompt", ""))
    for f in _ANSWER_FIELDS:
        if body.get(f) is not None:
            key[f] = body[f]
    return key


def cache_params(body: dict) -> dict:
    """The fields the cacheability rules read."""
    return {f: body[f] for f in _PARAM_FIELDS if f in body}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def query_text(key_or_body: dict) -> str:
    """The text to embed: the last user message (chat) or the prompt (completions)."""
    if "messages" in key_or_body:
        for m in reversed(key_or_body["messages"]):
            if m.get("role") == "user":
                return " ".join(_content_text(m.get("content")).split())
        return ""
    prompt = key_or_body.get("prompt", "")
    return " ".join(prompt.split()) if isinstance(prompt, str) else ""


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def exact_hash(key: dict) -> str:
    return _digest(key)


def context_hash(key: dict) -> str:
    """Everything around the query: a semantic hit needs the same system prompt, history and limits."""
    ctx = {k: v for k, v in key.items() if k not in ("model", "prompt", "temperature")}
    msgs = list(ctx.pop("messages", []))
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i].get("role") == "user":
            msgs.pop(i)
            break
    ctx["history"] = msgs
    ctx["kind"] = "chat" if "messages" in key else "completion"
    return _digest(ctx)


def message_count(key: dict) -> int:
    return len(key.get("messages", ())) or 1
