"""Summaries of a simulated run and the comparison table."""

from __future__ import annotations

import numpy as np

from migration.sim.fleet import Fleet


def summarize(fleet: Fleet) -> dict:
    reqs = fleet.reqs
    arrival = np.array([r.arrival for r in reqs])
    first = np.array([r.first_token for r in reqs])
    finish = np.array([r.finish for r in reqs])
    output = np.array([r.output for r in reqs])
    done = finish >= 0
    ttft = (first - arrival)[done]
    multi = done & (output > 1)
    tpot = (finish - first)[multi] / (output[multi] - 1)
    high = np.array([r.priority > 0 for r in reqs]) & done

    def pct(a: np.ndarray, q: float) -> float:
        return float(np.percentile(a, q)) if len(a) else float("nan")

    out = {
        "p50_ttft_s": pct(ttft, 50), "p99_ttft_s": pct(ttft, 99), "p99_tpot_s": pct(tpot, 99),
        "mean_ttft_s": float(ttft.mean()) if len(ttft) else float("nan"),
        "preemptions": int(sum(p.preemptions for p in fleet.reps)),
        "migrations": fleet.migrations, "completed": int(done.sum()), "requests": len(reqs),
    }
    if high.any():
        out["p99_ttft_high_s"] = pct((first - arrival)[high], 99)
    return out


def table(results: dict[str, dict]) -> str:
    head = f"{'policy':<20}{'P50 TTFT s':>12}{'P99 TTFT s':>12}{'P99 TPOT s':>12}" \
           f"{'preempt':>9}{'migr':>8}{'completed':>11}"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        lines.append(f"{name:<20}{r['p50_ttft_s']:>12.3f}{r['p99_ttft_s']:>12.3f}{r['p99_tpot_s']:>12.3f}"
                     f"{r['preemptions']:>9}{r['migrations']:>8}{r['completed']:>8}/{r['requests']}")
    return "\n".join(lines)
