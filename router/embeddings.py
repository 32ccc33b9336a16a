"""Question embeddings for training and evaluation, with a shipped cache.

Embedding ~6,000 questions with all-MiniLM-L6-v2 takes minutes on 2 cores, so the
embeddings of the shipped data live in router/data/embeddings.npz (float16, keyed
by a hash of the question). Questions not in the cache are embedded on the spot.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from router.data import shipped_path

CACHE_NAME = "embeddings.npz"


def question_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_cache(path: Path | None = None) -> dict[str, np.ndarray]:
    path = path or shipped_path(CACHE_NAME)
    if not path.is_file():
        return {}
    with np.load(path) as z:
        keys, vecs = z["keys"], z["vecs"]
    return {str(k): v for k, v in zip(keys, vecs, strict=True)}


def save_cache(cache: dict[str, np.ndarray], path: Path) -> None:
    keys = np.array(sorted(cache))
    vecs = np.stack([cache[k] for k in keys]).astype(np.float16)
    np.savez_compressed(path, keys=keys, vecs=vecs)


def _embed_missing(texts: list[str], batch: int = 256) -> np.ndarray:
    from cache.embedder import shared_embedder

    emb = shared_embedder()
    out = []
    for i in range(0, len(texts), batch):
        out.append(emb.embed(texts[i:i + batch]))
        print(f"router: embedded {min(i + batch, len(texts))}/{len(texts)} questions", file=sys.stderr)
    return np.concatenate(out)


def embed_questions(questions: list[str], cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """(n, 384) float32 unit vectors; uses and fills `cache` (default: the shipped one)."""
    cache = load_cache() if cache is None else cache
    keys = [question_key(q) for q in questions]
    missing = sorted({k: q for k, q in zip(keys, questions, strict=True) if k not in cache}.items())
    if missing:
        vecs = _embed_missing([q for _, q in missing])
        cache.update({k: v for (k, _), v in zip(missing, vecs, strict=True)})
    out = np.stack([cache[k] for k in keys]).astype(np.float32)
    # float16 storage loses a little norm; renormalise so dot products stay cosines.
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)


def build_shipped_cache(paths: list[Path], out: Path) -> int:
    """Embed every question of the given record files into `out`; returns the count."""
    from router.data import load_records

    cache = load_cache(out)
    for p in paths:
        embed_questions(load_records(p).questions, cache)
    save_cache(cache, out)
    return len(cache)
