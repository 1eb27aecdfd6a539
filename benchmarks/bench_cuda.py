"""The R7 count and search on the GPU against the CPU, in one run.

R7: depth 7, conv only, kernels 1,3,5,7, strides 1,2, dilations 1,2,3, 32 channels, 'same' padding,
input 224: 20 choices a layer, 20^7 = 1.28e9 candidates.

* count:  survivors with rf in [200, 250], counted by enumerating the pruned tree (no rows written);
* search: survivors with rf in [223, 225], every row produced (batches iterated, nothing written).

Prints seconds, candidates/s (space size / seconds), survivors/s and the GPU/CPU ratio per task. The
CPU runs with ``--cpu-threads`` threads (default 2: the 2-core figure the target is stated against;
0 = all cores). Compilation is done by a warm-up before the clock starts. Without a usable GPU it
prints the CPU rows and why the GPU is not available, and exits 0.

    python benchmarks/bench_cuda.py            # R7 (target on an H100: GPU >= 50x the 2-core CPU)
    python benchmarks/bench_cuda.py --quick    # depth 5 (3.2M candidates), a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from rfsweep.engine import device as gpu
from rfsweep.engine import run as engine
from rfsweep.space import build_space

R7 = {
    "ops": ["conv"],
    "kernels": [1, 3, 5, 7],
    "strides": [1, 2],
    "dilations": [1, 2, 3],
    "channels": [32],
    "padding": "same",
    "input_size": 224,
}
TASKS = {"count": (200, 250), "search": (223, 225)}


def count(space, device, threads):
    stats = engine.Stats()
    n = engine.count_by_enumeration(space, device=device, threads=threads, stats=stats)
    return n, stats


def search(space, device, threads):
    stats = engine.Stats()
    n = 0
    for batch in engine.iter_batches(space, device=device, threads=threads, stats=stats):
        n += len(batch)
    return n, stats


def timed(fn, space, device, threads, repeat):
    """Best of ``repeat`` runs: (survivors, seconds, backend name)."""
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        n, stats = fn(space, device, threads)
        dt = time.perf_counter() - t0
        if best is None or dt < best[1]:
            best = (n, dt, stats.device)
    return best


def human(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="depth 5 instead of 7 (a smoke run)")
    ap.add_argument("--depth", type=int, help="override the depth (default 7, 5 with --quick)")
    ap.add_argument("--cpu-threads", type=int, default=2, help="CPU threads (default 2; 0 = all cores)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per row, the best is kept (default 2)")
    ap.add_argument("--skip-cpu", action="store_true", help="GPU rows only (no ratio)")
    ap.add_argument("--simulator-ok", action="store_true", help=argparse.SUPPRESS)  # tests: tiny depth only
    args = ap.parse_args(argv)
    depth = args.depth or (5 if args.quick else 7)
    threads = None if args.cpu_threads == 0 else args.cpu_threads

    import numba

    why_not = gpu.cuda_problem()
    if why_not is None and gpu.simulated() and not args.simulator_ok:
        why_not = "NUMBA_ENABLE_CUDASIM=1: the simulator is for tests, not timings"
    have_gpu = why_not is None
    print(
        f"R{depth}: depth {depth}, 20 choices a layer, {20**depth:,} candidates; host {platform.node()}, "
        f"{os.cpu_count()} cores, numba {numba.__version__}"
    )
    print(
        f"CPU: {threads or numba.config.NUMBA_NUM_THREADS} threads; "
        f"GPU: {gpu.describe() if have_gpu else 'not available (' + why_not + ')'}"
    )

    devices = ([] if args.skip_cpu else ["cpu"]) + (["cuda"] if have_gpu else [])
    warm = build_space({**R7, "depth": min(depth, 3), "rf_min": 20, "rf_max": 30})
    for device in devices:  # compile (or load cached) kernels before timing
        count(warm, device, threads)
        search(warm, device, threads)

    rows = []
    for task, (lo, hi) in TASKS.items():
        space = build_space({**R7, "depth": depth, "rf_min": lo, "rf_max": hi})
        got = {}
        for device in devices:
            n, dt, name = timed(count if task == "count" else search, space, device, threads, args.repeat)
            got[device] = (n, dt)
            rows.append(
                (
                    f"{task} rf [{lo}, {hi}]",
                    name,
                    n,
                    dt,
                    space.size / dt,
                    n / dt,
                    got["cpu"][1] / dt if device == "cuda" and "cpu" in got else None,
                )
            )
        if len(got) == 2 and got["cpu"][0] != got["cuda"][0]:
            print(f"MISMATCH in {task}: cpu {got['cpu'][0]} survivors, cuda {got['cuda'][0]}", file=sys.stderr)
            return 1

    print()
    print(
        f"{'task':20s} {'device':6s} {'survivors':>12s} {'seconds':>9s} {'candidates/s':>13s} "
        f"{'survivors/s':>12s} {'gpu/cpu':>8s}"
    )
    for task, name, n, dt, rate, srate, ratio in rows:
        r = f"{ratio:7.1f}x" if ratio is not None else "       -"
        print(f"{task:20s} {name:6s} {n:12,d} {dt:9.3f} {human(rate):>13s} {human(srate):>12s} {r:>8s}")
    if not have_gpu:
        print("\nGPU not available: CPU rows only.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
