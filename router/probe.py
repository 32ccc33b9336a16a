"""Aptitude probes: run a deployed model on a labelled probe set and score its answers.

Each probe item is {"question", "category", and "answer" (a word or number) or
"regex"}. A numeric answer must equal the last number in the reply; a word answer
must appear as a whole word (any case); a regex must match (re.search). The scores
become training records for the model's router_name, with the reply's length in
tokens, so a new model joins the router without data from elsewhere.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from router.data import DataError

SYSTEM = "Answer the question correctly and briefly."
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def load_probe_set(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such probe set")
    items = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}: line {n} is not JSON") from None
        if not isinstance(item, dict) or not isinstance(item.get("question"), str) \
                or not (isinstance(item.get("answer"), str) or isinstance(item.get("regex"), str)):
            raise DataError(f"{path}: line {n} needs 'question' and 'answer' or 'regex' strings")
        if "regex" in item:
            try:
                re.compile(item["regex"])
            except re.error:
                raise DataError(f"{path}: line {n} has an invalid regex") from None
        items.append(item)
    if not items:
        raise DataError(f"{path}: empty probe set")
    return items


def score_answer(item: dict, reply: str) -> float:
    reply = reply.strip()
    if "regex" in item:
        return float(re.search(item["regex"], reply) is not None)
    answer = item["answer"].strip()
    if NUMBER.fullmatch(answer):
        numbers = NUMBER.findall(reply.replace(",", ""))
        return float(bool(numbers) and float(numbers[-1]) == float(answer))
    return float(re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", reply, re.IGNORECASE) is not None)


def run_probe(items: list[dict], model: str, url: str, api_key: str | None, router_name: str,
              max_tokens: int = 128, timeout_s: float = 120.0) -> list[dict]:
    """Ask the model each question through the OpenAI-compatible gateway; one record per item."""
    import openai

    client = openai.OpenAI(base_url=url, api_key=api_key or "none", timeout=timeout_s, max_retries=1)
    rows = []
    for i, item in enumerate(items, 1):
        resp = client.chat.completions.create(
            model=model, temperature=0.0, max_tokens=max_tokens,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": item["question"]}])
        reply = resp.choices[0].message.content or ""
        score = score_answer(item, reply)
        row = {"question": item["question"], "scores": {router_name: score}}
        if resp.usage is not None:
            row["output_tokens"] = {router_name: int(resp.usage.completion_tokens)}
        if item.get("category"):
            row["category"] = item["category"]
        rows.append(row)
        print(f"router probe: {i}/{len(items)} score={score:.0f}", file=sys.stderr)
    return rows


def append_rows(path: str | Path, rows: list[dict]) -> None:
    with Path(path).open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
