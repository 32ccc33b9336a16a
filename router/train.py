"""Training: fit every learner, pick one by held-out routing score, calibrate lambdas.

1. Split the training records into seeded folds (never the test split).
2. For each learner (and each of its settings), predict every record from a fit on the
   other folds; route those out-of-fold predictions and score the cost-quality curve
   by AIQ (the routing quality that matters, not just regression error). Every record
   is held out once, so the choice rests on all the data, not on one small slice.
3. Calibrate, per learner, the lambdas that on the out-of-fold routing reach the best
   single model's quality, 95% of it, and the best quality within its cost.
4. Refit every learner on all training records; keep the best one as `chosen`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np

from router import evaluate, metrics
from router.artifact import Predictors
from router.cost import cost_per_1k, price_arrays
from router.data import DataError, Records, fold_indices
from router.learners import LEARNERS, Learner, make_learner
from router.learners.blend import BlendLearner
from router.lengths import LengthModel

KNN_KS = (16, 32, 64, 128)
BLEND_PARTS = ("knn", "text")


def log(msg: str) -> None:
    print(f"router train: {msg}", file=sys.stderr)


def cost_matrix(records: Records, prices: dict[str, tuple[float, float]], lengths: LengthModel) -> np.ndarray:
    try:
        pin, pout = price_arrays(records.models, prices)
    except KeyError as e:
        raise DataError(f"{e.args[0]}; pass a price table that covers every model") from None
    prompt = records.prompt_tokens()
    return cost_per_1k(prompt, lengths.predict(records.models, prompt), pin, pout)


def heldout_info(pred: np.ndarray, true: np.ndarray, cost: np.ndarray, models: list[str]) -> dict:
    ref = evaluate.reference(models, true, cost)
    curve = evaluate.sweep(pred, true, cost)
    (cb, qb) = ref.best
    return {
        "aiq": metrics.aiq(curve[:, [2, 1]], ref.c_min, ref.c_max),
        "mse": float(((pred - true) ** 2).mean()),
        "lambda_at_best": evaluate.lambda_for_quality(curve, qb),
        "lambda_at_95": evaluate.lambda_for_quality(curve, 0.95 * qb),
        "lambda_at_best_cost": evaluate.lambda_for_budget(curve, cb),
    }


def heldout_view(records: Records, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Held-out routing needs every candidate's true score. Models scored on at least half
    the records (the core set; probed or feedback-only models are not) are the candidates,
    and the held-out rows are those scoring all of them."""
    cols = np.nonzero(records.mask.mean(0) >= 0.5)[0]
    if len(cols) < 2:
        raise DataError("fewer than 2 models are scored on at least half the records")
    rows = idx[records.mask[np.ix_(idx, cols)].all(1)]
    if len(rows) < 10:
        raise DataError("too few fully scored records to hold out for learner selection")
    return rows, cols


def out_of_fold(name: str, params: dict, x, records: Records, folds: list[np.ndarray]) -> np.ndarray:
    s, m, q = records.scores, records.mask, records.questions
    pred = np.zeros_like(s)
    for held in folds:
        fit = np.setdiff1d(np.arange(len(records)), held)
        learner = make_learner(name, **params).fit(x[fit], s[fit], m[fit], texts=[q[i] for i in fit])
        pred[held] = learner.predict(x[held], texts=[q[i] for i in held])
    return pred


def _select(name: str, x, records: Records, folds: list[np.ndarray], view, cost,
            oof: dict[str, np.ndarray]) -> dict:
    """Score the learner's settings on out-of-fold routing; keeps the best one's
    predictions in `oof`. A blend averages its parts' out-of-fold predictions."""
    rows, cols = view
    core = [records.models[j] for j in cols]
    grid = [{"k": k} for k in KNN_KS] if name == "knn" else [{}]
    best: dict | None = None
    for params in grid:
        if name == "blend":
            pred = BlendLearner.combine([oof[p] for p in BLEND_PARTS])
        else:
            pred = out_of_fold(name, params, x, records, folds)
        info = heldout_info(pred[np.ix_(rows, cols)], records.scores[np.ix_(rows, cols)],
                            cost[np.ix_(rows, cols)], core)
        info["params"] = params
        if best is None or info["aiq"] > best["aiq"]:
            best, oof[name] = info, pred
    return best


def train(records: Records, prices: dict[str, tuple[float, float]], embed: Callable[[list[str]], np.ndarray],
          learners: Sequence[str] = LEARNERS, folds: int = 5, seed: int = 0,
          default_output_tokens: float = 256.0) -> Predictors:
    if len(records) < 20:
        raise DataError(f"need at least 20 training records, got {len(records)}")
    learners = list(learners)
    if "blend" in learners:
        if not set(BLEND_PARTS) <= set(learners):
            raise DataError(f"the blend learner needs {' and '.join(BLEND_PARTS)} in the learner list too")
        learners = [n for n in learners if n != "blend"] + ["blend"]  # after its parts
    lengths = LengthModel(default_tokens=default_output_tokens).fit(
        records.models, records.prompt_tokens(), records.output_tokens)
    cost = cost_matrix(records, prices, lengths)  # checks the prices before the slow part
    log(f"{len(records)} records, {len(records.models)} models; embedding")
    x = embed(records.questions)
    parts = fold_indices(len(records), folds, seed)
    view = heldout_view(records, np.arange(len(records)))
    info: dict[str, dict] = {}
    fitted: dict[str, Learner] = {}
    oof: dict[str, np.ndarray] = {}
    for name in learners:
        info[name] = _select(name, x, records, parts, view, cost, oof)
        log(f"{name}: {folds}-fold out-of-fold AIQ {info[name]['aiq']:.4f} MSE {info[name]['mse']:.4f} "
            f"{info[name]['params']}")
        if name == "blend":
            fitted[name] = BlendLearner.of({p: fitted[p] for p in BLEND_PARTS})
        else:
            fitted[name] = make_learner(name, **info[name]["params"]).fit(x, records.scores, records.mask,
                                                                           texts=records.questions)
    chosen = max(learners, key=lambda n: (info[n]["aiq"], -LEARNERS.index(n)))
    log(f"chosen learner: {chosen}")
    meta = {"records": len(records), "heldout": int(len(view[0])), "seed": seed,
            "prices": {m: list(prices[m]) for m in records.models}, "embedding": "all-MiniLM-L6-v2"}
    return Predictors(list(records.models), fitted, chosen, lengths, info, meta)
