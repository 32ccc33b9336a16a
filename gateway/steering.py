"""Steering: what happens to a request before a model sees it, and after it answers.

One embedding per request (the shared MiniLM, micro-batched) feeds both the category
classifier/semantic cache and the learned router. Order: exact cache tier (no
embedding needed), embed, semantic tier, then - for `model: "auto"` - the router's
choice from predicted quality, price and live replica load. After a model answers,
the response is stored in the cache and remembered for feedback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cache import keys
from cache import metrics as cache_metrics
from cache.batcher import EmbedBatcher
from cache.classifier import load_classifier
from cache.config import CacheSpec
from cache.embedder import shared_embedder
from cache.responses import CacheHit
from cache.semantic import SemanticCache
from gateway.auth import Caller
from gateway.errors import APIError, invalid
from gateway.fleet_view import FleetView
from replicas.config import ModelSpec
from router import live_metrics as router_metrics
from router.config import RouterSpec
from router.policy import NoModelAvailable
from router.router import Router

log = logging.getLogger("turnout.gateway")
CHARS_PER_TOKEN = 4


@dataclass
class Steer:
    """The outcome of steering one request."""

    hit: CacheHit | None = None
    model: str | None = None  # the router's choice for "auto"; None: as requested
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    category: str | None = None
    embedding: np.ndarray | None = None
    key: dict | None = None
    params: dict | None = None
    question: str = ""
    best_model: str | None = None  # the candidate of best predicted quality (for savings)
    timings_ms: dict[str, float] = field(default_factory=dict)  # steps, for Server-Timing


class Steering:
    def __init__(self, cache_spec: CacheSpec, router_spec: RouterSpec, models: list[ModelSpec],
                 fleet: FleetView) -> None:
        self.router_spec = router_spec
        self.fleet = fleet
        self.cache = SemanticCache.from_spec(cache_spec) if cache_spec.enabled else None
        # A missing or corrupt artifact fails here, at start-up, not at the first request.
        self.router = Router.from_config(router_spec, models) if router_spec.enabled else None
        self.classifier = self.cache.classifier if self.cache else (
            load_classifier(cache_spec.classifier) if self.router else None)
        self.categories = set(cache_spec.categories)
        self.default_category = cache_spec.default_category
        self.batcher = EmbedBatcher(shared_embedder()) if (self.cache or self.router) else None
        self.feedback = None
        if self.router and router_spec.feedback_redis_url:
            from router.feedback import FeedbackStore

            self.feedback = FeedbackStore(router_spec.feedback_redis_url, router_spec.feedback_prefix)
        if self.cache:
            fleet.on_update(self._adapt)
        self.prices = {m.name: (m.price_input_per_m, m.price_output_per_m) for m in models}
        # USD: what routed answers cost (predicted at decision, realised from usage) and
        # what the same tokens would have cost on the model of best predicted quality.
        self.money: dict[str, float] = {"routed": 0, "predicted_cost": 0.0, "realised_cost": 0.0,
                                        "best_cost": 0.0}
        self.decisions: dict[str, int] = {}

    @property
    def active(self) -> bool:
        return self.batcher is not None

    def _adapt(self, fleet: FleetView) -> None:
        from cache.policy import load_from_stats

        stats = [s for group in fleet.by_model().values() for s in group]
        if stats:
            for category, policy in self.cache.adapt(load_from_stats(stats)).items():
                cache_metrics.record_threshold(category, policy.threshold)
        cache_metrics.record_entries(self.cache.local.entries())

    def classify(self, vec: np.ndarray) -> str:
        label = self.classifier.predict(vec)
        return label if label in self.categories else self.default_category

    async def steer(self, body: dict, requested: str, overrides: dict | None, who: Caller) -> Steer:
        s = Steer(key=keys.request_key(body), params=keys.cache_params(body),
                  question=keys.query_text(body))
        tenant = who.tenant.name
        if self.cache:
            t = time.perf_counter()
            s.hit = await self.cache.lookup_exact(tenant, s.key, s.params)
            took = time.perf_counter() - t
            s.timings_ms["exact"] = took * 1e3
            if s.hit:
                cache_metrics.record_lookup(tenant, s.hit.category, "exact", took)
                return s
        routed = self.router is not None and requested == "auto"
        if self.cache is None and not routed:
            return s
        t = time.perf_counter()
        s.embedding = await self.batcher.embed(s.question)
        s.category = self.classify(s.embedding)
        s.timings_ms["embed"] = (time.perf_counter() - t) * 1e3
        if self.cache:
            t = time.perf_counter()
            s.hit = await self.cache.lookup(tenant, requested, s.category, s.embedding, s.key, s.params)
            took = time.perf_counter() - t
            s.timings_ms["lookup"] = took * 1e3
            cache_metrics.record_lookup(tenant, s.category, s.hit.tier if s.hit else None, took)
            if s.hit:
                return s
        if routed:
            self._route(s, overrides, who)
        return s

    def _route(self, s: Steer, overrides: dict | None, who: Caller) -> None:
        try:
            policy = self.router.policy_for(self.router_spec, who.tenant.name, overrides,
                                            who.tenant.allowed_models)
        except ValueError as e:
            raise invalid(str(e), "router") from None
        stats = self.fleet.by_model() if self.fleet.raw else None
        started = time.perf_counter()
        try:
            decision = self.router.choose(s.embedding, s.category, len(s.question) // CHARS_PER_TOKEN,
                                          stats, policy, s.question)
        except NoModelAvailable as e:
            raise APIError(503, f"No model can serve this request right now: {e}", "model",
                           "no_model_available", {"Retry-After": "2"}) from None
        s.model, s.reason, s.headers = decision.model, decision.reason, decision.headers()
        s.best_model = max(decision.candidates, key=lambda c: (c.quality, c.model)).model
        self.decisions[decision.model] = self.decisions.get(decision.model, 0) + 1
        self.money["routed"] += 1
        predicted = decision.chosen.cost / 1000.0  # candidates' cost is USD per 1k requests
        self.money["predicted_cost"] += predicted
        router_metrics.record_decision(decision.model, s.category or "", who.tenant.name, predicted,
                                       time.perf_counter() - started)

    def _account(self, s: Steer, response: dict) -> None:
        usage = response.get("usage") or {}
        p, c = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)

        def usd(model: str) -> float:
            pin, pout = self.prices.get(model, (0.0, 0.0))
            return (p * pin + c * pout) / 1e6

        realised, baseline = usd(s.model), usd(s.best_model or s.model)
        self.money["realised_cost"] += realised
        self.money["best_cost"] += baseline
        router_metrics.record_outcome(s.model, realised, baseline)

    async def after(self, s: Steer, who: Caller, requested: str, response: dict) -> None:
        """Store the answer in the cache and remember it for feedback (best effort)."""
        try:
            if self.cache and s.embedding is not None and s.category is not None:
                stored = await self.cache.store(who.tenant.name, requested, s.category, s.embedding,
                                                s.key, response, s.params)
                if stored is not None:
                    cache_metrics.record_store(who.tenant.name, s.category)
            if s.model:
                self._account(s, response)
            if self.feedback and s.model:
                await asyncio.to_thread(self.feedback.remember, response["id"], who.tenant.name,
                                        s.model, s.question)
        except Exception as e:  # the client already has its answer
            log.warning("after-response bookkeeping failed: %s", e)

    def stats(self) -> dict[str, Any]:
        m = self.money
        return {"decisions": dict(self.decisions), "routed": m["routed"],
                "predicted_cost_usd": m["predicted_cost"], "realised_cost_usd": m["realised_cost"],
                "baseline_cost_usd": m["best_cost"], "saved_usd": m["best_cost"] - m["realised_cost"]}
