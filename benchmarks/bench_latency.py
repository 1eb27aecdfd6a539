"""Does a measured latency table predict end-to-end latency? Uniform Once-for-All MobileNetV3 subnets under a
MACs budget, each predicted by the table (the sum of its blocks' entries) and by MACs (a least-squares line
through the same subnets' measurements: MACs' best case), and timed end to end, in one run.

1. the table: ``rfsweep.nas.latency_measure.measure`` over ofa_mbv3's 96 distinct blocks (stem and head
   included), each built as the export builds it, at its shape;
2. ``--n`` subnets drawn uniformly (exactly: rfsweep.engine.stage_sample) among those under ``--max-macs``;
   their ``latency_ms`` column is the table's prediction;
3. each subnet built by ``rfsweep.torch.build`` (the export's builder) and timed end to end with the same
   backend, threads, batch 1, warm-up, repeats and clock as the table (median kept); the subnets take
   turns, 5 runs at a time, so that load from other processes falls on all of them alike; the median of
   the even rounds against that of the odd ones says how well the measurement agrees with itself (the
   ceiling any predictor can reach on this machine at this load);
4. Kendall's tau-b (rank agreement, 1 = same order) and the mean absolute percentage error of each
   predictor against the measurement. MACs' line is fitted on the very subnets it is scored on, which
   favours it; the table is not fitted at all.

Two tables: blocks timed with a warm cache (run again and again on one input) and a cold one (a 64 MiB
buffer written before each timed run, the input read back in); and two statistics, each used for the
table's entries and the end-to-end times alike: the median, and p10 (on a shared machine the low
percentile is the run least disturbed by other processes).

The machine is shared while this runs: the load average before and after is printed beside the numbers.

    python benchmarks/bench_latency.py [--n 60] [--threads 1] [--backend torch] [--caches warm,cold] [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import numpy as np

import rfsweep
import rfsweep.torch
from rfsweep.nas import latency_measure
from rfsweep.space import build_space, stages


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b over all pairs (O(n^2): n is small here)."""
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), 1)
    dx, dy = dx[iu], dy[iu]
    concordant_minus_discordant = float(np.sum(dx * dy))
    nx, ny = float(np.sum(dx != 0)), float(np.sum(dy != 0))
    return concordant_minus_discordant / np.sqrt(nx * ny)


def mape(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - truth) / truth) * 100)


def predictions(lut: str, settings: dict, arch_ids, stat: str) -> np.ndarray:
    """The table's prediction (ms) of each subnet, from its median entries or (``stat`` p10) its p10s."""
    if stat != "median":
        raw = json.loads(Path(lut).read_text())
        for e in raw["entries"].values():
            e["median_ms"] = e[f"{stat}_ms"]
        lut = lut[: -len(".json")] + f".{stat}.json"
        Path(lut).write_text(json.dumps(raw))
    sp = build_space({**settings, "latency_lut": lut}, for_search=False)
    choice = np.array([sp.decode(int(a)) for a in arch_ids]).T
    return sp.latency.latency_ms(choice, sp.in_channels)


ROUND = 5  # timed runs of one subnet in a row, before the next subnet's


def _rounds(repeats: int, parity: int) -> np.ndarray:
    """The run indices of the even (0) or odd (1) rounds."""
    idx = np.arange(repeats)
    return idx[(idx // ROUND) % 2 == parity]


def end_to_end(arch_ids, settings, args) -> np.ndarray:
    """times[i, r] (ms): subnet i's r-th timed run. The subnets take turns, ROUND runs at a time, so a
    slow minute on a shared machine falls on all of them rather than on a few."""
    runs = []
    for arch_id in arch_ids:
        model = rfsweep.torch.build(int(arch_id), space=settings)
        run, _ = latency_measure.runner(model, (1, 3, 224, 224), args.backend, args.threads)
        for _ in range(args.warmup):
            run()
        runs.append(run)
    now = latency_measure.CLOCKS[args.clock]
    times = np.zeros((len(runs), args.repeats))
    for start in range(0, args.repeats, ROUND):
        for i, run in enumerate(runs):
            for r in range(start, min(start + ROUND, args.repeats)):
                t0 = now()
                run()
                times[i, r] = (now() - t0) / 1e6
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--max-macs", type=float, default=300e6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", choices=latency_measure.BACKENDS, default="torch")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--caches", default="warm,cold", help="the tables to measure: warm, cold or both (rfsweep "
                    "latency measure --cache)")  # fmt: skip
    ap.add_argument("--clock", choices=list(latency_measure.CLOCKS), default="wall",
                    help="wall time, or (--threads 1) the CPU time of the thread running the model")  # fmt: skip
    ap.add_argument("--keep", default="/tmp/rfsweep_bench_latency", help="where the tables measured here go")
    args = ap.parse_args()

    import torch

    load0 = os.getloadavg()
    settings = stages.load("ofa_mbv3")
    space = build_space(dict(settings), for_search=False)
    luts, t_table = {}, {}
    for cache in args.caches.split(","):
        t0 = time.perf_counter()
        luts[cache] = f"{args.keep}_{cache}.json"
        latency_measure.measure(space, luts[cache], backend=args.backend, threads=args.threads, warmup=args.warmup,
                                repeats=args.repeats, cache=cache, clock=args.clock)  # fmt: skip
        t_table[cache] = time.perf_counter() - t0
    rows = rfsweep.search({**settings, "max_macs": args.max_macs}, sample=args.n, seed=args.seed)
    t0 = time.perf_counter()
    times = end_to_end(rows["arch_id"], settings, args)
    measured = {"median": np.median(times, axis=1), "p10": np.percentile(times, 10, axis=1)}
    # the measurement against itself: the median of the even rounds against that of the odd ones
    half_a = np.median(times[:, _rounds(args.repeats, 0)], axis=1)
    half_b = np.median(times[:, _rounds(args.repeats, 1)], axis=1)
    t_e2e = time.perf_counter() - t0
    load1 = os.getloadavg()
    macs = rows["macs"].to_numpy(float)
    print(f"bench_latency: ofa_mbv3, {len(rows)} uniform subnets under {args.max_macs:.3g} MACs (seed {args.seed}), "
          f"{args.backend} {torch.__version__}, {args.threads} thread(s), batch 1, {args.warmup} warm-up + "
          f"{args.repeats} timed runs per block and per subnet, {args.clock} clock")  # fmt: skip
    m = latency_measure.machine()
    now = datetime.datetime.now(datetime.UTC)
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; {now:%Y-%m-%d %H:%M} UTC; "
          f"load average before {load0[0]:.2f}, after {load1[0]:.2f} (1 min)")  # fmt: skip
    for cache, lut in luts.items():
        print(f"table ({cache} cache): {lut}, measured in {t_table[cache]:.0f} s")
    med = np.array(measured["median"])
    print(f"measured end to end (median of runs): {med.min():.2f} to {med.max():.2f} ms, median {np.median(med):.2f} "
          f"ms ({t_e2e:.0f} s)")  # fmt: skip
    print()
    print("| predictor | statistic (table and measurement) | Kendall tau-b | MAPE | table / measured |")
    print("|---|---|---:|---:|---:|")
    for stat, truth in measured.items():
        truth = np.array(truth)
        for cache, lut in luts.items():
            pred = predictions(lut, settings, rows["arch_id"], stat)
            tau = kendall_tau_b(pred, truth)
            print(f"| latency table, {cache} cache (sum of block entries) | {stat} | {tau:.3f} | "
                  f"{mape(pred, truth):.1f} % | {np.mean(pred / truth):.3f} |")  # fmt: skip
        a, b = np.polyfit(macs, truth, 1)
        print(f"| MACs, a line fitted on these subnets ({a * 1e6:.4f} ms/MMAC {b:+.2f} ms) | {stat} | "
              f"{kendall_tau_b(macs, truth):.3f} | {mape(a * macs + b, truth):.1f} % | |")  # fmt: skip
    print(f"| the measurement itself: median of the even rounds against the odd ones | median | "
          f"{kendall_tau_b(half_a, half_b):.3f} | {mape(half_a, half_b):.1f} % | |")  # fmt: skip
    print("\ntarget (issue 25): Kendall tau >= 0.9, MAPE <= 10 %")


if __name__ == "__main__":
    main()
