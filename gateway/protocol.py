"""OpenAI request schemas (the subset Turnout serves) and their validation.

Pydantic validates types; `parse_request` turns the first validation error into an
OpenAI-format 400 naming the parameter, so nothing malformed reaches an engine.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.errors import APIError, invalid


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _Common(BaseModel):
    """Fields shared by chat and completions requests."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # Turnout extensions (OpenAI client: extra_body={...}).
    priority: int | None = None
    cache: bool | None = None
    router: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if v == "" or (isinstance(v, list) and "" in v):
            raise ValueError("stop sequences must not be empty")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (v or {}).items():
            if not token.isascii() or not token.isdigit():
                raise ValueError(f"keys must be token ids (integers as strings), got {token!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases must be between -100 and 100, got {bias}")
        return v

    def sampling(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "n": self.n, "temperature": 1.0 if self.temperature is None else self.temperature,
            "top_p": self.top_p, "seed": self.seed, "stop": self.stop,
            "max_tokens": self.max_tokens, "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty, "logit_bias": self.logit_bias,
        }
        return {k: v for k, v in s.items() if v is not None}


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None

    def sampling(self) -> dict[str, Any]:
        s = super().sampling()
        if self.max_completion_tokens is not None and self.max_tokens is None:
            s["max_tokens"] = self.max_completion_tokens
        if self.logprobs:
            s["logprobs"] = self.top_logprobs or 0
        if self.response_format and self.response_format.type != "text":
            s["response_format"] = self.response_format.model_dump()
        return s


class CompletionRequest(_Common):
    prompt: str | list[str] = Field(min_length=1)
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str) and not v:
            raise ValueError("prompt must not be empty")
        if isinstance(v, list) and not all(p for p in v):
            raise ValueError("prompt must not contain empty strings")
        return v

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def sampling(self) -> dict[str, Any]:
        s = super().sampling()
        if self.logprobs is not None:
            s["logprobs"] = self.logprobs
        return s


def parse_request(cls: type[_Common], body: Any) -> Any:
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None, "invalid_json")
    try:
        req = cls.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(x) for x in err["loc"]]
        param = loc[0] if loc else None
        where = ".".join(loc)
        kind = err["type"]
        if kind == "missing":
            msg = f"Missing required parameter: '{where}'."
            code = "missing_required_parameter"
        else:
            msg = f"Invalid value for '{where}': {err['msg'].removeprefix('Value error, ')}."
            code = "invalid_type" if kind.endswith("_type") or "parsing" in kind else "invalid_value"
        raise APIError(400, msg, param, code) from None
    if isinstance(req, ChatCompletionRequest):
        _check_messages(req)
    return req


def _check_messages(req: ChatCompletionRequest) -> None:
    for i, m in enumerate(req.messages):
        if m.role in ("user", "system", "developer") and not m.text().strip():
            raise invalid(f"messages[{i}] has empty content.", f"messages.{i}.content")
    if all(m.role != "user" for m in req.messages):
        raise invalid("messages must contain at least one user message.", "messages")
