"""`turnout router train|eval|probe`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from router.data import DataError


def _fail(msg: str) -> int:
    print(f"turnout router: {msg}", file=sys.stderr)
    return 2


def _prices(path: str | None) -> dict[str, tuple[float, float]]:
    from router.data import load_prices, shipped_prices

    return load_prices(path) if path else shipped_prices()


def _train(args: argparse.Namespace) -> int:
    from router.artifact import ArtifactError
    from router.data import load_records, read_rows, records_from_rows, shipped_path
    from router.embeddings import embed_questions
    from router.learners import LEARNERS
    from router.train import train

    try:
        learners = [n.strip() for n in (args.learners or ",".join(LEARNERS)).split(",") if n.strip()]
        bad = [n for n in learners if n not in LEARNERS]
        if bad or not learners:
            return _fail(f"--learners: unknown learner {bad[0] if bad else '(none)'!r}; known: {', '.join(LEARNERS)}")
        rows = []
        for path in args.data or [str(shipped_path("dcrouter_train.json"))]:
            rows.extend(read_rows(Path(path)))
        if args.feedback_redis:
            from router.feedback import FeedbackStore

            fb = FeedbackStore(args.feedback_redis, args.feedback_prefix).training_rows()
            print(f"router train: {len(fb)} feedback records from Redis", file=sys.stderr)
            rows.extend(fb)
        records = records_from_rows(rows, "training data")
        if args.exclude != "none":
            exclude = args.exclude or str(shipped_path("dcrouter_test.json"))
            dropped = len(records)
            records = records.without(set(load_records(exclude).questions))
            print(f"router train: dropped {dropped - len(records)} records whose question is in {Path(exclude).name}",
                  file=sys.stderr)
        predictors = train(records, _prices(args.prices), embed_questions, learners=learners, seed=args.seed,
                           default_output_tokens=args.output_tokens)
    except (DataError, ArtifactError) as e:
        return _fail(str(e))
    except Exception as e:  # redis down, bad URL: one line, not a traceback
        if type(e).__module__.startswith("redis"):
            return _fail(f"--feedback-redis: {e}")
        raise
    out = predictors.save(args.out)
    print(f"router train: wrote {out} (chosen learner: {predictors.chosen})", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from router.artifact import ArtifactError, load_predictors
    from router.data import load_records, shipped_path
    from router.embeddings import embed_questions
    from router.report import run_eval

    try:
        predictors = load_predictors(args.artifact)
        records = load_records(args.data or shipped_path("dcrouter_test.json"))
        text, report = run_eval(predictors, records, _prices(args.prices), embed_questions)
    except (DataError, ArtifactError) as e:
        return _fail(str(e))
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from router.probe import append_rows, load_probe_set, run_probe

    if not args.url.startswith(("http://", "https://")):
        return _fail(f"--url: {args.url!r} is not an http(s) URL")
    try:
        items = load_probe_set(args.set)
    except DataError as e:
        return _fail(str(e))
    try:
        rows = run_probe(items, args.model, args.url, args.api_key, args.router_name or args.model,
                         max_tokens=args.max_tokens)
    except Exception as e:  # the gateway refused or is down: say so in one line
        if type(e).__module__.startswith(("openai", "httpx")):
            print(f"turnout router probe: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        raise
    append_rows(args.out, rows)
    mean = sum(next(iter(r["scores"].values())) for r in rows) / len(rows)
    print(f"{args.model}: mean probe score {mean:.3f} over {len(rows)} questions; appended to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("router", help="train, evaluate and probe the learned router")
    rs = p.add_subparsers(dest="router_cmd", required=True)

    t = rs.add_parser("train", help="fit the quality predictors and write an artifact")
    t.add_argument("--data", action="append", help="JSON/JSONL records (repeatable; default: shipped train split)")
    t.add_argument("--out", default="router_artifact.npz", help="artifact path to write")
    t.add_argument("--prices", help="price table JSON (default: the shipped candidates file)")
    t.add_argument("--exclude", help="drop records whose question is in this file (default: shipped test "
                                     "split; 'none' keeps all)")
    t.add_argument("--learners", help="comma-separated (default: all)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--output-tokens", type=float, default=256.0, help="output length when data has none")
    t.add_argument("--feedback-redis", help="redis://... to include stored user feedback")
    t.add_argument("--feedback-prefix", default="turnout:router:feedback:")
    t.set_defaults(func=_train)

    e = rs.add_parser("eval", help="evaluate an artifact (default: shipped artifact on the shipped test split)")
    e.add_argument("--data", help="JSON/JSONL records to evaluate on")
    e.add_argument("--artifact", help="artifact path (default: shipped)")
    e.add_argument("--prices", help="price table JSON (default: the shipped candidates file)")
    e.add_argument("--json", help="write the report as JSON here")
    e.set_defaults(func=_eval)

    pr = rs.add_parser("probe", help="score a deployed model on a probe set and append training records")
    pr.add_argument("--model", required=True, help="model name at the gateway")
    pr.add_argument("--set", required=True, help="probe set JSONL (router/data/probe_set.jsonl ships)")
    pr.add_argument("--url", required=True, help="OpenAI-compatible base URL, e.g. http://host:port/v1")
    pr.add_argument("--api-key")
    pr.add_argument("--router-name", help="score column name (default: --model)")
    pr.add_argument("--out", default="probe_scores.jsonl", help="training data file to append to")
    pr.add_argument("--max-tokens", type=int, default=128)
    pr.set_defaults(func=_probe)
