"""The real embedder: classifier labels, the micro-batcher, and the eval/tune CLI."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from cache.batcher import EmbedBatcher
from cache.classifier import load_classifier
from cache.cli import main
from cache.embedder import DIM, shared_embedder


@pytest.fixture(scope="module")
def emb():
    return shared_embedder()


def test_shipped_classifier_labels_queries(emb):
    clf = load_classifier(None)
    queries = {"How do I reverse a linked list in C?": "code", "What is the integral of x squared?": "math",
               "Who wrote War and Peace?": "knowledge", "Tell me a joke about penguins": "chat",
               "What's the weather in Madrid right now?": "time-sensitive"}
    got = clf.predict_many(emb.embed(list(queries)))
    assert got == list(queries.values())


async def test_batcher_groups_concurrent_requests(emb):
    b = EmbedBatcher(emb)
    texts = [f"question number {i}" for i in range(12)]
    vecs = await asyncio.gather(*(b.embed(t) for t in texts))
    assert b.items == 12 and b.batches < 12
    assert vecs[3].shape == (DIM,) and np.allclose(vecs[3], emb.embed_one(texts[3]), atol=1e-5)
    await b.close()


def test_cli_tune_and_eval(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [("How do I sort a list in Python?", "Sort a Python list", True, "code"),
            ("How do I sort a list in Python?", "How do I sort a list in Java?", False, "code"),
            ("Tell me a joke", "Say something funny", True, "chat"),
            ("Tell me a joke", "Tell me a sad story", False, "chat")]
    pairs.write_text("\n".join(json.dumps({"a": a, "b": b, "same_answer": s, "category": c})
                               for a, b, s, c in rows))
    out = tmp_path / "th.json"
    assert main(["cache", "tune", "--pairs", str(pairs), "--out", str(out)]) == 0
    assert set(json.loads(out.read_text())["thresholds"]) == {"code", "chat"}
    js = tmp_path / "eval.json"
    assert main(["cache", "eval", "--pairs", str(pairs), "--json", str(js), "--folds", "0",
                 "--thresholds", str(out)]) == 0
    res = json.loads(js.read_text())["configured"]
    assert {"per_category", "global"} <= set(res["overall"]) and "f05" in res["overall"]["global"]
    assert main(["cache", "eval", "--pairs", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
