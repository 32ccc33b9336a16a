"""The compiled n-gram featurizer against a plain-Python statement of the same features."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from router.learners import ngrams
from router.learners.ngrams import BUCKETS, HEAD_CHARS, MAX_CHARS, distinct_grams, tfidf_dot, tfidf_row

TEXTS = [
    "What is the capital of France?",
    "def f(x):\n    return x  ** 2   # squares",
    "Ünïcödé and emoji 🚀 count as bytes",
    "a",
    "",
    "There are 3 houses in a row. " * 40 + "Who owns the fish? (A) Alice (B) Bob",  # longer than MAX_CHARS
]


def reference_counts(text: str, lo: int, hi: int) -> Counter:
    """Hashed n-gram counts, one n-gram at a time with Python integers."""
    if len(text) > MAX_CHARS:
        text = text[:HEAD_CHARS] + " " + text[len(text) - (MAX_CHARS - HEAD_CHARS):]
    b = (" " + " ".join(text.lower().split()) + " ").encode("utf-8")
    out: Counter = Counter()
    for n in range(lo, hi + 1):
        for i in range(len(b) - n + 1):
            h = 0
            for byte in b[i:i + n]:
                h = (h * 257 + byte) % 2**64
            mixed = ((h + n) * int(ngrams._MIX)) % 2**64
            out[(mixed >> 40) & (BUCKETS - 1)] += 1
    return out


@pytest.mark.parametrize("text", TEXTS)
def test_distinct_grams_are_the_hashed_ngrams(text):
    assert sorted(distinct_grams(text, 2, 5).tolist()) == sorted(reference_counts(text, 2, 5))


@pytest.mark.parametrize("text", TEXTS)
def test_tfidf_row_and_dot_match_the_formula(text):
    rng = np.random.default_rng(0)
    idf = rng.random(BUCKETS).astype(np.float32)
    idf[rng.random(BUCKETS) < 0.3] = 0.0  # unseen n-grams carry no weight and are dropped
    w = rng.standard_normal((BUCKETS, 3)).astype(np.float32)
    want = {g: (1 + math.log(c)) * idf[g] for g, c in reference_counts(text, 2, 5).items() if idf[g] > 0}
    norm = math.sqrt(sum(v * v for v in want.values())) or 1.0
    ids, vals = tfidf_row(text, 2, 5, idf)
    got = dict(zip(ids.tolist(), vals.tolist(), strict=True))
    assert got.keys() == want.keys()
    assert all(abs(got[g] - want[g] / norm) < 1e-5 for g in want)
    expect = sum((want[g] / norm) * w[g].astype(np.float64) for g in want) if want else np.zeros(3)
    assert np.allclose(tfidf_dot(text, 2, 5, idf, w), expect, atol=1e-4)


def test_unigrams_count_when_asked_for():
    assert len(distinct_grams("abab", 1, 1)) == 3  # " ", "a", "b"
