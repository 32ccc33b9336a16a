"""Cache hits as OpenAI responses, and their replay as SSE chunks.

A hit carries the stored response with a fresh id and timestamp and a
`turnout_cache` object saying which tier answered (clients ignore unknown
fields; the gateway also sets a response header). `sse_chunks` turns it into the
chunk dicts of a streamed response, which the gateway writes as `data:` lines.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class CacheHit:
    response: dict  # OpenAI chat.completion or text_completion, marked as cached
    tier: str  # "exact" | "semantic"
    similarity: float
    entry_id: int
    category: str
    served_model: str
    age_s: float


def hit_response(stored: dict, tier: str, similarity: float, entry_id: int, category: str,
                 age_s: float) -> dict:
    resp = dict(stored)
    prefix = "chatcmpl" if resp.get("object") == "chat.completion" else "cmpl"
    resp["id"] = f"{prefix}-cache-{uuid.uuid4().hex[:24]}"
    resp["created"] = int(time.time())
    resp["turnout_cache"] = {"hit": True, "tier": tier, "similarity": round(similarity, 4),
                             "entry_id": entry_id, "category": category, "age_s": round(age_s, 3)}
    return resp


def _pieces(text: str, size: int) -> list[str]:
    """Split text into pieces of about `size` characters, at spaces where possible."""
    out, cur = [], ""
    for word in text.split(" "):
        piece = word if not cur else " " + word
        if cur and len(cur) + len(piece) > size:
            out.append(cur)
            cur = " " + word
        else:
            cur += piece
    if cur:
        out.append(cur)
    return out


def sse_chunks(response: dict, chunk_chars: int = 16, include_usage: bool = False) -> list[dict]:
    """The chunk dicts a streamed version of `response` would have sent, in order."""
    base = {"id": response["id"], "created": response["created"], "model": response.get("model", "")}
    extra = {"turnout_cache": response["turnout_cache"]} if "turnout_cache" in response else {}
    chunks: list[dict] = []
    chat = response.get("object") == "chat.completion"
    obj = "chat.completion.chunk" if chat else "text_completion"
    for choice in response.get("choices", []):
        idx = choice.get("index", 0)
        if chat:
            msg = choice.get("message", {})
            text = msg.get("content") or ""
            chunks.append(base | {"object": obj, "choices": [
                {"index": idx, "delta": {"role": msg.get("role", "assistant"), "content": ""},
                 "finish_reason": None}]} | extra)
            for piece in _pieces(text, chunk_chars):
                chunks.append(base | {"object": obj, "choices": [
                    {"index": idx, "delta": {"content": piece}, "finish_reason": None}]})
            chunks.append(base | {"object": obj, "choices": [
                {"index": idx, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}]})
        else:
            for piece in _pieces(choice.get("text") or "", chunk_chars):
                chunks.append(base | {"object": obj, "choices": [
                    {"index": idx, "text": piece, "finish_reason": None, "logprobs": None}]})
            chunks.append(base | {"object": obj, "choices": [
                {"index": idx, "text": "", "finish_reason": choice.get("finish_reason", "stop"),
                 "logprobs": None}]} | extra)
    if include_usage and response.get("usage"):
        chunks.append(base | {"object": obj, "choices": [], "usage": response["usage"]})
    return chunks
