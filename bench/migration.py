"""Live KV migration vs recompute migration: downtime, total time, decode slowdown.

Two engines of the tiny model in this process (migration.harness plays replica and
gateway). For each sequence length a greedy request with that many prompt tokens
decodes on r0 and is migrated to r1 after a few tokens:
- downtime: the longest gap with no token for the migrated request (client side);
- total: from migrate_out() to the request running on the destination;
for KV migration (this package) and recompute migration (re-prefill at r1), same run.
Decode slowdown: mean inter-token time of other requests decoding on the source during
KV migrations of the longest request, against the same requests with no migration.
Measured twice: with the source engine alone on core 0 and the destination engine and
this process on core 1 (as if on separate hosts: what the migration itself costs the
source), and with all of them sharing both cores (what this 2-core box costs on top).

    python -m bench.migration [--quick] [--json PATH] [--plot PATH]

The plot (SVG, default bench/plots/migration_downtime.svg) shows both downtimes
against the prompt length.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time

from bench.common import parser, progress, table, write_json
from bench.svg import line_chart

LENGTHS = (256, 1024, 4096, 8192)
DECODE = 48  # tokens each migrated request generates
MIGRATE_AT = 12  # migrate after this many tokens
PLOT = "bench/plots/migration_downtime.svg"


def sampling(max_tokens: int):
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)


def prompt(n: int, seed: int) -> list[int]:
    rnd = random.Random(seed)
    return [rnd.randrange(3, 400) for _ in range(n)]


async def until(run, n_tokens: int) -> None:
    while len(run.token_ids) < n_tokens:
        await asyncio.sleep(0.001)


async def one(agents, length: int, mode: str, seed: int) -> dict:
    from migration.harness import ClientRun, client

    run = ClientRun()
    rid = f"b{length}-{mode}-{seed}"
    task = asyncio.create_task(client(agents, "r0", rid, prompt(length, seed), sampling(DECODE), run))
    await until(run, MIGRATE_AT)
    t0 = time.perf_counter()
    rec = await agents["r0"].migrate_out(rid, "r1", agents["r1"].address(), mode)
    await task
    if rec["stage"] != "done" or run.replicas != ["r0", "r1"]:
        raise RuntimeError(f"migration did not complete: {rec}")
    # Downtime: the longest token gap from the stop on (pre-copy runs while tokens flow).
    first = max(rec["delivered"] - 1, 0)
    downtime = run.longest_gap(first)
    # Total: migrate_out() call until the first token from the destination.
    resumed = run.times[rec["delivered"]] if len(run.times) > rec["delivered"] else run.times[-1]
    return {"downtime_ms": downtime * 1e3, "total_ms": (resumed - t0) * 1e3,
            "bytes": rec["bytes"], "stages": rec["precopy_stages"]}


async def slowdown(agents, length: int, repeats: int, mode: str = "kv") -> tuple[float, float]:
    """Other requests' mean inter-token time on r0: during migrations vs without."""
    from migration.harness import ClientRun, client

    async def others(tag: str, n: int = 3) -> tuple[list[ClientRun], list[asyncio.Task]]:
        runs = [ClientRun() for _ in range(n)]
        tasks = [asyncio.create_task(client(agents, "r0", f"o{tag}{i}", prompt(64, 100 + i),
                                            sampling(4000), runs[i])) for i in range(n)]
        while min(len(r.token_ids) for r in runs) < 8:
            await asyncio.sleep(0.005)
        return runs, tasks

    def gaps(runs: list, start: float, end: float) -> list[float]:
        """Per-token decode time from engine-core timestamps (not client arrival, which on
        this box waits for whatever else shares the client's core). A window's tokens are
        timed from the last token before it, so a stalled step that straddles the start counts."""
        out = []
        for r in runs:
            before = [t for t in r.engine_times if t < start]
            inside = [t for t in r.engine_times if start <= t <= end]
            if before and inside:
                out += [(inside[-1] - before[-1]) / len(inside)] * len(inside)
        return out

    during, quiet = [], []
    for k in range(repeats):
        runs, tasks = await others(str(k))
        # Quiet window: the same load (a long request decoding, no migration).
        mover = ClientRun()
        rid = f"s{k}"
        mt = asyncio.create_task(client(agents, "r0", rid, prompt(length, 7 + k), sampling(400), mover))
        await until(mover, 4)
        t0 = time.monotonic()
        await asyncio.sleep(1.0)
        quiet += gaps(runs, t0, time.monotonic())
        t1 = time.monotonic()
        rec = await agents["r0"].migrate_out(rid, "r1", agents["r1"].address(), mode)
        t2 = time.monotonic()
        during += gaps(runs, t1, t2)
        assert rec["stage"] == "done", rec
        await mt
        for i, t in enumerate(tasks):
            await agents["r0"].host.abort(f"o{k}{i}")
            await t
    q, d = statistics.mean(quiet), statistics.mean(during)
    # What one migration costs each other request in all: the extra time of the steps
    # it overlapped (the window-relative fraction above is what the JSON reports).
    extra_ms = (d - q) * len(during) / repeats / 3 * 1e3
    progress(f"{mode}: other requests' inter-token ms: quiet {q * 1e3:.2f} (n={len(quiet)}), during migration "
             f"{d * 1e3:.2f} (n={len(during)}); extra delay per other request per migration "
             f"{extra_ms:.1f} ms")
    return d / q - 1.0, extra_ms


def pin(pids: list[int], cpus: set[int]) -> None:
    """Pin every thread of these processes (and of their children) to `cpus`."""
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(task), cpus)
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pin([int(c) for c in f.read().split()], cpus)


def isolate(hosts, on: bool) -> bool:
    """Source engine alone on core 0, destination and this process on core 1 (on=True);
    everything on every core (on=False). Returns whether pinning was possible."""
    cpus = sorted(os.sched_getaffinity(0))
    if on and len(cpus) < 2:
        return False
    src, rest = ({cpus[0]}, set(cpus[1:])) if on else (set(cpus), set(cpus))
    pin(hosts[0].core_pids(), src)
    pin(hosts[1].core_pids() + [os.getpid()], rest)
    return True


async def main_async(quick: bool) -> dict:
    from migration.agent import MigrationAgent
    from migration.harness import start_hosts

    lengths = LENGTHS
    repeats = 2 if quick else 5
    progress("starting two engines (~40 s each)")
    # No prefix caching: a recompute run must not reuse blocks an earlier run left cached.
    hosts = await start_hosts(2, max_model_len=max(lengths) + DECODE + 64, prefix_caching=False)
    agents = {h.replica_id: MigrationAgent(h, h.replica_id, {}) for h in hosts}
    results: dict = {"kv": {}, "recompute": {}}
    try:
        try:
            await one(agents, 256, "kv", 0)  # warm-up
        except RuntimeError as e:
            progress(f"warm-up did not migrate: {e}")
        for length in lengths:
            for mode in ("kv", "recompute"):
                runs = []
                for seed in range(repeats):
                    try:
                        runs.append(await one(agents, length, mode, seed + 1))
                    except RuntimeError as e:  # counted and shown, not hidden
                        progress(f"run failed, retrying with another prompt: {e}")
                        results.setdefault("failed_runs", 0)
                        results["failed_runs"] += 1
                        runs.append(await one(agents, length, mode, seed + 1000))
                results[mode][str(length)] = {
                    k: statistics.median(r[k] for r in runs) for k in ("downtime_ms", "total_ms")}
                progress(f"{mode:9s} {length:5d} tokens: {results[mode][str(length)]}")
        n = 2 if quick else 5
        results["source_isolated"] = isolate(hosts, True)
        results["decode_slowdown"], results["extra_delay_ms_per_migration"] = await slowdown(agents, 4096, n)
        # The same window for a recompute migration (the destination re-prefills).
        results["decode_slowdown_recompute"], _ = await slowdown(agents, 4096, n, "recompute")
        isolate(hosts, False)
        # Both engines and this process sharing 2 cores: the machine's share of the slowdown.
        results["decode_slowdown_shared_cores"], _ = await slowdown(agents, 4096, n)
        progress(f"decode slowdown {results['decode_slowdown']:.3f} (source isolated: "
                 f"{results['source_isolated']}), shared cores {results['decode_slowdown_shared_cores']:.3f}")
    finally:
        for a in agents.values():
            await a.close()
        for h in hosts:
            h.shutdown()
    return results


def report(res: dict) -> str:
    rows = []
    for length in LENGTHS:
        kv, rc = res["kv"].get(str(length)), res["recompute"].get(str(length))
        if kv and rc:
            rows.append([length, kv["downtime_ms"], rc["downtime_ms"], rc["downtime_ms"] / kv["downtime_ms"],
                         kv["total_ms"], rc["total_ms"]])
    t = table(["tokens", "KV downtime ms", "recompute downtime ms", "ratio", "KV total ms",
               "recompute total ms"], rows)
    kv = res["kv"]
    flat = kv[str(LENGTHS[-1])]["downtime_ms"] / kv[str(LENGTHS[0])]["downtime_ms"]
    return (f"{t}\n\nKV downtime {LENGTHS[-1]} vs {LENGTHS[0]} tokens: {flat:.2f}x (target <= 2x)\n"
            f"decode slowdown of other requests on the source during a migration: "
            f"{res['decode_slowdown'] * 100:.1f}% (target < 5%); in all "
            f"{res['extra_delay_ms_per_migration']:.1f} ms extra per other request per migration\n"
            f"the same during a recompute migration: {res['decode_slowdown_recompute'] * 100:.1f}%\n"
            f"(source engine {'alone on a core' if res.get('source_isolated') else 'sharing cores'}); "
            f"with both engines and the client sharing the cores: "
            f"{res['decode_slowdown_shared_cores'] * 100:.1f}%")


def plot(res: dict, path: str) -> None:
    series = {f"{label} migration": [(int(n), r["downtime_ms"]) for n, r in res[mode].items()]
              for mode, label in (("kv", "KV"), ("recompute", "recompute"))}
    line_chart(path, "Downtime of a migrated request against its length", "prompt tokens",
               "downtime, ms (median)", series, y_min=0.0)
    progress(f"wrote {path}")


def main() -> int:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--plot", default=PLOT, help=f"SVG of downtime against length (default {PLOT})")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    res = asyncio.run(main_async(args.quick))
    write_json(args.json, res)
    print(report(res))
    plot(res, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
