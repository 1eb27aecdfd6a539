"""A uniform sample of 10,000 Once-for-All MobileNetV3 subnets under 300M MACs: rfsweep's exact sampler
beside rejection sampling in NumPy, in one run; and the best 100 by MACs and a Pareto front on the space.

ofa_mbv3 at 224: 5 stages of 7371 configurations each, 7371^5 = 2.2e19 subnets, about 3.9 % of them
under 300M MACs. Cases:

* sample 10,000 with ``--max-macs 300e6``, with an rf window [400, 800] as well, and under 150M MACs;
* the best 100 by MACs with rf >= 400 and ``--max-macs 300e6``; the Pareto front by (MACs, rf_error)
  with rf in [400, 800];
* with the latency table shipped in data/latency (measured on this project's machine): the Pareto front
  by (MACs, latency_ms), and the best 100 by ERF under ``--max-latency-ms 16`` and ``--max-macs 300e6``.

rfsweep's rows are the kernels' full rows (rf, jump, out size, params, MACs, ERF). "cold" builds the
state graph (the kernels' per-choice arithmetic) and, for a sample, counts the survivors exactly
(rfsweep.engine.stage_count: the number sampled from, most of the time); "warm" is the same sample with the
graph and the count known, as the baseline's tables are. Building the Space itself (about 1 s for
ofa_mbv3) is outside every clock. Where the baseline cannot finish (MACs <= 150M: 5e-12 of the space)
it runs 20 s and its time is extrapolated from its draw rate and the exact share of survivors.

The baseline is what NAS code does (Once-for-All's own sampler draws each stage's settings uniformly and
keeps what fits), written to be fast: per-stage lookup tables of MACs and rf increments (from rfsweep's
tables, built before the clock starts: Once-for-All's stages have fixed widths, so a configuration's
MACs do not depend on the other stages), 2^18 subnets a batch drawn with one ``integers`` call, costs
summed in one vectorised pass, those over the budget or outside the window rejected, repeats dropped,
until 10,000. It outputs choice tuples only (no rows). Both are exactly uniform over the survivors.

    python benchmarks/bench_stage_sample.py [--repeat 3] [--n 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np

from rfsweep import __version__
from rfsweep.engine import run as engine
from rfsweep.engine import stage_count, stage_sample, stage_select
from rfsweep.space import build_space, stage_graph, stages

BUDGET = 300e6
WINDOW = dict(rf_min=400, rf_max=800)
BATCH = 1 << 18
LUT = str(Path(__file__).resolve().parents[1] / "data" / "latency" / "ofa_mbv3_torch_cpu1.json")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ofa(**extra):
    return build_space({**stages.load("ofa_mbv3"), **extra})


def numpy_rejection(tables, n: int, budget: float, rf_lo: int, rf_hi: float, seed: int, cap_s: float = np.inf):
    """n distinct subnets uniform under the budget (and rf window) by rejection: (choices, drawn), or what
    it has when ``cap_s`` seconds have passed."""
    macs_t, rf_t, const_macs, const_rf = tables
    rng = np.random.default_rng(seed)
    radices = [len(t) for t in macs_t]
    kept = np.zeros((0, len(radices)), np.int64)
    drawn = 0
    t0 = time.perf_counter()
    while len(kept) < n and time.perf_counter() - t0 < cap_s:
        choice = rng.integers(0, radices, size=(BATCH, len(radices)))
        macs = const_macs + sum(t[choice[:, i]] for i, t in enumerate(macs_t))
        rf = const_rf + sum(t[choice[:, i]] for i, t in enumerate(rf_t))
        ok = (macs <= budget) & (rf >= rf_lo) & (rf <= rf_hi)
        drawn += BATCH
        kept = np.concatenate([kept, choice[ok]])
        _, first = np.unique(kept, axis=0, return_index=True)
        kept = kept[np.sort(first)]
    return kept[:n], drawn


def baseline_tables(space):
    """Per variable stage, MACs and rf increment per configuration; the fixed positions' sums."""
    graph = stage_graph.build(space)
    macs_t, rf_t, const_macs, const_rf = [], [], 0, 1
    for per in graph.tables:
        (table,) = per.values()  # fixed widths: one input channel count per position
        if len(table.macs) == 1:
            const_macs += int(table.macs[0])
            const_rf += int(table.drf[0])
        else:
            macs_t.append(table.macs.copy())
            rf_t.append(table.drf.copy())
    return macs_t, rf_t, const_macs, const_rf


def best_of(repeat, fn):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn()
        dt = time.perf_counter() - t0
        if dt < best:
            best, out = dt, res
    return best, out


def rows(space, selection, **kw) -> int:
    return sum(len(b) for b in stage_select.run(space, selection, **kw))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    n = args.n
    print(
        f"rfsweep {__version__}, {time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} cores, "
        f"{numba.get_num_threads()} numba threads, load average {os.getloadavg()[0]:.2f} before"
    )
    # warm-up: compile the kernels (numba's disk cache makes this quick after the first run)
    warm = ofa(max_macs=130e6)
    rows(warm, {"sample": 50, "seed": 0})
    rows(warm, {"limit": 5, "sort": "macs"})
    rows(warm, {"pareto": ("macs", "params")})
    engine.evaluate(warm, np.zeros((1, warm.depth_max), np.int64))

    print("\n| task | rfsweep cold s | rfsweep warm s | NumPy rejection s | NumPy / rfsweep warm | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for label, budget, extra, window in (
        (f"sample {n:,}, MACs <= 300M", BUDGET, {}, (0, np.inf)),
        (f"sample {n:,}, MACs <= 300M, rf in [400, 800]", BUDGET, WINDOW, (400, 800)),
        (f"sample {n:,}, MACs <= 150M", 150e6, {}, (0, np.inf)),
    ):
        space = ofa(max_macs=budget, **extra)
        t_count, total = best_of(1, lambda space=space: stage_count.count(space))

        def cold(space=space):  # the state graph built, the survivors counted, then the sample
            space.__dict__.pop("_stage_graph", None)
            return rows(space, {"sample": n, "seed": 1})

        def warm(space=space, total=total):  # graph and counting tables built (as the baseline's tables)
            return sum(len(b) for b in stage_sample.sample(space, n, 1, total=total))

        t_cold, got = best_of(args.repeat, cold)
        t_warm, got2 = best_of(args.repeat, warm)
        tables = baseline_tables(space)
        share = total / space.size
        cap = 20.0 if share * BATCH < 1 else np.inf
        t_np, (kept, drawn) = best_of(
            1 if cap < np.inf else args.repeat,
            lambda t=tables, b=budget, w=window, c=cap: numpy_rejection(t, n, b, *w, seed=1, cap_s=c),
        )
        if len(kept):  # the baseline's tables give the kernels' MACs: its picks survive
            _, mask = engine.evaluate(space, _with_fixed(space, kept[:200]))
            assert mask.all()
        assert got == got2 == n
        if len(kept) < n:  # extrapolated from its draw rate and the exact share of survivors
            est = n / share / (drawn / t_np)
            np_cell, ratio = f"~{est:.1e} (est.)", f"~{est / t_warm:.0e}x"
            note = f"NumPy kept {len(kept)} of {drawn:,} drawn in {t_np:.0f} s"
        else:
            np_cell, ratio = f"{t_np:.2f}", f"{t_np / t_warm:.2f}x"
            note = f"NumPy drew {drawn:,}"
        print(
            f"| {label} | {t_cold:.2f} | {t_warm:.2f} | {np_cell} | {ratio} | {total:.3e} survivors "
            f"({share:.2e} of the space); cold includes the exact count, {t_count:.1f} s; {note} |"
        )
    space = ofa(max_macs=BUDGET, rf_min=400)

    def top(space=space):
        space.__dict__.pop("_stage_graph", None)
        return rows(space, {"limit": 100, "sort": "macs"})

    t_top, k = best_of(args.repeat, top)
    print(f"| best 100 by MACs, rf >= 400, MACs <= 300M | {t_top:.2f} | | | | {k} rows; the walk: over 5 min |")
    space = ofa(**WINDOW)

    def front(space=space):
        space.__dict__.pop("_stage_graph", None)
        return rows(space, {"pareto": ("macs", "rf_error")})

    t_front, f = best_of(args.repeat, front)
    print(f"| Pareto front (MACs, rf_error), rf in [400, 800] | {t_front:.2f} | | | | {f} rows |")
    for label, extra, selection in (
        ("Pareto front (MACs, latency_ms)", {}, {"pareto": ("macs", "latency_ms")}),
        ("best 100 by ERF, latency <= 16 ms, MACs <= 300M", {"max_latency_ms": 16, "max_macs": BUDGET},
         {"limit": 100, "sort": "erf"}),
    ):  # fmt: skip
        space = ofa(latency_lut=LUT, **extra)

        def run(space=space, selection=selection):
            space.__dict__.pop("_stage_graph", None)
            return rows(space, selection)

        t_lat, m = best_of(args.repeat, run)
        print(f"| {label} (the shipped latency table) | {t_lat:.2f} | | | | {m} rows |")
    print(f"\nload average {os.getloadavg()[0]:.2f} after")


def _with_fixed(space, kept):
    """Full choice tuples (the fixed stem and head take choice 0) from the variable stages' choices."""
    variable = [p for p, r in enumerate(space.radices) if r > 1]
    out = np.zeros((len(kept), space.depth_max), np.int64)
    out[:, variable] = kept
    return out


if __name__ == "__main__":
    main()
