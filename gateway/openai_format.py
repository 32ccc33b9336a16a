"""Build OpenAI response bodies and SSE chunks from replica output items."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any


def sse(data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


SSE_DONE = sse("[DONE]")


def chat_logprobs(items: list[dict] | None) -> dict | None:
    if items is None:
        return None
    return {"content": [
        {"token": it["token"], "logprob": it["logprob"], "bytes": list(it["token"].encode()),
         "top_logprobs": [{"token": t["token"], "logprob": t["logprob"],
                           "bytes": list(t["token"].encode())} for t in it["top"][1:] or it["top"]]}
        for it in items]}


def completion_logprobs(items: list[dict] | None) -> dict | None:
    if items is None:
        return None
    return {"tokens": [it["token"] for it in items],
            "token_logprobs": [it["logprob"] for it in items],
            "top_logprobs": [{t["token"]: t["logprob"] for t in it["top"]} for it in items],
            "text_offset": []}


@dataclass
class Choice:
    """One output sequence being assembled."""

    index: int
    text: str = ""
    tokens: int = 0
    finish_reason: str | None = None
    logprobs: list[dict] | None = None

    def add(self, item: dict) -> None:
        self.text += item["text"]
        self.tokens += len(item["token_ids"])
        if item.get("finish_reason"):
            self.finish_reason = item["finish_reason"]
        if item.get("logprobs") is not None:
            self.logprobs = (self.logprobs or []) + item["logprobs"]


@dataclass
class Assembled:
    kind: str  # "chat" | "text"
    id: str
    model: str
    created: int
    prompt_tokens: int = 0
    choices: dict[int, Choice] = field(default_factory=dict)
    first_token_at: float | None = None  # perf_counter time of the first generated token

    def choice(self, index: int) -> Choice:
        return self.choices.setdefault(index, Choice(index))

    def add(self, item: dict) -> Choice:
        if self.first_token_at is None and item["token_ids"]:
            self.first_token_at = time.perf_counter()
        choice = self.choice(item["index"])
        choice.add(item)
        return choice

    @property
    def completion_tokens(self) -> int:
        return sum(c.tokens for c in self.choices.values())

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def body(self) -> dict:
        choices = [self._choice_body(self.choices[i]) for i in sorted(self.choices)]
        obj = "chat.completion" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": choices, "usage": self.usage()}

    def _choice_body(self, c: Choice) -> dict:
        if self.kind == "chat":
            return {"index": c.index, "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason, "logprobs": chat_logprobs(c.logprobs)}
        return {"index": c.index, "text": c.text, "finish_reason": c.finish_reason,
                "logprobs": completion_logprobs(c.logprobs)}

    def chunk(self, index: int, text: str | None, finish_reason: str | None = None,
              logprobs: list[dict] | None = None, role: bool = False) -> dict:
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "finish_reason": finish_reason,
                      "logprobs": chat_logprobs(logprobs)}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish_reason,
                      "logprobs": completion_logprobs(logprobs)}
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": [choice]}

    def usage_chunk(self) -> dict:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": [], "usage": self.usage()}
