"""Offline evaluation: route a labelled split with each learner and the baselines.

A learner routes each query to argmax(predicted quality - lambda * cost); sweeping
lambda traces its cost-quality curve, which feeds the curve metrics of
router.metrics. Baselines: random (uniform over models, its expected value),
always-cheapest, always-best-single (best mean quality on this split) and oracle
(the true scores, swept over lambda too).

Each learner's single `quality`/`cost` row is taken at the lambda calibrated on the
training run's held-out split to match the best single model's quality (not tuned
on the evaluated split); the curve metrics read the whole sweep.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from router import metrics

LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 361)])


def route(pred: np.ndarray, cost: np.ndarray, lam: float) -> np.ndarray:
    # the tiny cost term breaks exact ties towards the cheaper model, like the live policy
    return np.argmax(pred - (lam + 1e-9) * cost, axis=1)


def sweep(pred: np.ndarray, true: np.ndarray, cost: np.ndarray, lambdas=LAMBDAS) -> np.ndarray:
    """(k, 3): lambda, mean true quality, mean cost."""
    rows = np.arange(len(true))
    out = []
    for lam in lambdas:
        pick = route(pred, cost, lam)
        out.append((lam, true[rows, pick].mean(), cost[rows, pick].mean()))
    return np.array(out)


def lambda_for_quality(curve: np.ndarray, target: float) -> float | None:
    """The largest (cheapest) lambda whose quality reaches the target."""
    ok = curve[curve[:, 1] >= target - 1e-12]
    return float(ok[:, 0].max()) if len(ok) else None


def lambda_for_budget(curve: np.ndarray, budget: float) -> float | None:
    """The lambda with the best quality among those costing at most the budget."""
    ok = curve[curve[:, 2] <= budget + 1e-12]
    return float(ok[np.argmax(ok[:, 1]), 0]) if len(ok) else None


def at_lambda(pred, true, cost, lam: float) -> tuple[float, float]:
    pick = route(pred, cost, lam)
    rows = np.arange(len(true))
    return float(true[rows, pick].mean()), float(cost[rows, pick].mean())


@dataclass
class Row:
    name: str
    quality: float
    cost: float
    apgr: float
    cpt50: float
    cpt80: float
    aiq: float
    cost_ratio_at_best: float | None
    cost_ratio_at_95: float | None
    quality_at_best_cost: float | None

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}


@dataclass
class Reference:
    best_model: str
    best: tuple[float, float]  # cost, quality
    weak_model: str
    weak: tuple[float, float]
    c_min: float
    c_max: float


def reference(models: list[str], true: np.ndarray, cost: np.ndarray) -> Reference:
    q, c = true.mean(0), cost.mean(0)
    b = int(np.lexsort((c, -q))[0])  # best quality, cheaper on ties
    w = int(np.lexsort((-q, c))[0])  # cheapest, better on ties
    return Reference(models[b], (float(c[b]), float(q[b])), models[w], (float(c[w]), float(q[w])),
                     float(c.min()), float(c.max()))


def curve_row(name: str, points: np.ndarray, op: tuple[float, float], ref: Reference) -> Row:
    """points: (k, 2) cost, quality; op: the row's own (quality, cost)."""
    (cb, qb) = ref.best
    at_best = metrics.cost_to_reach(points, qb)
    at_95 = metrics.cost_to_reach(points, 0.95 * qb)
    return Row(
        name, op[0], op[1],
        metrics.apgr(points, ref.weak, ref.best), metrics.cpt(points, ref.weak, ref.best, 0.5),
        metrics.cpt(points, ref.weak, ref.best, 0.8), metrics.aiq(points, ref.c_min, ref.c_max),
        None if at_best is None else at_best / cb, None if at_95 is None else at_95 / cb,
        metrics.best_quality_within(points, cb),
    )


def evaluate(models: list[str], true: np.ndarray, cost: np.ndarray, preds: dict[str, np.ndarray],
             lambdas: dict[str, float | None] | None = None) -> tuple[list[Row], Reference]:
    """true, cost: (n, m); preds: learner -> (n, m) predicted quality; lambdas: the
    learner's calibrated operating point (None: the lambda=0 point)."""
    ref = reference(models, true, cost)
    rows = []
    for name, pred in preds.items():
        curve = sweep(pred, true, cost)
        lam = (lambdas or {}).get(name) or 0.0
        rows.append(curve_row(name, curve[:, [2, 1]], at_lambda(pred, true, cost, lam), ref))
    rnd = (float(true.mean()), float(cost.mean()))
    rows.append(curve_row("random", np.array([[rnd[1], rnd[0]]]), rnd, ref))
    for label, (c, q) in (("always-cheapest", ref.weak), ("always-best-single", ref.best)):
        rows.append(curve_row(label, np.array([[c, q]]), (q, c), ref))
    oracle = sweep(true, true, cost)
    rows.append(curve_row("oracle", oracle[:, [2, 1]], at_lambda(true, true, cost, 0.0), ref))
    return rows, ref


def format_table(rows: list[Row], ref: Reference) -> str:
    def f(v, pct=False):
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "-"
        return f"{100 * v:.0f}%" if pct else f"{v:.3f}"

    head = (f"{'router':34} {'quality':>7} {'cost/1k':>8} {'APGR':>6} {'CPT50':>6} {'CPT80':>6} {'AIQ':>6} "
            f"{'c@100%':>7} {'c@95%':>6} {'q@c_best':>8}")
    lines = [f"best single: {ref.best_model} q={ref.best[1]:.3f} cost=${ref.best[0]:.4f}/1k; "
             f"cheapest: {ref.weak_model} q={ref.weak[1]:.3f} cost=${ref.weak[0]:.4f}/1k", head]
    for r in rows:
        lines.append(f"{r.name[:34]:34} {f(r.quality):>7} {r.cost:8.4f} {f(r.apgr):>6} {f(r.cpt50, True):>6} "
                     f"{f(r.cpt80, True):>6} {f(r.aiq):>6} {f(r.cost_ratio_at_best, True):>7} "
                     f"{f(r.cost_ratio_at_95, True):>6} {f(r.quality_at_best_cost):>8}")
    return "\n".join(lines)


def calibrated_points(pred: np.ndarray, true: np.ndarray, cost: np.ndarray, info: dict,
                      ref: Reference) -> dict[str, dict]:
    """The learner at each lambda calibrated on held-out training data, measured here."""
    out = {}
    for key in ("lambda_at_best", "lambda_at_95", "lambda_at_best_cost"):
        lam = info.get(key)
        if lam is None:
            continue
        q, c = at_lambda(pred, true, cost, lam)
        out[key.removeprefix("lambda_")] = {"lambda": lam, "quality": q, "cost": c, "cost_ratio": c / ref.best[0]}
    return out
