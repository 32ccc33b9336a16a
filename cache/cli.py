"""`turnout cache eval|tune`: threshold evaluation and tuning on labelled query pairs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="semantic cache tools")
    cs = p.add_subparsers(dest="cache_cmd", required=True)
    ev = cs.add_parser("eval", help="per-category vs best global threshold on labelled pairs")
    ev.add_argument("--pairs", required=True, help="JSONL: a, b, same_answer, optional category")
    ev.add_argument("--json", dest="json_path", help="write the results here")
    ev.add_argument("--thresholds", help="JSON from `turnout cache tune` (default: the configured ones)")
    ev.add_argument("--folds", type=int, default=5, help="cross-validation folds (0 = skip)")
    ev.set_defaults(func=run_eval)
    tu = cs.add_parser("tune", help="fit per-category thresholds on labelled pairs")
    tu.add_argument("--pairs", required=True)
    tu.add_argument("--out", help="write {'thresholds': {...}, 'global': t} JSON here")
    tu.set_defaults(func=run_tune)


def _load(path: str):
    from cache.eval import embed_pairs, read_pairs

    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    rows = read_pairs(path)
    print(f"[cache] embedding {len(rows)} pairs ...", file=sys.stderr)
    from cache.classifier import load_classifier
    from cache.embedder import shared_embedder

    emb, clf = shared_embedder(), load_classifier(None)
    return embed_pairs(rows, emb.embed, clf.predict)


def run_eval(args: argparse.Namespace) -> int:
    from cache.config import CacheSpec
    from cache.eval import best_global, cross_validate, report, table

    try:
        if args.folds == 1 or args.folds < 0:
            raise ValueError("--folds must be 0 or at least 2")
        if args.thresholds:
            configured = json.loads(Path(args.thresholds).read_text())["thresholds"]
        else:
            configured = {c: p.threshold for c, p in CacheSpec().categories.items()}
        d = _load(args.pairs)
    except (ValueError, KeyError, OSError) as e:
        print(f"turnout cache eval: {e}", file=sys.stderr)
        return 2
    out = {"configured": report(d, configured, best_global(d))}
    print(table("Configured per-category thresholds vs best global threshold (in-sample for global)",
                out["configured"]))
    if args.folds:
        print(f"[cache] {args.folds}-fold cross-validation ...", file=sys.stderr)
        out["cross_validated"] = cross_validate(d, args.folds)
        print()
        print(table(f"Cross-validated ({args.folds} folds x 3 shuffles): both modes tuned on the "
                    "training folds, scored on held-out folds", out["cross_validated"]))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(out, indent=2))
    return 0


def run_tune(args: argparse.Namespace) -> int:
    from cache.eval import report, table, tune

    try:
        d = _load(args.pairs)
    except (ValueError, KeyError, OSError) as e:
        print(f"turnout cache tune: {e}", file=sys.stderr)
        return 2
    th, g = tune(d)
    rep = report(d, th, g)
    print(table("Tuned (in-sample)", rep))
    result = {"thresholds": th, "global": g, "overall": rep["overall"]}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    else:
        print(json.dumps(result["thresholds"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="turnout")
    register(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
