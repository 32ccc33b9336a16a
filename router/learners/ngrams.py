"""Hashed character n-gram features of a question, compiled (numba).

The router decides in well under a millisecond, and a numpy version of this spent
most of that on per-call overhead: a dozen array operations per n-gram length, a
sort, run lengths, gathers. One compiled pass hashes every n-gram,
counts them in a small hash table and folds the counts into sublinear-TF x IDF values,
and for a decision multiplies them into the weights without a gathered copy: ~5x
less time per question.

Text is lower-cased with whitespace collapsed; a long question keeps its start (the
template) and its end (the actual ask). n-gram hashes are polynomial rolling hashes
over bytes (wrapping at 2**64) plus the length, mixed by an odd multiplier; the top
bits pick one of BUCKETS features.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BUCKETS = 1 << 18  # hashed n-gram features (collisions are rare at this size)
MAX_CHARS = 600  # featurize at most this much of a question
HEAD_CHARS = 300  # of which from its start
_MIX = np.uint64(0x9E3779B97F4A7C15)


def text_bytes(text: str) -> np.ndarray:
    if len(text) > MAX_CHARS:
        text = text[:HEAD_CHARS] + " " + text[len(text) - (MAX_CHARS - HEAD_CHARS):]
    norm = " " + " ".join(text.lower().split()) + " "
    return np.frombuffer(norm.encode("utf-8"), dtype=np.uint8)


@njit(cache=True, nogil=True)
def _gram_counts(b: np.ndarray, lo: int, hi: int, buckets: int, mix: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """Distinct n-gram ids of the bytes (in first-seen order) and how often each occurs,
    counted in an open-addressing table: linear time, where sorting the ids was the
    largest single cost."""
    n_bytes = b.shape[0]
    total = 0
    for n in range(lo, hi + 1):
        total += max(n_bytes - n + 1, 0)
    size = 64
    while size < 2 * total:
        size *= 2
    keys = np.full(size, -1, np.int64)
    hits = np.zeros(size, np.int64)
    slots = np.empty(total, np.int64)  # the slot of each distinct id, in first-seen order
    distinct = 0
    mask = np.uint64(buckets - 1)
    for i in range(n_bytes):
        h = np.uint64(0)
        for n in range(1, hi + 1):
            if i + n > n_bytes:
                break
            h = h * np.uint64(257) + np.uint64(b[i + n - 1])  # hash of b[i:i+n]
            if n < lo:
                continue
            key = np.int64((((h + np.uint64(n)) * mix) >> np.uint64(40)) & mask)
            slot = key & (size - 1)  # the key is already a mixed hash
            while keys[slot] != -1 and keys[slot] != key:
                slot = (slot + 1) & (size - 1)
            if keys[slot] == -1:
                keys[slot] = key
                slots[distinct] = slot
                distinct += 1
            hits[slot] += 1
    ids = np.empty(distinct, np.int64)
    counts = np.empty(distinct, np.int64)
    for k in range(distinct):
        ids[k] = keys[slots[k]]
        counts[k] = hits[slots[k]]
    return ids, counts


@njit(cache=True, nogil=True)
def _tfidf(b: np.ndarray, lo: int, hi: int, idf: np.ndarray, mix: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    uniq, counts = _gram_counts(b, lo, hi, idf.shape[0], mix)
    vals = np.empty(uniq.shape[0], np.float32)
    keep = 0
    norm2 = 0.0
    for i in range(uniq.shape[0]):
        v = (1.0 + np.log(np.float32(counts[i]))) * idf[uniq[i]]
        if v > 0:
            uniq[keep] = uniq[i]
            vals[keep] = v
            norm2 += v * v
            keep += 1
    if norm2 > 0:
        vals[:keep] /= np.float32(np.sqrt(norm2))
    return uniq[:keep], vals[:keep]


@njit(cache=True, nogil=True)
def _tfidf_dot(b: np.ndarray, lo: int, hi: int, idf: np.ndarray, w: np.ndarray, mix: np.uint64) -> np.ndarray:
    ids, vals = _tfidf(b, lo, hi, idf, mix)
    out = np.zeros(w.shape[1], np.float32)
    for k in range(ids.shape[0]):  # one pass over the rows: no gathered copy of w
        row = ids[k]
        for c in range(w.shape[1]):
            out[c] += vals[k] * w[row, c]
    return out


def distinct_grams(text: str, lo: int, hi: int) -> np.ndarray:
    """Distinct n-gram ids (lo..hi bytes) of the text."""
    return _gram_counts(text_bytes(text), lo, hi, BUCKETS, _MIX)[0]


def tfidf_row(text: str, lo: int, hi: int, idf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, values) of the text's L2-normalised sublinear-TF x IDF vector; n-grams with
    no IDF weight are dropped."""
    return _tfidf(text_bytes(text), lo, hi, idf, _MIX)


def tfidf_dot(text: str, lo: int, hi: int, idf: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The text's TF-IDF vector times w (BUCKETS x m float32): (m,) float32."""
    return _tfidf_dot(text_bytes(text), lo, hi, idf, w, _MIX)


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) before the first request needs it."""
    idf = np.ones(BUCKETS, np.float32)
    tfidf_dot("warm up", 2, 3, idf, np.zeros((BUCKETS, 1), np.float32))
    distinct_grams("warm up", 2, 3)
