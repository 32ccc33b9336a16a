"""Do a small language model's hidden states route better than MiniLM + n-grams?

The router's quality predictors read the query's MiniLM embedding and its character
n-grams. This study adds a third view: the hidden states of a small causal LM that
runs offline here (a Turnout model pack: SmolLM2-135M-Instruct by default, or
gemma3-270m), taken at the question's last token in layers L/2, 3L/4 and L, each
standardised and projected to 128 principal axes fitted on the training questions.

Two arms, same folds, same data, same learners as `turnout router train`'s blend:
- baseline: the shipped recipe, mean of `text` (n-grams + MiniLM) and `knn` (MiniLM);
- with LM: mean of `text` (n-grams + MiniLM + LM states) and `knn` (LM states).
Each is scored by 5-fold out-of-fold AIQ on the training split (test questions
removed) and on the shipped test split: AIQ, the cost of reaching 100% / 95% of the
best single model's quality (as a share of its cost) and the best quality within its
cost (issue #6's 0.60 target). It also times the LM's forward pass per question and
plots both arms' cost-quality curves on the test split (SVG).

    python -m bench.router_features [--quick] [--json PATH] [--pack NAME] [--plot PATH]

--quick: 1,200 training questions, questions cut to 48 tokens (about 2.5 minutes).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from bench.common import parser, progress, table, write_json
from bench.svg import line_chart
from router import evaluate
from router.data import Records, fold_indices, load_records, shipped_path, shipped_prices
from router.embeddings import embed_questions
from router.learners import make_learner
from router.lengths import LengthModel
from router.train import cost_matrix, out_of_fold

PCA_DIM = 128
PLOT = "bench/plots/router_features.svg"


def lm_states(pack: str, texts: list[str], max_tokens: int) -> tuple[np.ndarray, float]:
    """Last-token hidden states at layers L/2, 3L/4 and L, (questions, layers, hidden); and the p50 ms
    of one question's forward pass (batched, so an underestimate of a lone request)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from replicas.packs import resolve

    torch.set_num_threads(os.cpu_count() or 1)
    folder = str(resolve(pack, progress))
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    n_layers = model.config.num_hidden_layers
    layers = sorted({n_layers // 2, (3 * n_layers) // 4, n_layers})
    ids = [tok(t)["input_ids"] for t in texts]
    # long questions keep their head (the task) and tail (what is asked)
    ids = [i if len(i) <= max_tokens else i[: max_tokens // 2] + i[-(max_tokens // 2):] for i in ids]
    order = np.argsort([len(i) for i in ids])
    out = np.zeros((len(texts), len(layers), model.config.hidden_size), np.float32)
    per_question, batch, t0 = [], 16, time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(order), batch):
            idx = order[b:b + batch]
            width = max(len(ids[i]) for i in idx)
            inp = torch.tensor([ids[i] + [0] * (width - len(ids[i])) for i in idx])
            att = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in idx])
            start = time.perf_counter()
            states = model.model(input_ids=inp, attention_mask=att, output_hidden_states=True).hidden_states
            per_question.append((time.perf_counter() - start) / len(idx))
            last = att.sum(1) - 1
            rows = torch.arange(len(idx))
            out[idx] = torch.stack([states[k][rows, last] for k in layers], 1).numpy()
            if (b // batch) % 40 == 0:
                progress(f"{pack}: {min(b + batch, len(order))}/{len(order)} questions, "
                         f"{time.perf_counter() - t0:.0f} s")
    return out, 1000 * float(np.median(per_question))


def project(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: standardise, keep PCA_DIM principal axes, scale to unit mean norm."""
    from sklearn.decomposition import PCA

    layers = train.shape[1]
    parts_tr, parts_te = [], []
    for k in range(layers):
        a, b = train[:, k], test[:, k]
        mu, sd = a.mean(0), a.std(0) + 1e-6
        pca = PCA(PCA_DIM, random_state=0).fit((a - mu) / sd)
        za, zb = pca.transform((a - mu) / sd), pca.transform((b - mu) / sd)
        scale = np.linalg.norm(za, axis=1).mean() * np.sqrt(layers)
        parts_tr.append(za / scale)
        parts_te.append(zb / scale)
    return np.hstack(parts_tr).astype(np.float32), np.hstack(parts_te).astype(np.float32)


def fit_predict(name: str, params: dict, x_tr, x_te, train: Records, test_texts: list[str], folds):
    oof = out_of_fold(name, params, x_tr, train, folds)
    learner = make_learner(name, **params).fit(x_tr, train.scores, train.mask, texts=train.questions)
    return oof, learner.predict(x_te, texts=test_texts)


def scores(pred, true, cost, models) -> tuple[dict, np.ndarray]:
    ref = evaluate.reference(models, true, cost)
    curve = evaluate.sweep(pred, true, cost)
    row = evaluate.curve_row("", curve[:, [2, 1]], (0.0, 0.0), ref)
    return {"aiq": row.aiq, "cost_ratio_at_best": row.cost_ratio_at_best, "cost_ratio_at_95": row.cost_ratio_at_95,
            "quality_at_best_cost": row.quality_at_best_cost}, curve


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--pack", default="smollm2-135m-instruct", help="model pack whose hidden states are read")
    ap.add_argument("--plot", default=PLOT, help=f"SVG of the cost-quality curves (default {PLOT})")
    args = ap.parse_args(argv)
    test = load_records(shipped_path("dcrouter_test.json"))
    train = load_records(shipped_path("dcrouter_train.json")).without(set(test.questions))
    if args.quick:
        train = train.subset(np.random.default_rng(0).permutation(len(train))[:1200])
    max_tokens = 48 if args.quick else 256
    cols = [test.models.index(m) for m in train.models]
    test_true = test.scores[:, cols]
    prices = shipped_prices()
    lengths = LengthModel(default_tokens=256.0).fit(train.models, train.prompt_tokens(), train.output_tokens)
    cost_tr, cost_te = cost_matrix(train, prices, lengths), cost_matrix(test, prices, lengths)[:, cols]
    emb_tr, emb_te = embed_questions(train.questions), embed_questions(test.questions)
    raw, ms = lm_states(args.pack, train.questions + test.questions, max_tokens)
    lm_tr, lm_te = project(raw[:len(train)], raw[len(train):])
    folds = fold_indices(len(train), 5, 0)
    arms = {
        "baseline (MiniLM + n-grams)": [("text", {}, emb_tr, emb_te), ("knn", {"k": 128}, emb_tr, emb_te)],
        f"with {args.pack.split('-')[0]} states": [("text", {}, np.hstack([emb_tr, lm_tr]), np.hstack([emb_te, lm_te])),
                                     ("knn", {"k": 128}, lm_tr, lm_te)],
    }
    results, curves = {}, {}
    for arm, parts in arms.items():
        progress(f"fitting {arm}")
        preds = [fit_predict(n, p, a, b, train, test.questions, folds) for n, p, a, b in parts]
        oof = np.mean([p[0] for p in preds], 0)
        on_test = np.mean([p[1] for p in preds], 0)
        oof_scores, _ = scores(oof, train.scores, cost_tr, train.models)
        test_scores, curves[arm] = scores(on_test, test_true, cost_te, train.models)
        results[arm] = {"oof_aiq": oof_scores["aiq"], "oof_quality_at_best_cost": oof_scores["quality_at_best_cost"],
                        **test_scores}
    base, lm = results.values()
    head = ["arm", "OOF AIQ", "OOF q@c_best", "test AIQ", "c@100%", "c@95%", "q@c_best"]
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    rows = [[arm, r["oof_aiq"], r["oof_quality_at_best_cost"], r["aiq"], pct(r["cost_ratio_at_best"]),
             pct(r["cost_ratio_at_95"]), r["quality_at_best_cost"]] for arm, r in results.items()]
    print(f"{len(train)} training questions, 500 test questions, LM input cut to {max_tokens} tokens")
    print(table(head, rows))
    print(f"ratio with-LM / baseline: OOF AIQ {lm['oof_aiq'] / base['oof_aiq']:.3f}, test AIQ "
          f"{lm['aiq'] / base['aiq']:.3f}; {args.pack} forward pass: {ms:.1f} ms per question (p50, batched, "
          f"{os.cpu_count()} threads)")
    ref = evaluate.reference(train.models, test_true, cost_te)
    line_chart(args.plot, "Routing on the dcrouter test split: cost against quality",
               "mean cost, USD per 1,000 requests", "mean quality",
               {arm: [(c, q) for _, q, c in curve] for arm, curve in curves.items()},
               {"issue #6 target 0.60": 0.60}, {f"{ref.best_model} (best single)": (ref.best[0], ref.best[1])})
    progress(f"wrote {args.plot}")
    write_json(args.json, {"pack": args.pack, "train_questions": len(train), "max_tokens": max_tokens,
                           "lm_ms_per_question": ms, "baseline": base, "with_lm": lm,
                           "oof_aiq_ratio": lm["oof_aiq"] / base["oof_aiq"], "test_aiq_ratio": lm["aiq"] / base["aiq"],
                           "test_curves": {arm: curve.tolist() for arm, curve in curves.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
