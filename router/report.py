"""`turnout router eval`: the artifact's learners and the baselines on a labelled split."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from router import evaluate
from router.artifact import Predictors
from router.data import DataError, Records
from router.learners.blend import BlendLearner
from router.train import cost_matrix


def restrict(records: Records, models: list[str]) -> Records:
    """Keep the models the artifact knows and the records that score all of them."""
    cols = [records.models.index(m) for m in models if m in records.models]
    if len(cols) < 2:
        raise DataError("the evaluation data scores fewer than 2 of the artifact's models")
    keep = np.nonzero(records.mask[:, cols].all(1))[0]
    if len(keep) == 0:
        raise DataError("no evaluation record scores every model")
    sub = records.subset(keep)
    sub.models = [records.models[j] for j in cols]
    sub.scores, sub.mask, sub.output_tokens = sub.scores[:, cols], sub.mask[:, cols], sub.output_tokens[:, cols]
    return sub


def run_eval(predictors: Predictors, records: Records, prices: dict[str, tuple[float, float]],
             embed: Callable[[list[str]], np.ndarray]) -> tuple[str, dict]:
    """Returns the printable tables and the JSON report."""
    records = restrict(records, predictors.models)
    x = embed(records.questions)
    cost = cost_matrix(records, prices, predictors.lengths)
    cols = [predictors.models.index(m) for m in records.models]
    preds: dict[str, np.ndarray] = {}
    for name, lr in predictors.learners.items():
        if isinstance(lr, BlendLearner) and lr.shared and all(p in preds for p in lr.parts):
            preds[name] = BlendLearner.combine([preds[p] for p in lr.parts])  # its parts, predicted above
        else:
            preds[name] = lr.predict(x, texts=records.questions)[:, cols]
    info = predictors.info
    rows, ref = evaluate.evaluate(records.models, records.scores, cost, preds,
                                  {n: info.get(n, {}).get("lambda_at_best") for n in preds})
    calibrated = {n: evaluate.calibrated_points(preds[n], records.scores, cost, info.get(n, {}), ref)
                  for n in preds}
    lines = [f"{len(records)} questions, {len(records.models)} models; chosen learner: {predictors.chosen}",
             evaluate.format_table(rows, ref), "",
             "learners at lambdas calibrated on held-out TRAINING data (not tuned on this split):"]
    for n, points in calibrated.items():
        for key, p in points.items():
            lines.append(f"  {n:9} {key:10} lambda={p['lambda']:<8.4g} quality={p['quality']:.3f} "
                         f"cost_ratio={p['cost_ratio']:.1%}")
    report = {
        "questions": len(records), "models": records.models, "chosen": predictors.chosen,
        "reference": {"best_model": ref.best_model, "best_quality": ref.best[1], "best_cost": ref.best[0],
                      "cheapest_model": ref.weak_model, "cheapest_quality": ref.weak[1],
                      "cheapest_cost": ref.weak[0], "cost_unit": "USD per 1k requests"},
        "routers": {r.name: r.to_json() for r in rows},
        "calibrated": calibrated,
    }
    return "\n".join(lines), report
