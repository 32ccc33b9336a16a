"""Evaluation metrics on tiny hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from router import evaluate, metrics


def test_nondecreasing_hull_drops_dominated_and_concave_points():
    hull = metrics.nondecreasing_hull([(1, 0.6), (0, 0.5), (2, 0.9), (3, 0.8)])
    assert hull.tolist() == [[0, 0.5], [2, 0.9]]
    assert metrics.nondecreasing_hull([(0, 0.5), (1, 0.8), (2, 0.9)]).tolist() == [[0, 0.5], [1, 0.8], [2, 0.9]]


def test_aiq_is_the_mean_height_of_the_hull():
    pts = [(0, 0.5), (1, 0.6), (2, 0.9)]
    assert metrics.aiq(pts, 0, 2) == pytest.approx(0.7, abs=1e-6)  # trapezoid (0.5+0.9)/2
    assert metrics.aiq(pts, 0, 4) == pytest.approx((1.4 + 1.8) / 4, abs=1e-6)  # flat after the last point
    assert metrics.aiq([(1, 0.6)], 0, 2) == pytest.approx(0.3, abs=1e-3)  # nothing below its cost


def test_apgr_and_cpt_of_a_straight_line_and_a_step():
    weak, strong = (0.0, 0.5), (1.0, 0.7)
    line = [(x, 0.5 + 0.2 * x) for x in np.linspace(0, 1, 101)]  # random mixing: PGR(x) = x
    assert metrics.apgr(line, weak, strong) == pytest.approx(0.5, abs=6e-3)  # step between points
    assert metrics.cpt(line, weak, strong, 0.5) == pytest.approx(0.5, abs=1e-9)
    assert metrics.cpt(line, weak, strong, 0.8) == pytest.approx(0.8, abs=1e-9)
    step = [weak, (0.5, 0.7), strong]  # full quality at half the cost
    assert metrics.apgr(step, weak, strong) == pytest.approx(0.5, abs=2e-3)
    assert metrics.cpt(step, weak, strong, 0.8) == pytest.approx(0.5)
    assert metrics.cpt([weak], weak, strong, 0.5) == float("inf")


def test_cost_to_reach_and_quality_within_budget():
    pts = [(0.1, 0.4), (0.3, 0.6), (0.2, 0.55), (0.5, 0.58)]
    assert metrics.cost_to_reach(pts, 0.55) == pytest.approx(0.2)
    assert metrics.cost_to_reach(pts, 0.7) is None
    assert metrics.best_quality_within(pts, 0.25) == pytest.approx(0.55)
    assert metrics.best_quality_within(pts, 0.05) is None


def test_routing_sweep_and_calibration_on_two_queries():
    true = np.array([[1.0, 0.0], [0.0, 1.0]])
    cost = np.array([[1.0, 0.1], [1.0, 0.1]])
    curve = evaluate.sweep(true, true, cost)
    assert curve[0, 1:].tolist() == pytest.approx([1.0, 0.55])  # lambda 0: each query's right model
    assert curve[-1, 1:].tolist() == pytest.approx([0.5, 0.1])  # huge lambda: always the cheap one
    assert evaluate.lambda_for_quality(curve, 1.0) < 1.2  # must still pay for query 0
    assert evaluate.lambda_for_budget(curve, 0.2) > 1.0
    assert evaluate.lambda_for_quality(curve, 1.1) is None


def test_evaluate_reports_baselines_with_known_values():
    true = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    cost = np.tile([0.1, 0.1, 1.0], (4, 1))
    rows, ref = evaluate.evaluate(["a", "b", "c"], true, cost, {"perfect": true})
    by = {r.name: r for r in rows}
    assert ref.best_model == "c" and ref.weak_model == "a"
    assert by["always-best-single"].quality == pytest.approx(0.75)
    assert by["always-cheapest"].quality == pytest.approx(0.5)
    assert by["random"].quality == pytest.approx(6 / 12)
    assert by["oracle"].quality == pytest.approx(1.0)
    assert by["oracle"].cost == pytest.approx((0.1 + 0.1 + 1.0 + 0.1) / 4)
    assert by["perfect"].cost_ratio_at_best == pytest.approx(0.1)  # a or b answers 3 of 4 at 0.1
    assert by["perfect"].quality_at_best_cost == pytest.approx(1.0)
    assert by["always-best-single"].cost_ratio_at_best == pytest.approx(1.0)
    assert by["always-cheapest"].cost_ratio_at_95 is None
    assert "oracle" in evaluate.format_table(rows, ref)
