"""Category classifier on the query embedding: multinomial logistic regression.

Trained with plain numpy (full-batch gradient descent, L2), saved as .npz
(labels, weights, bias). Ships trained on cache/data/categories.jsonl; a config
may point at its own examples (JSONL of {"text", "category"}) to train at start-up.
Rebuild the shipped one with `python -m cache.classifier`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

DATA = "data"
SHIPPED = "classifier.npz"
EXAMPLES = "categories.jsonl"


class CategoryClassifier:
    def __init__(self, labels: list[str], weights: np.ndarray, bias: np.ndarray) -> None:
        self.labels = list(labels)
        self.w = weights.astype(np.float32)  # (dim, classes)
        self.b = bias.astype(np.float32)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        z = np.atleast_2d(embeddings) @ self.w + self.b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, embedding: np.ndarray) -> str:
        return self.labels[int(np.argmax(np.atleast_2d(embedding) @ self.w + self.b))]

    def predict_many(self, embeddings: np.ndarray) -> list[str]:
        return [self.labels[i] for i in np.argmax(embeddings @ self.w + self.b, axis=1)]

    @classmethod
    def train(cls, x: np.ndarray, y: list[str], l2: float = 1e-3, steps: int = 400,
              lr: float = 2.0) -> CategoryClassifier:
        labels = sorted(set(y))
        idx = np.array([labels.index(v) for v in y])
        onehot = np.eye(len(labels), dtype=np.float32)[idx]
        w = np.zeros((x.shape[1], len(labels)), dtype=np.float32)
        b = np.zeros(len(labels), dtype=np.float32)
        clf = cls(labels, w, b)
        for _ in range(steps):
            grad = (clf.probabilities(x) - onehot) / len(x)
            clf.w -= lr * (x.T @ grad + l2 * clf.w)
            clf.b -= lr * grad.sum(axis=0)
        return clf

    def save(self, path: str | Path) -> None:
        np.savez(path, labels=np.array(self.labels), weights=self.w, bias=self.b)

    @classmethod
    def load(cls, path: str | Path) -> CategoryClassifier:
        with np.load(path) as f:
            return cls([str(s) for s in f["labels"]], f["weights"], f["bias"])


def read_examples(path: str | Path) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r["text"] for r in rows], [r["category"] for r in rows]


def train_from_file(path: str | Path, embed) -> CategoryClassifier:
    texts, labels = read_examples(path)
    return CategoryClassifier.train(embed(texts), labels)


def load_classifier(source: str | None, embed=None) -> CategoryClassifier:
    """The shipped classifier, a saved .npz, or one trained now on a JSONL of examples."""
    if source is None:
        with resources.as_file(resources.files("cache").joinpath(DATA, SHIPPED)) as p:
            return CategoryClassifier.load(p)
    if source.endswith(".npz"):
        return CategoryClassifier.load(source)
    if embed is None:
        from cache.embedder import shared_embedder

        embed = shared_embedder().embed
    return train_from_file(source, embed)


def _main() -> None:
    from cache.embedder import shared_embedder

    base = Path(__file__).parent / DATA
    texts, labels = read_examples(base / EXAMPLES)
    x = shared_embedder().embed(texts)
    # Held-out accuracy first (every 5th example), then train on everything.
    test = np.arange(len(texts)) % 5 == 0
    clf = CategoryClassifier.train(x[~test], [lab for lab, t in zip(labels, test, strict=True) if not t])
    acc = np.mean([p == lab for p, lab, t in zip(clf.predict_many(x), labels, test, strict=True) if t])
    print(f"held-out accuracy (1 in 5 examples): {acc:.3f}")
    CategoryClassifier.train(x, labels).save(base / SHIPPED)
    print(f"saved {base / SHIPPED} ({len(texts)} examples, labels {sorted(set(labels))})")


if __name__ == "__main__":
    _main()
