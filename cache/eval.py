"""Threshold evaluation on labelled query pairs: per-category thresholds vs one global one.

A pair (a, b, same_answer, category) is predicted a hit when cos(a, b) reaches the
threshold and the guard signatures agree (as in the live cache). Metrics are
precision, recall and F0.5 (precision weighs more: a false hit serves a wrong answer).
Thresholds come from a grid of 0.01 steps; the per-category tuner does coordinate
ascent on the pooled F0.5, starting from the best global threshold and moving a
category only for a gain of at least MIN_GAIN (a guard against fitting noise).
Cross-validation: stratified k folds (by category and label), thresholds tuned on
k-1 folds, predictions made on the held-out fold, metrics over all held-out predictions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.guard import signature

GRID = np.round(np.arange(0.50, 1.0001, 0.01), 2)
MIN_GAIN = 0.005


@dataclass
class Pairs:
    sims: np.ndarray
    same: np.ndarray  # bool
    guard: np.ndarray  # bool: signatures agree
    cats: np.ndarray  # str

    def subset(self, mask: np.ndarray) -> Pairs:
        return Pairs(self.sims[mask], self.same[mask], self.guard[mask], self.cats[mask])


def read_pairs(path: str | Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        if not isinstance(r.get("a"), str) or not isinstance(r.get("b"), str) or "same_answer" not in r:
            raise ValueError(f"{path}:{n}: each line needs string 'a', 'b' and boolean 'same_answer'")
        rows.append(r)
    if not rows:
        raise ValueError(f"{path}: no pairs")
    return rows


def embed_pairs(rows: list[dict], embed, classify) -> Pairs:
    a = embed([r["a"] for r in rows])
    b = embed([r["b"] for r in rows])
    cats = [r.get("category") or classify(v) for r, v in zip(rows, a, strict=True)]
    guard = [signature(r["a"]) == signature(r["b"]) for r in rows]
    return Pairs((a * b).sum(axis=1), np.array([bool(r["same_answer"]) for r in rows]), np.array(guard),
                 np.array(cats))


def prf(pred: np.ndarray, gold: np.ndarray) -> dict:
    tp = int((pred & gold).sum())
    fp = int((pred & ~gold).sum())
    fn = int((~pred & gold).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 1.25 * p * r / (0.25 * p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f05": round(f, 4), "n": int(len(gold))}


def predict(d: Pairs, thresholds: dict[str, float], default: float) -> np.ndarray:
    t = np.array([thresholds.get(c, default) for c in d.cats])
    return (d.sims >= t - 1e-9) & d.guard


def best_global(d: Pairs) -> float:
    scores = [prf(predict(d, {}, t), d.same)["f05"] for t in GRID]
    return float(GRID[int(np.argmax(scores))])


def tune(d: Pairs) -> tuple[dict[str, float], float]:
    """Per-category thresholds (coordinate ascent on pooled F0.5) and the best global one."""
    g = best_global(d)
    th = {c: g for c in sorted(set(d.cats))}
    best = prf(predict(d, th, g), d.same)["f05"]
    for _ in range(3):
        for c in th:
            for t in GRID:
                old, th[c] = th[c], float(t)
                score = prf(predict(d, th, g), d.same)["f05"]
                if score >= best + MIN_GAIN:
                    best = score
                else:
                    th[c] = old
    return th, g


def report(d: Pairs, per_cat: dict[str, float], glob: float) -> dict:
    pc, gl = predict(d, per_cat, glob), predict(d, {}, glob)
    out = {"overall": {"per_category": prf(pc, d.same), "global": prf(gl, d.same)}, "categories": {}}
    for c in sorted(set(d.cats)):
        m = d.cats == c
        out["categories"][c] = {"per_category": prf(pc[m], d.same[m]) | {"threshold": per_cat.get(c, glob)},
                                "global": prf(gl[m], d.same[m]) | {"threshold": glob}}
    return out


def folds_of(d: Pairs, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(d.sims), dtype=int)
    for c in set(d.cats):
        for label in (True, False):
            idx = np.where((d.cats == c) & (d.same == label))[0]
            rng.shuffle(idx)
            fold[idx] = np.arange(len(idx)) % k
    return fold


def cross_validate(d: Pairs, k: int = 5, seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Held-out predictions for both modes, over several fold shuffles (metrics on the pooled folds)."""
    pcs, gls = [], []
    for seed in seeds:
        fold = folds_of(d, k, seed)
        pc, gl = np.zeros_like(d.same), np.zeros_like(d.same)
        for f in range(k):
            train, test = fold != f, fold == f
            th, g = tune(d.subset(train))
            pc[test] = predict(d.subset(test), th, g)
            gl[test] = predict(d.subset(test), {}, g)
        pcs.append(pc)
        gls.append(gl)
    pc_all, gl_all, gold = np.concatenate(pcs), np.concatenate(gls), np.tile(d.same, len(seeds))
    cats = np.tile(d.cats, len(seeds))
    out = {"folds": k, "seeds": list(seeds),
           "overall": {"per_category": prf(pc_all, gold), "global": prf(gl_all, gold)}, "categories": {}}
    for c in sorted(set(d.cats)):
        m = cats == c
        out["categories"][c] = {"per_category": prf(pc_all[m], gold[m]), "global": prf(gl_all[m], gold[m])}
    return out


def table(title: str, rep: dict) -> str:
    lines = [title, f"{'category':<16}{'n':>5}  {'per-category P/R/F0.5 (thr)':<32}{'global P/R/F0.5 (thr)':<30}"]
    rows = list(rep["categories"].items()) + [("OVERALL", rep["overall"])]
    for name, r in rows:
        pc, gl = r["per_category"], r["global"]

        def cell(x: dict) -> str:
            thr = f" ({x['threshold']:.2f})" if "threshold" in x else ""
            return f"{x['precision']:.3f}/{x['recall']:.3f}/{x['f05']:.3f}{thr}"

        lines.append(f"{name:<16}{pc['n']:>5}  {cell(pc):<32}{cell(gl):<30}")
    return "\n".join(lines)
