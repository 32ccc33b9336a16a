"""Request-body schemas for the OpenAPI document.

The routes read raw `Request` bodies (so every error stays in the OpenAI format), which
leaves FastAPI's generated schema without request bodies. These `openapi_extra` values
put them back, from the pydantic models for the OpenAI routes and by hand for the
small admin bodies, so clients and fuzzers (schemathesis) know what to send.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gateway.protocol import ChatCompletionRequest, CompletionRequest


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Replace local `$ref`s by their definitions (openapi_extra cannot add components)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required,
                            "content": {"application/json": {"schema": schema}}}}


def model_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return _body(_inline(schema, schema.get("$defs", {})))


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


CHAT = model_body(ChatCompletionRequest)
COMPLETION = model_body(CompletionRequest)
FEEDBACK = _body(_object({"response_id": {"type": "string", "minLength": 1},
                          "score": {"type": "number", "minimum": 0, "maximum": 1}},
                         ("response_id", "score")))
DRAIN = _body(_object({"draining": {"type": "boolean"}}), required=False)
MIGRATE = _body(_object({"request_id": {"type": "string", "minLength": 1},
                         "destination": {"type": "string", "minLength": 1}}, ("request_id",)))
INVALIDATE = _body(_object({"entry_id": {"type": "integer"}, "category": {"type": "string"},
                            "tenant": {"type": "string"}}))
