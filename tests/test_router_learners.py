"""Learners on real data (shipped embeddings cache): they beat random routing on held-out
questions, handle partially scored models, and survive an artifact round trip."""

from __future__ import annotations

import numpy as np
import pytest

from router.artifact import ArtifactError, Predictors, load_predictors
from router.data import load_records, records_from_rows, shipped_path, shipped_prices
from router.embeddings import embed_questions
from router.learners import LEARNERS, make_learner
from router.lengths import LengthModel
from router.policy import RoutePolicy
from router.router import Router
from router.train import train

FAST = {"mf": {"epochs": 15}, "mlp": {"epochs": 15}, "logistic": {"epochs": 15}, "knn": {},
        "text": {}, "blend": {}}


@pytest.fixture(scope="module")
def data():
    test = load_records(shipped_path("dcrouter_test.json"))
    tr = load_records(shipped_path("dcrouter_train.json")).without(set(test.questions))
    tr = tr.subset(np.arange(0, len(tr), 3))  # a third: enough signal, quick
    return tr, embed_questions(tr.questions), test, embed_questions(test.questions)


@pytest.mark.parametrize("name", LEARNERS)
def test_learner_beats_random_routing_on_held_out_questions(data, name):
    tr, x, te, xte = data
    learner = make_learner(name, **FAST[name]).fit(x, tr.scores, tr.mask, texts=tr.questions)
    pred = learner.predict(xte, texts=te.questions)
    assert pred.shape == te.scores.shape and pred.min() >= 0 and pred.max() <= 1
    routed = te.scores[np.arange(len(te)), pred.argmax(1)].mean()
    random = te.scores.mean()
    assert routed > random + 0.1
    assert routed > te.scores.mean(0)[te.models.index("gemma-2-9b-it")]  # beats the cheapest model too


def test_a_partially_scored_new_model_is_learned_from_its_rows(data):
    tr, x, te, xte = data
    j = tr.models.index("codegemma-7b")
    scores = np.hstack([tr.scores, tr.scores[:, j:j + 1]])
    mask = np.hstack([tr.mask, np.zeros((len(tr), 1), bool)])
    mask[:400, -1] = True  # the newcomer was probed on 400 questions only
    pred = make_learner("mf", epochs=30).fit(x, scores, mask).predict(xte)
    # its predictions track the held-out truth of the model it copies (0 would be a constant)
    assert np.corrcoef(te.scores[:, te.models.index("codegemma-7b")], pred[:, -1])[0, 1] > 0.1
    knn = make_learner("knn").fit(x, scores, mask).predict(xte)
    assert np.isfinite(knn).all()


def test_artifact_round_trip_predicts_the_same(data, tmp_path):
    tr, x, te, xte = data
    small = tr.subset(np.arange(600))
    pred = train(small, shipped_prices(), embed_questions, learners=("knn", "logistic", "text", "blend"))
    path = pred.save(tmp_path / "a.npz")
    back = load_predictors(path)
    assert back.models == pred.models and back.chosen == pred.chosen
    assert set(back.learners) == {"knn", "logistic", "text", "blend"}
    q = te.questions[:20]
    for name in back.learners:
        # the text weights are stored as float16: equal to a few 1e-3
        assert np.allclose(back.learners[name].predict(xte[:20], texts=q), pred.learners[name].predict(xte[:20], texts=q),
                           atol=5e-3), name
    assert back.info[back.chosen]["lambda_at_best"] == pred.info[pred.chosen]["lambda_at_best"]
    router = Router.load(path, {m: shipped_prices()[m] for m in back.models})
    assert router.choose(xte[0], None, 50, None, RoutePolicy()).model in back.models


def test_text_learner_reads_the_question_text(data):
    tr, x, te, xte = data
    text = make_learner("text").fit(x, tr.scores, tr.mask, texts=tr.questions)
    with_text = text.predict(xte, texts=te.questions)
    without = text.predict(xte)  # the embedding half alone
    assert np.abs(with_text - without).mean() > 0.01
    # the surface form carries signal: the text helps route held-out questions
    rows = np.arange(len(te))
    assert te.scores[rows, with_text.argmax(1)].mean() > te.scores[rows, without.argmax(1)].mean()
    with pytest.raises(ValueError, match="text"):
        make_learner("text").fit(x, tr.scores, tr.mask)


def test_blend_is_the_mean_of_its_parts(data):
    tr, x, te, xte = data
    blend = make_learner("blend").fit(x, tr.scores, tr.mask, texts=tr.questions)
    knn = make_learner("knn").fit(x, tr.scores, tr.mask)
    text = make_learner("text").fit(x, tr.scores, tr.mask, texts=tr.questions)
    q = te.questions[:30]
    assert np.allclose(blend.predict(xte[:30], texts=q), (knn.predict(xte[:30]) + text.predict(xte[:30], texts=q)) / 2,
                       atol=1e-5)


def test_knn_searches_principal_axes_and_its_hnsw_path_finds_the_same_neighbours(data, monkeypatch):
    from router.learners import knn as knn_mod

    tr, x, te, xte = data
    exact = make_learner("knn", k=32).fit(x, tr.scores, tr.mask)
    assert exact.proj.shape == (x.shape[1], 64) and exact._index is None
    full = make_learner("knn", k=32, dims=0).fit(x, tr.scores, tr.mask)
    assert full.proj is None
    # 64 principal axes keep most of the neighbourhoods of the full 384-dim search
    a, b = exact._neighbours(exact._project(xte[:50]))[0], full._neighbours(xte[:50])[0]
    assert np.mean([len(set(r) & set(s)) / 32 for r, s in zip(a, b, strict=True)]) > 0.6
    monkeypatch.setattr(knn_mod, "HNSW_ABOVE", 100)
    graph = make_learner("knn", k=32).fit(x, tr.scores, tr.mask)
    assert graph._index is not None
    diff = np.abs(graph.predict(xte) - exact.predict(xte))
    assert diff.mean() < 0.005 and np.percentile(diff, 99) < 0.05  # approximate, nearly always the same


def test_missing_or_corrupt_artifacts_fail_at_load(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_predictors(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(ArtifactError, match="corrupt"):
        load_predictors(junk)
    good = Predictors(["a"], {"logistic": make_learner("logistic")}, "logistic", LengthModel())
    good.learners["logistic"].layers = [(np.zeros((384, 1), np.float32), np.zeros(1, np.float32))]
    path = good.save(tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ArtifactError):
        load_predictors(truncated)
    no_meta = tmp_path / "nometa.npz"
    np.savez(no_meta, x=np.zeros(3))
    with pytest.raises(ArtifactError):
        load_predictors(no_meta)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, __meta__=np.array('{"format": "something-else"}'))
    with pytest.raises(ArtifactError, match="not a turnout-router"):
        load_predictors(wrong)
    assert load_predictors(path).models == ["a"]


def test_shipped_artifact_loads_and_covers_the_nine_models():
    pred = load_predictors()
    assert len(pred.models) == 9 and pred.chosen in LEARNERS
    assert pred.info[pred.chosen]["lambda_at_best"] is not None


def test_length_model_fits_recorded_output_tokens():
    rows = [{"question": "q" * (40 * (i + 1)), "scores": {"m": 1.0, "n": 0.0},
             "output_tokens": {"m": 10 * (i + 1)}} for i in range(10)]
    rec = records_from_rows(rows)
    lm = LengthModel(default_tokens=256).fit(rec.models, rec.prompt_tokens(), rec.output_tokens)
    assert lm.source("m") == "fitted" and lm.source("n") == "pooled"
    short, long = lm.predict(["m"], 10.0)[0], lm.predict(["m"], 100.0)[0]
    assert short < long < 256
    assert LengthModel(default_tokens=200).predict(["x"], 50.0)[0] == 200
    assert LengthModel.from_json(lm.to_json()).predict(["m", "n"], 30.0).tolist() == lm.predict(["m", "n"], 30.0).tolist()
