"""Admin API (admin key required) and the feedback endpoint.

GET  /admin/v1/overview                      models, replicas and load, migrations, cache, router
POST /admin/v1/replicas/{replica_id}/drain   move everything off a replica, admit nothing new
POST /admin/v1/migrations                    {"request_id", "destination": replica id | "auto"}
POST /admin/v1/cache/invalidate              {"entry_id"?, "category"?, "tenant"?} (none: all)
GET  /admin/v1/cache/stats                   per tenant and category
POST /v1/feedback                            {"response_id", "score"} (tenant key)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from gateway.errors import APIError, invalid

logger = logging.getLogger("turnout.gateway")

ADMIN_CALL_TIMEOUT_S = 30.0


class Admin:
    def __init__(self, core: Any) -> None:
        self.core = core

    def _admin(self, request: Request) -> None:
        self.core.keys.admin(request.headers.get("authorization"))

    async def _body(self, request: Request) -> dict:
        from gateway.app import read_json

        body = await read_json(request, 64_000)
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.", None, "invalid_json")
        return body

    def _need_rescheduler(self) -> Any:
        if self.core.rescheduler is None:
            raise APIError(409, "Migration is not enabled in this deployment (migration.enabled).",
                           None, "migration_disabled")
        return self.core.rescheduler

    async def _call(self, response: Any) -> Any:
        from migration.rescheduler import AdminError

        try:
            return await asyncio.wait_for(response, ADMIN_CALL_TIMEOUT_S)
        except AdminError as e:
            raise APIError(e.status, str(e), None, e.code) from None
        except TimeoutError:
            raise APIError(504, "The rescheduler did not answer in time.", None, "timeout") from None
        except Exception as e:  # Ray wraps remote errors: unwrap the admin ones
            cause = getattr(e, "cause", None)
            if isinstance(cause, AdminError):
                raise APIError(cause.status, str(cause), None, cause.code) from None
            raise

    # ---- read -----------------------------------------------------------------------
    async def overview(self, request: Request) -> dict:
        from dashboards.overview import build_overview

        self._admin(request)
        core = self.core
        raw_by_model: dict[str, list[dict]] = {}
        for s in core.fleet.raw:
            raw_by_model.setdefault(s["model"], []).append(s)
        migrations: dict = {"in_flight": [], "recent": []}
        if core.rescheduler is not None:
            try:
                migrations = await asyncio.wait_for(core.rescheduler.status.remote(), 5.0)
            except Exception as e:
                logger.warning("rescheduler status failed: %s", e)
        cache = core.steering.cache
        thresholds = {c: cache.policy(c).threshold for c in cache.spec.categories} if cache else None
        return build_overview([m.model_dump() for m in core.model_specs], raw_by_model, migrations,
                              cache.stats() if cache else {}, core.steering.stats(), thresholds)

    async def cache_stats(self, request: Request) -> dict:
        self._admin(request)
        cache = self.core.steering.cache
        if cache is None:
            raise APIError(409, "The cache is not enabled (cache.enabled).", None, "cache_disabled")
        return cache.stats(request.query_params.get("tenant"))

    # ---- act ------------------------------------------------------------------------
    async def drain(self, request: Request, replica_id: str) -> JSONResponse:
        self._admin(request)
        body = await request.body()
        draining = True
        if body.strip():
            data = await self._body(request)
            draining = data.get("draining", True)
            if not isinstance(draining, bool):
                raise invalid("draining must be true or false.", "draining")
        res = self._need_rescheduler()
        return JSONResponse(await self._call(res.drain.remote(replica_id, draining)), status_code=202)

    async def migrate(self, request: Request) -> dict:
        self._admin(request)
        body = await self._body(request)
        request_id = body.get("request_id")
        destination = body.get("destination", "auto")
        if not isinstance(request_id, str) or not request_id:
            raise invalid("request_id must be a non-empty string.", "request_id")
        if not isinstance(destination, str) or not destination:
            raise invalid("destination must be a replica id or 'auto'.", "destination")
        res = self._need_rescheduler()
        return JSONResponse(await self._call(res.migrate.remote(request_id, destination)),
                            status_code=202)

    async def invalidate(self, request: Request) -> dict:
        from cache.semantic import CacheUnavailable

        self._admin(request)
        body = await self._body(request)
        cache = self.core.steering.cache
        if cache is None:
            raise APIError(409, "The cache is not enabled (cache.enabled).", None, "cache_disabled")
        args = {k: body.get(k) for k in ("entry_id", "category", "tenant")}
        if args["entry_id"] is not None and not isinstance(args["entry_id"], int):
            raise invalid("entry_id must be an integer.", "entry_id")
        for k in ("category", "tenant"):
            if args[k] is not None and not isinstance(args[k], str):
                raise invalid(f"{k} must be a string.", k)
        if args["category"] is not None and args["category"] not in cache.spec.categories:
            raise invalid(f"unknown category {args['category']!r}.", "category")
        try:
            removed = await cache.invalidate(**args)
        except CacheUnavailable as e:
            raise APIError(503, f"The cache store is unavailable: {e}", None, "cache_unavailable",
                           {"Retry-After": "5"}) from None
        return {"invalidated": removed, **{k: v for k, v in args.items() if v is not None}}

    async def feedback(self, request: Request) -> dict:
        from router.feedback import FeedbackError

        who = self.core.keys.caller(request.headers.get("authorization"))
        body = await self._body(request)
        store = self.core.steering.feedback
        if store is None:
            raise APIError(409, "Feedback needs the router with router.feedback_redis_url.",
                           None, "feedback_disabled")
        rid, score = body.get("response_id"), body.get("score")
        if not isinstance(rid, str) or not rid:
            raise invalid("response_id must be a non-empty string.", "response_id")
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            raise invalid("score must be a number between 0 and 1.", "score")
        try:
            await asyncio.to_thread(store.add_score, rid, float(score), who.tenant.name)
        except FeedbackError as e:
            raise APIError(404, str(e), "response_id", "not_found") from None
        return {"response_id": rid, "score": float(score), "stored": True}
