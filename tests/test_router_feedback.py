"""Feedback in real Redis (own db and key prefix, cleaned up): store, score, train on it."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from deploy.cli import main
from router.artifact import load_predictors
from router.data import shipped_path, shipped_prices
from router.feedback import FeedbackError, FeedbackStore

URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def store():
    s = FeedbackStore(URL, prefix=f"test:router:{uuid.uuid4().hex[:8]}:")
    try:
        s.redis.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running at 127.0.0.1:6379 (deploy/redis.sh starts it)")
    yield s
    s.clear()
    assert not list(s.redis.scan_iter(match=f"{s.prefix}*"))


def test_feedback_round_trip(store):
    store.remember("resp-1", "acme", "live-small", "What is 2+2?")
    store.remember("resp-2", "acme", "live-big", "Name a prime.")
    store.remember("resp-3", "other", "live-big", "Unscored question")
    store.add_score("resp-1", 1.0, "acme")
    store.add_score("resp-2", 0.25, "acme")
    assert store.get("resp-1")["score"] == "1.0"
    rows = store.training_rows({"live-small": "gemma-2-9b-it"})
    assert [(r["question"], r["scores"]) for r in rows] == [
        ("What is 2+2?", {"gemma-2-9b-it": 1.0}), ("Name a prime.", {"live-big": 0.25})]


def test_bad_feedback_is_refused_and_changes_nothing(store):
    store.remember("resp-1", "acme", "m", "q")
    with pytest.raises(FeedbackError, match="unknown response"):
        store.add_score("nope", 1.0, "acme")
    with pytest.raises(FeedbackError, match="unknown response"):
        store.add_score("resp-1", 1.0, "intruder")  # another tenant cannot score it
    for bad in (1.5, -0.1, float("nan"), True, "1"):
        with pytest.raises(FeedbackError):
            store.add_score("resp-1", bad, "acme")
    assert "score" not in store.get("resp-1") and store.training_rows() == []


def test_train_includes_feedback_from_redis(store, tmp_path, capsys):
    train = json.loads(shipped_path("dcrouter_train.json").read_text())[:300]
    for i, row in enumerate(train[:30]):  # the newcomer's users liked its answers to these
        store.remember(f"r{i}", "acme", "live-new", row["question"])
        store.add_score(f"r{i}", 1.0 if i % 3 else 0.0, "acme")
    data = tmp_path / "train.json"
    data.write_text(json.dumps(train))
    prices = {m: {"input_price": p[0], "output_price": p[1]} for m, p in shipped_prices().items()}
    prices["live-new"] = {"input_price": 0.05, "output_price": 0.05}
    (tmp_path / "prices.json").write_text(json.dumps(prices))
    code = main(["router", "train", "--data", str(data), "--out", str(tmp_path / "a.npz"),
                 "--learners", "knn,logistic", "--prices", str(tmp_path / "prices.json"),
                 "--feedback-redis", URL, "--feedback-prefix", store.prefix])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "30 feedback records" in err
    assert "live-new" in load_predictors(tmp_path / "a.npz").models
    assert main(["router", "train", "--data", str(data), "--feedback-redis", "redis://127.0.0.1:1/0",
                 "--out", str(tmp_path / "b.npz")]) == 2
