"""Training records for the router: a question and a quality score per model.

Format on disk: a JSON list or JSONL of {"question": str, "scores": {model: float}},
optionally with "output_tokens": {model: int} (probe runs record them) and
"category": str. Records may score only some models (a probed model only has
scores on the probe set), so scores travel as a matrix plus a mask.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

# Prompt tokens are estimated from characters when no tokenizer is at hand:
# ~4 characters per token is the usual figure for English BPE vocabularies.
CHARS_PER_TOKEN = 4.0


class DataError(ValueError):
    """Bad training data or price table; str() is one line."""


def estimate_prompt_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


@dataclass
class Records:
    questions: list[str]
    models: list[str]
    scores: np.ndarray  # (n, m) float32, 0 where missing
    mask: np.ndarray  # (n, m) bool, True where a score exists
    output_tokens: np.ndarray  # (n, m) float32, nan where unknown
    categories: list[str | None]

    def __len__(self) -> int:
        return len(self.questions)

    def subset(self, idx: np.ndarray) -> Records:
        return Records(
            [self.questions[i] for i in idx], list(self.models), self.scores[idx], self.mask[idx],
            self.output_tokens[idx], [self.categories[i] for i in idx],
        )

    def without(self, questions: set[str]) -> Records:
        """These records minus any whose question is in `questions` (e.g. the test split)."""
        keep = np.array([i for i, q in enumerate(self.questions) if q not in questions], dtype=int)
        return self.subset(keep)

    def prompt_tokens(self) -> np.ndarray:
        return np.array([estimate_prompt_tokens(q) for q in self.questions], dtype=np.float32)


def shipped_path(name: str) -> Path:
    return Path(str(resources.files("router").joinpath("data", name)))


def read_rows(path: Path) -> list:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text = path.read_text()
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        pass
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise DataError(f"{path}: line {n} is neither JSON nor JSONL") from None
    return rows


def _check_row(row: object, where: str) -> dict:
    if not isinstance(row, dict) or not isinstance(row.get("question"), str):
        raise DataError(f"{where}: each record needs a 'question' string")
    scores = row.get("scores")
    if not isinstance(scores, dict) or not scores:
        raise DataError(f"{where}: each record needs a non-empty 'scores' mapping")
    for m, s in scores.items():
        if not isinstance(s, (int, float)) or not 0.0 <= float(s) <= 1.0:
            raise DataError(f"{where}: score for {m!r} must be a number in [0, 1]")
    return row


def records_from_rows(rows: list, source: str = "records") -> Records:
    """Merge rows by question: a probe run appends rows for questions already present."""
    if not rows:
        raise DataError(f"{source}: no records")
    merged: dict[str, dict] = {}
    for i, row in enumerate(rows):
        row = _check_row(row, f"{source}: record {i}")
        slot = merged.setdefault(row["question"], {"scores": {}, "output_tokens": {}, "category": None})
        slot["scores"].update({m: float(s) for m, s in row["scores"].items()})
        slot["output_tokens"].update(row.get("output_tokens") or {})
        slot["category"] = row.get("category") or slot["category"]
    models = sorted({m for v in merged.values() for m in v["scores"]})
    col = {m: j for j, m in enumerate(models)}
    n, k = len(merged), len(models)
    scores = np.zeros((n, k), np.float32)
    mask = np.zeros((n, k), bool)
    out = np.full((n, k), np.nan, np.float32)
    for i, v in enumerate(merged.values()):
        for m, s in v["scores"].items():
            scores[i, col[m]], mask[i, col[m]] = s, True
        for m, t in v["output_tokens"].items():
            if m in col and isinstance(t, (int, float)):
                out[i, col[m]] = t
    return Records(list(merged), models, scores, mask, out, [v["category"] for v in merged.values()])


def load_records(path: str | Path) -> Records:
    return records_from_rows(read_rows(Path(path)), str(path))


def load_prices(path: str | Path) -> dict[str, tuple[float, float]]:
    """Price table: {model: {"input_price": USD/M, "output_price": USD/M}} (the candidates
    file's shape) or {model: [in, out]}."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such price file")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError:
        raise DataError(f"{path}: price file is not JSON") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: price file must map model -> prices")
    prices = {}
    for m, v in data.items():
        try:
            pin, pout = (v["input_price"], v["output_price"]) if isinstance(v, dict) else v
            prices[m] = (float(pin), float(pout))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: prices for {m!r} need input_price and output_price") from None
    return prices


def shipped_prices() -> dict[str, tuple[float, float]]:
    return load_prices(shipped_path("dcrouter_llm_candidates.json"))


def fold_indices(n: int, folds: int, seed: int = 0) -> list[np.ndarray]:
    """A seeded partition of range(n) into `folds` parts of (nearly) equal size."""
    if not 2 <= folds <= n:
        raise DataError(f"need 2 <= folds <= {n} records, got {folds}")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[f::folds]) for f in range(folds)]
