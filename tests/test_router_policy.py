"""The routing policy on hand-built inputs: prices, quality predictions, loads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from replicas.stats import ReplicaStats
from router.artifact import Predictors
from router.config import RouterSpec
from router.latency import LatencyParams, fit_latency, model_ttft, replica_ttft
from router.lengths import LengthModel
from router.policy import NoModelAvailable, RoutePolicy, apply_overrides, decide
from router.router import Router

INF = math.inf
MODELS = ["big", "mid", "small"]


def choose(q, c, t, policy=RoutePolicy(lam=1.0, mu=1.0, slo_s=1.0), models=MODELS, **kw):
    return decide(models, q, c, t, policy, **kw)


def test_best_utility_trades_quality_against_cost():
    # utilities: big 0.9-0.5=0.4, mid 0.7-0.2=0.5, small 0.4-0.05=0.35
    d = choose([0.9, 0.7, 0.4], [0.5, 0.2, 0.05], [0.1, 0.1, 0.1])
    assert d.model == "mid"
    assert d.reason.startswith("best utility")
    assert {c.model: round(c.utility, 6) for c in d.candidates} == {"big": 0.4, "mid": 0.5, "small": 0.35}
    # cost ignored (lambda 0): the best quality wins
    assert choose([0.9, 0.7, 0.4], [0.5, 0.2, 0.05], [0.1] * 3, RoutePolicy(lam=0.0)).model == "big"


def test_ties_go_to_the_cheaper_model_then_the_name():
    d = choose([0.6, 0.5, 0.5], [0.1, 0.0, 0.0], [0.0] * 3)  # all utilities 0.5
    assert d.model == "mid"  # mid and small cost 0; "mid" < "small"
    d = choose([0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [0.0] * 3, models=["b", "c", "a"])
    assert d.model == "a"
    d = choose([0.55, 0.5, 0.5], [0.05, 0.0, 0.01], [0.0] * 3, RoutePolicy(lam=1.0))
    assert d.model == "mid"  # big 0.5, mid 0.5, small 0.49: tie broken by cost


def test_a_model_with_no_replicas_is_never_chosen():
    d = choose([0.9, 0.7, 0.4], [0.0, 0.2, 0.05], [INF, 0.1, 0.1])
    assert d.model == "mid"
    assert d.candidates[0].utility == -INF


def test_no_replicas_anywhere_is_an_error_not_a_guess():
    with pytest.raises(NoModelAvailable):
        choose([0.9, 0.7, 0.4], [0.5, 0.2, 0.05], [INF, INF, INF])


def test_an_slo_no_model_meets_still_gives_a_clear_choice():
    # every model is over the 1 s SLO; penalties mu*(t-1): 4, 0.5, 1
    d = choose([0.9, 0.7, 0.4], [0.0, 0.0, 0.0], [5.0, 1.5, 2.0])
    assert d.model == "mid"
    assert "no model meets the SLO" in d.reason


def test_saturated_preferred_model_yields_to_the_next_best_and_comes_back():
    policy = RoutePolicy(lam=0.0, mu=1.0, slo_s=1.0)
    d_ok = choose([0.9, 0.7, 0.4], [0, 0, 0], [0.3, 0.3, 0.3], policy)
    d_busy = choose([0.9, 0.7, 0.4], [0, 0, 0], [2.0, 0.3, 0.3], policy)
    assert (d_ok.model, d_busy.model) == ("big", "mid")
    # a small overshoot is worth it when the quality gap is larger than the penalty
    assert choose([0.9, 0.7, 0.4], [0, 0, 0], [1.1, 0.3, 0.3], policy).reason.startswith("best utility despite")


def test_min_quality_filters_and_falls_back_to_the_best_prediction():
    p = RoutePolicy(lam=1.0, min_quality=0.8)
    assert choose([0.9, 0.7, 0.4], [0.5, 0.2, 0.05], [0.1] * 3, p).model == "big"
    d = choose([0.6, 0.7, 0.4], [0.5, 0.2, 0.05], [0.1] * 3, RoutePolicy(min_quality=0.95))
    assert d.model == "mid"
    assert "min quality" in d.reason


def test_allowed_models_restrict_the_choice():
    d = choose([0.9, 0.7, 0.4], [0.5, 0.2, 0.05], [0.1] * 3, RoutePolicy(lam=1.0, allowed_models=("big", "small")))
    assert d.model == "big"  # mid (the best overall) is not allowed
    assert {c.model for c in d.candidates} == {"big", "small"}
    with pytest.raises(NoModelAvailable):
        choose([0.9, 0.7, 0.4], [0.5, 0.2, 0.05], [0.1] * 3, RoutePolicy(allowed_models=("other",)))


def test_category_rules_take_precedence_unless_their_model_is_unavailable():
    rules = {"code": "small"}
    d = choose([0.9, 0.7, 0.4], [0.5, 0.2, 0.05], [0.1] * 3, category="code", rules=rules)
    assert d.model == "small" and d.reason.startswith("category rule code->small")
    assert choose([0.9, 0.7, 0.4], [0.5, 0.2, 0.05], [0.1] * 3, category="math", rules=rules).model == "mid"
    d = choose([0.9, 0.7, 0.4], [0.5, 0.2, 0.05], [0.1, 0.1, INF], category="code", rules=rules)
    assert d.model == "mid" and "skipped" in d.reason


def test_per_request_overrides():
    base = RoutePolicy(lam=1.0, allowed_models=("big", "mid"))
    p = apply_overrides(base, {"lambda": 0, "min_quality": 0.5, "slo_s": 2, "mu": 3,
                               "allowed_models": ["mid", "small"]})
    assert p == RoutePolicy(lam=0.0, mu=3.0, slo_s=2.0, min_quality=0.5, allowed_models=("mid",))
    assert apply_overrides(base, None) is base
    for bad in ({"lambda": -1}, {"lambda": "x"}, {"mu": True}, {"temperature": 1},
                {"allowed_models": "big"}, {"allowed_models": ["small"]}, [1]):
        with pytest.raises(ValueError):
            apply_overrides(base, bad)


def test_latency_model_from_replica_stats():
    p = LatencyParams(base_s=0.1, prefill_tokens_per_s=1000, per_running_s=0.05, kv_wait_s=3.0)
    idle = ReplicaStats("r0", "m", kv_blocks_total=100, block_size=16)
    assert replica_ttft(idle, 100, p) == pytest.approx(0.1 + 0.1)
    busy = ReplicaStats("r1", "m", running=4, waiting=2, waiting_blocks_needed=20, kv_blocks_used=60,
                        kv_blocks_total=100, block_size=16)
    assert replica_ttft(busy, 100, p) == pytest.approx(0.1 + (320 + 100) / 1000 + 0.2)
    full = ReplicaStats("r2", "m", running=1, kv_blocks_used=98, kv_blocks_total=100, block_size=16)
    assert replica_ttft(full, 100, p) == pytest.approx(0.1 + 0.1 + 0.05 + 3.0)
    assert model_ttft([busy, idle], 100, p) == pytest.approx(0.2)  # the freest replica
    assert model_ttft([], 100, p) == INF
    assert model_ttft([ReplicaStats("r3", "m", draining=True)], 100, p) == INF
    fitted = fit_latency([(100, 0, 0.2), (1100, 0, 1.2), (100, 4, 0.4), (600, 2, 0.8)])
    assert fitted.prefill_tokens_per_s == pytest.approx(1000, rel=1e-3)
    assert fitted.per_running_s == pytest.approx(0.05, rel=1e-3)


class _Fixed:
    """A learner stand-in with fixed predictions (pure logic under test: the Router's plumbing)."""

    name = "fixed"

    def __init__(self, q):
        self.q = np.asarray(q, dtype=np.float32)

    def predict(self, x, texts=None):
        return np.tile(self.q, (len(np.atleast_2d(x)), 1))


def test_router_maps_live_models_to_quality_columns_and_reads_load():
    pred = Predictors(["data-big", "data-small"], {"fixed": _Fixed([0.9, 0.5])}, "fixed", LengthModel(100))
    prices = {"live-big": (1.0, 1.0), "live-small": (0.1, 0.1), "live-new": (0.0, 0.0)}
    router = Router(pred, prices, model_map={"live-big": "data-big", "live-small": "data-small"},
                    latency={"live-big": LatencyParams(prefill_tokens_per_s=100)})
    emb = np.zeros(384, np.float32)
    policy = RoutePolicy(lam=0.1, mu=1.0, slo_s=1.0)
    d = router.choose(emb, None, 100, None, policy)
    assert d.model == "live-big"
    assert [round(c.quality, 3) for c in d.candidates] == [0.9, 0.5, 0.0]  # unknown model: 0 quality
    assert d.chosen.cost == pytest.approx((100 * 1.0 + 100 * 1.0) / 1000)
    idle = {m: [ReplicaStats(f"{m}-0", m, kv_blocks_total=100)] for m in prices}
    assert router.choose(emb, None, 100, idle, policy).model == "live-big"
    saturated = dict(idle, **{"live-big": [ReplicaStats("b", "live-big", waiting=5, kv_blocks_total=100)]})
    d = router.choose(emb, None, 100, saturated, policy)
    assert d.model == "live-small" and d.chosen.ttft_s < 1.0
    assert router.choose(emb, None, 100, idle, policy).model == "live-big"  # load fell: back
    headers = d.headers()
    assert headers["x-turnout-model"] == "live-small" and "quality=0.500" in headers["x-turnout-predicted"]


def test_tenant_policy_from_config_with_calibrated_lambda_and_overrides():
    spec = RouterSpec.model_validate({"default_policy": {"mu": 0.5},
                                      "tenants": {"acme": {"lambda": 2.0, "allowed_models": ["a"]}}})
    pred = Predictors(["a", "b"], {"fixed": _Fixed([0.5, 0.5])}, "fixed", LengthModel(),
                      info={"fixed": {"lambda_at_best": 0.7}})
    router = Router(pred, {"a": (1, 1), "b": (1, 1)})
    assert router.policy_for(spec, "someone").lam == 0.7  # calibrated default
    assert router.policy_for(spec, "acme", {"lambda": 3}).lam == 3.0
    with pytest.raises(ValueError):
        router.policy_for(spec, "acme", {"allowed_models": ["b"]})  # cannot widen
    assert router.policy_for(spec, "someone", tenant_allowed=["b", "auto"]).allowed_models == ("b",)
    with pytest.raises(NoModelAvailable):  # gateway allows only b, router policy only a: nothing left
        router.choose(np.zeros(384), None, 10, None, router.policy_for(spec, "acme", tenant_allowed=["b"]))
