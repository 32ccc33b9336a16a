"""The gateway: Ray Serve ingress with FastAPI, speaking the OpenAI API.

Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /healthz.
Every error is an OpenAI error body; nothing malformed reaches a replica.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.auth import KeyRing
from gateway.config import GatewaySpec
from gateway.errors import APIError, invalid
from gateway.openai_format import sse
from gateway.protocol import ChatCompletionRequest, CompletionRequest, parse_request
from gateway.service import Completions, ModelCaller, Plan
from replicas.config import ModelSpec

logger = logging.getLogger("turnout.gateway")

app = FastAPI(title="Turnout", version="0.1.0",
              description="OpenAI-compatible multi-model gateway")


@app.exception_handler(APIError)
async def _api_error(_: Request, e: APIError) -> JSONResponse:
    return e.response()


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
    err = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(x) for x in err["loc"] if x != "body") or None
    return invalid(f"Invalid request: {err['msg']}", param).response()


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
    msg = "Not found." if e.status_code == 404 else str(e.detail)
    code = "not_found" if e.status_code == 404 else None
    return APIError(e.status_code, msg, None, code).response()


@app.exception_handler(Exception)
async def _unexpected(_: Request, e: Exception) -> JSONResponse:
    logger.exception("unhandled error")
    return APIError(500, "The server had an error while processing your request.").response()


async def read_json(request: Request, max_bytes: int) -> Any:
    body = await request.body()
    if len(body) > max_bytes:
        raise APIError(413, f"Request body is too large ({len(body)} bytes; at most {max_bytes}).",
                       None, "request_too_large")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise invalid("We could not parse the JSON body of your request.", None, "invalid_json") from None


class GatewayCore:
    """State shared by the routes (one per gateway replica)."""

    def __init__(self, gateway: dict, models: list[dict], handles: dict[str, Any]) -> None:
        self.spec = GatewaySpec.model_validate(gateway)
        self.model_specs = [ModelSpec.model_validate(m) for m in models]
        self.keys = KeyRing(self.spec)
        self.completions = Completions(self.spec, self.model_specs,
                                       ModelCaller(handles, self.spec.request_timeout_s))
        self.handles = handles
        self.started = time.time()

    async def handle(self, request: Request, cls: type) -> Response:
        who = self.keys.caller(request.headers.get("authorization"))
        body = await read_json(request, self.spec.limits.max_body_bytes)
        req = parse_request(cls, body)
        plan = self.completions.plan(req, who)
        if not plan.stream:
            return JSONResponse(await self.completions.complete(plan), headers=plan.headers)
        out, items, early = await self.completions.first_item(plan)
        return StreamingResponse(self._guard(plan, self.completions.stream(plan, out, items, early)),
                                 media_type="text/event-stream", headers=plan.headers)

    async def _guard(self, plan: Plan, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Once headers are sent, an error can only travel as an SSE error event."""
        try:
            async for f in frames:
                yield f
        except APIError as e:
            yield sse(e.body())
        except Exception:
            logger.exception("stream failed for model %s", plan.model)
            yield sse(APIError(500, "The model stream failed.").body())


class GatewayIngress:
    """The routes; `deploy/` wraps this class with serve.deployment + serve.ingress(app)."""

    def __init__(self, gateway: dict, models: list[dict], handles: dict[str, Any]) -> None:
        self.core = GatewayCore(gateway, models, handles)

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await self.core.handle(request, ChatCompletionRequest)

    @app.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await self.core.handle(request, CompletionRequest)

    @app.get("/v1/models")
    async def list_models(self, request: Request) -> dict:
        core = self.core
        who = core.keys.caller(request.headers.get("authorization"))
        allowed = who.tenant.allowed_models
        names = ["auto"] + [m.name for m in core.model_specs]
        created = int(core.started)
        return {"object": "list", "data": [
            {"id": n, "object": "model", "created": created, "owned_by": "turnout"}
            for n in names if not allowed or n in allowed or n == "auto"]}

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}
