"""The gateway: Ray Serve ingress with FastAPI, speaking the OpenAI API.

Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /healthz.
Every error is an OpenAI error body; nothing malformed reaches a replica.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cache.config import CacheSpec
from cache.responses import sse_chunks
from gateway import metrics
from gateway import openapi_bodies as bodies
from gateway.admin import Admin
from gateway.auth import KeyRing
from gateway.caller import ModelCaller
from gateway.config import GatewaySpec
from gateway.errors import APIError, invalid
from gateway.fleet_view import FleetView
from gateway.limits import RateLimiter, estimate_tokens
from gateway.openai_format import SSE_DONE, sse
from gateway.protocol import ChatCompletionRequest, CompletionRequest, parse_request
from gateway.service import Completions, Plan
from gateway.steering import Steer, Steering
from replicas.config import ModelSpec
from router.config import RouterSpec

logger = logging.getLogger("turnout.gateway")

app = FastAPI(title="Turnout", version="0.1.0",
              description="OpenAI-compatible multi-model gateway")


def _endpoint(request: Request) -> str:
    return request.url.path.rsplit("/", 1)[-1] or "root"


@app.exception_handler(APIError)
async def _api_error(request: Request, e: APIError) -> JSONResponse:
    metrics.record_error(getattr(request.state, "model", ""), getattr(request.state, "tenant", ""),
                         _endpoint(request), e.status, e.code)
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


STATIC = Path(__file__).resolve().parent.parent / "dashboards" / "static"


def static_file(path: str) -> Response:
    target = (STATIC / path).resolve()
    if STATIC.resolve() not in target.parents or not target.is_file():
        raise APIError(404, "Not found.", None, "not_found")
    return FileResponse(target)


class GatewayCore:
    """State shared by the routes (one per gateway replica)."""

    def __init__(self, gateway: dict, models: list[dict], handles: dict[str, Any],
                 cache: dict | None = None, router: dict | None = None,
                 rescheduler: Any = None, app_name: str | None = None) -> None:
        self.spec = GatewaySpec.model_validate(gateway)
        self.model_specs = [ModelSpec.model_validate(m) for m in models]
        self.keys = KeyRing(self.spec)
        self.limits = RateLimiter(self.spec)
        self.fleet = FleetView(app_name)
        caller = ModelCaller(handles, self.spec.request_timeout_s, self.spec.replica_retries,
                             self.fleet.replicas_up, self.fleet.forget)
        self.completions = Completions(self.spec, self.model_specs, caller)
        self.handles = handles
        self.rescheduler = rescheduler
        self.steering = Steering(CacheSpec.model_validate(cache or {}),
                                 RouterSpec.model_validate(router or {}), self.model_specs, self.fleet)
        self.started = time.time()

    async def start(self) -> None:
        self.fleet.start()

    async def handle(self, request: Request, cls: type) -> Response:
        started = time.perf_counter()
        who = self.keys.caller(request.headers.get("authorization"))
        request.state.tenant = who.tenant.name
        body = await read_json(request, self.spec.limits.max_body_bytes)
        req = parse_request(cls, body)
        self.completions.resolve_model(req.model, who)  # 404 before any work
        read = time.perf_counter()
        # Rate limits (429) and stream slots: the slot is freed when the response ends.
        choices = req.n * (len(req.prompts()) if isinstance(req, CompletionRequest) else 1)
        tokens = estimate_tokens(len(await request.body()), req.sampling().get("max_tokens"), choices)
        ticket = await self.limits.admit(who.tenant, tokens, req.stream)
        request.state.timings_ms = {"read": (read - started) * 1e3,
                                    "admit": (time.perf_counter() - read) * 1e3}
        try:
            response = await self._serve(request, req, body, who, started)
        except BaseException:
            await ticket.release()
            raise
        return await ticket.hold(response)

    async def _serve(self, request: Request, req: Any, body: Any, who: Any, started: float) -> Response:
        endpoint = _endpoint(request)
        steer = await self.steering.steer(body, req.model, req.router, who) \
            if self.steering.active else Steer()
        if steer.hit is not None:
            took = time.perf_counter() - started
            metrics.record_cache_hit(steer.hit.served_model, who.tenant.name, steer.hit.category,
                                     steer.hit.tier, took)
            response = self._cached(steer, req)
            # Server-Timing: the gateway's own share of a hit (the HTTP proxy hop is extra).
            steps = {**request.state.timings_ms, **steer.timings_ms}
            response.headers["server-timing"] = ", ".join(
                [f"gateway;dur={took * 1e3:.3f}"] + [f"{k};dur={v:.3f}" for k, v in steps.items()])
            return response
        plan = self.completions.plan(req, who, (steer.model, steer.reason) if steer.model else None)
        request.state.model = plan.model
        plan.headers.update(steer.headers)
        plan.headers["x-turnout-cache"] = "miss" if self.steering.cache else "off"

        async def done(response: dict, out: Any = None) -> None:
            usage = response.get("usage") or {}
            first = out.first_token_at if out is not None else None
            metrics.record_request(plan.model, who.tenant.name, endpoint,
                                   ttft_s=None if first is None else first - started,
                                   latency_s=time.perf_counter() - started,
                                   prompt_tokens=usage.get("prompt_tokens", 0),
                                   completion_tokens=usage.get("completion_tokens", 0))
            await self.steering.after(steer, who, req.model, response)

        if not plan.stream:
            response, out = await self.completions.complete(plan)
            await done(response, out)
            return JSONResponse(response, headers=plan.headers)
        out, items, early = await self.completions.first_item(plan)
        frames = self.completions.stream(plan, out, items, early, done)
        return StreamingResponse(self._guard(plan, frames), media_type="text/event-stream",
                                 headers=plan.headers)

    def _cached(self, steer: Steer, req: Any) -> Response:
        hit = steer.hit
        headers = {"x-turnout-cache": f"hit-{hit.tier}", "x-turnout-model": hit.served_model,
                   "x-turnout-route-reason": f"cache {hit.tier} hit (similarity {hit.similarity:.3f})"}
        if not req.stream:
            return JSONResponse(hit.response, headers=headers)
        usage = bool(req.stream_options and req.stream_options.include_usage)
        chunks = [sse(c) for c in sse_chunks(hit.response, include_usage=usage)] + [SSE_DONE]

        async def replay() -> AsyncIterator[bytes]:
            for c in chunks:
                yield c

        return StreamingResponse(replay(), media_type="text/event-stream", headers=headers)

    async def _guard(self, plan: Plan, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Once headers are sent, an error can only travel as an SSE error event."""
        try:
            async for f in frames:
                yield f
        except APIError as e:
            metrics.record_error(plan.model, plan.payloads[0].get("tenant", ""), "stream", e.status, e.code)
            yield sse(e.body())
        except Exception:
            logger.exception("stream failed for model %s", plan.model)
            metrics.record_error(plan.model, plan.payloads[0].get("tenant", ""), "stream", 500, "stream_failed")
            yield sse(APIError(500, "The model stream failed.").body())


class GatewayIngress:
    """The routes; `deploy/` wraps this class with serve.deployment + serve.ingress(app)."""

    def __init__(self, gateway: dict, models: list[dict], handles: dict[str, Any],
                 cache: dict | None = None, router: dict | None = None, rescheduler: Any = None) -> None:
        try:
            from ray import serve

            app_name = serve.get_replica_context().app_name
        except Exception:
            app_name = None
        self.core = GatewayCore(gateway, models, handles, cache, router, rescheduler, app_name)
        self.admin = Admin(self.core)

    async def __ensure_started(self) -> None:
        if not getattr(self, "_started", False):
            self._started = True
            await self.core.start()

    @app.post("/v1/chat/completions", openapi_extra=bodies.CHAT)
    async def chat_completions(self, request: Request) -> Response:
        await self.__ensure_started()
        return await self.core.handle(request, ChatCompletionRequest)

    @app.post("/v1/completions", openapi_extra=bodies.COMPLETION)
    async def completions(self, request: Request) -> Response:
        await self.__ensure_started()
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

    @app.post("/v1/feedback", openapi_extra=bodies.FEEDBACK)
    async def feedback(self, request: Request) -> dict:
        return await self.admin.feedback(request)

    @app.get("/admin/v1/overview")
    async def overview(self, request: Request) -> dict:
        await self.__ensure_started()
        return await self.admin.overview(request)

    @app.post("/admin/v1/replicas/{replica_id}/drain", openapi_extra=bodies.DRAIN)
    async def drain(self, replica_id: str, request: Request) -> Response:
        return await self.admin.drain(request, replica_id)

    @app.post("/admin/v1/migrations", openapi_extra=bodies.MIGRATE)
    async def migrate(self, request: Request) -> Response:
        return await self.admin.migrate(request)

    @app.post("/admin/v1/cache/invalidate", openapi_extra=bodies.INVALIDATE)
    async def invalidate(self, request: Request) -> dict:
        return await self.admin.invalidate(request)

    @app.get("/dashboard")
    async def dashboard_root(self, request: Request) -> Response:
        return RedirectResponse(str(request.url).rstrip("/") + "/")

    @app.get("/dashboard/{path:path}")
    async def dashboard(self, path: str) -> Response:
        """The operator page: static files, no key needed (its API calls carry the admin key)."""
        return static_file(path or "index.html")

    @app.get("/admin/v1/cache/stats")
    async def cache_stats(self, request: Request) -> dict:
        return await self.admin.cache_stats(request)
