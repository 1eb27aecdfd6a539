"""What detector-level constraints (--anchors) cost on the R7 space, measured beside the same search without them.

R7: depth 7, conv, kernels 1,3,5,7, strides 1,2, dilations 1,2,3, channels 32, same padding, input 224
(20^7 = 1.28e9 candidates). Each row is the pruned enumeration count (no output written), best of
--repeat runs after a warm-up, so the difference is the kernels' own work: the level checks add work
per node but cut every subtree whose taps can no longer meet their levels.

    python benchmarks/bench_anchors.py [--repeat 3] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import time

import numba

from rfsweep import __version__
from rfsweep.engine.run import Stats, count_by_enumeration
from rfsweep.space import build_space

R7 = dict(
    depth=7,
    ops=["conv"],
    kernels=[1, 3, 5, 7],
    strides=[1, 2],
    dilations=[1, 2, 3],
    channels=[32],
    padding="same",
    input_size=224,
)
LEVELS = dict(anchors="16@4,32@8,64@16", anchor_rf="1:4", anchor_erf="0.5")
CASES = [
    ("rf [200, 250]", dict(rf_min=200, rf_max=250)),
    ("rf [200, 250] + 3 levels", dict(rf_min=200, rf_max=250, **LEVELS)),
    ("rf [223, 225]", dict(rf_min=223, rf_max=225)),
    ("rf [223, 225] + 3 levels", dict(rf_min=223, rf_max=225, **LEVELS)),
    ("3 levels alone, rf <= 400", dict(rf_max=400, **LEVELS)),
]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed(space, threads, repeat):
    count_by_enumeration(space, threads=threads)  # compile / warm caches
    best, stats = float("inf"), None
    for _ in range(repeat):
        st = Stats()
        t0 = time.perf_counter()
        n = count_by_enumeration(space, threads=threads, stats=st)
        dt = time.perf_counter() - t0
        if dt < best:
            best, stats = dt, st
    return n, best, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    threads = args.threads or numba.get_num_threads()
    print(f"rfsweep {__version__}, {time.strftime('%Y-%m-%d')}, {cpu_model()}, {threads} numba threads")
    print(
        f"levels: {LEVELS['anchors']} (SIZE@STRIDE), rf/anchor in {LEVELS['anchor_rf']}, "
        f"2 x erf_sigma >= {LEVELS['anchor_erf']} x anchor\n"
    )
    print("| case | survivors | evaluated | seconds | candidates/s | vs. without levels |")
    print("|---|---:|---:|---:|---:|---:|")
    base = {}
    for name, extra in CASES:
        space = build_space({**R7, **extra})
        n, dt, st = timed(space, threads, args.repeat)
        key = name.split(" +")[0]
        ratio = ""
        if "+" in name and key in base:
            ratio = f"{dt / base[key]:.2f}x time"
        else:
            base[name] = dt
        print(f"| {name} | {n:,} | {st.evaluated:,} | {dt:.3f} | {space.size / dt:.3g} | {ratio} |")


if __name__ == "__main__":
    main()
