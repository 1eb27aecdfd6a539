"""Runs the CUDA kernels under numba's CUDA simulator and requires exactly the CPU's rows.

Run by tests/engine/test_cuda.py in a subprocess, because NUMBA_ENABLE_CUDASIM must be set before numba is
first imported (the main test process has already imported numba without it). Also runnable by hand:

    NUMBA_ENABLE_CUDASIM=1 python tests/cuda_sim_check.py

The simulator runs ~6,000 threads/s, so the spaces are small (hundreds to thousands of candidates) but
cover pools, channel lists and the width rule, valid / same / tf_same padding, rf windows, budgets,
jump constraints, depth ranges and per-position choices. Exit code 0 when every comparison holds.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
from numba import config  # noqa: E402

from rfsweep.engine import device as gpu
from rfsweep.engine import run as engine  # noqa: E402
from rfsweep.kernels import layer_math as lm  # noqa: E402
from rfsweep.space import build_space  # noqa: E402

SPACES = {
    "peak-budget": {  # --max-peak-act prunes inside the walk; peak_act_bytes at int8
        "depth": "1-3",
        "ops": ["conv", "maxpool"],
        "kernels": [1, 3],
        "strides": [1, 2],
        "channels": [8, 16],
        "input_size": 32,
        "max_peak_act": 20000,
        "act_dtype": "int8",
    },
    "pools-valid": {
        "depth": "1-3",
        "ops": ["conv", "maxpool"],
        "kernels": [1, 3],
        "strides": [1, 2],
        "pool_kernels": [2],
        "padding": "valid",
        "input_size": 16,
    },
    "channels-same-window": {
        "depth": "2-3",
        "ops": ["conv"],
        "kernels": [1, 3, 5],
        "strides": [1, 2],
        "dilations": [1, 2],
        "channels": [8, 16],
        "padding": "same",
        "input_size": 32,
        "rf_min": 5,
        "rf_max": 20,
        "max_params": 4000,
    },
    "tf-same-jumps": {
        "depth": "1-4",
        "ops": ["conv", "avgpool"],
        "kernels": [1, 3],
        "strides": [1, 3],
        "pool_kernels": [2],
        "padding": "tf_same",
        "input_size": 23,
        "jump": [3, 9],
    },
    "budgets-unproductive": {
        "depth": "2-4",
        "ops": ["conv", "maxpool"],
        "kernels": [3, 5],
        "strides": [1, 2],
        "pool_kernels": [3],
        "padding": "valid",
        "input_size": 20,
        "min_out_size": 2,
        "max_macs": 2_000_000,
        "no_unproductive": True,
        "width": 4,
        "max_width": 16,
        "positions": [{"index": 0, "ops": ["conv"], "kernels": [7], "strides": [2]}],
    },
    "target-rf": {
        "depth": "3-5",
        "ops": ["conv"],
        "kernels": [1, 3],
        "strides": [1, 2],
        "padding": "same",
        "input_size": 64,
        "target_rf": 15,
        "tolerance": 2,
    },
    "head": {
        "depth": "2-4",
        "ops": ["conv", "maxpool"],
        "kernels": [1, 3],
        "strides": [1, 2],
        "pool_kernels": [2],
        "input_size": 32,
        "rf_min": 5,
        "rf_max": 30,
        "positions": [{"index": -1, "ops": ["conv"], "kernels": [1], "strides": [1], "channels": [10]}],
    },
    "anchor-levels": {
        "depth": "2-4",
        "ops": ["conv", "maxpool"],
        "kernels": [1, 3, 5],
        "strides": [1, 2],
        "pool_kernels": [2, 3],
        "input_size": 64,
        "anchors": "8@2,16@4",
        "anchor_rf": "1:3",
        "anchor_erf": "0.5",
    },
}


def rows(space, device, align=None, slab_rows=256):
    batches = [b.copy() for b in engine.iter_batches(space, device=device, slab_rows=slab_rows, align=align)]
    if not batches:
        return engine.Batch.empty(space).out, engine.Batch.empty(space).choice, []
    whole = engine.Batch.concat(batches)
    return whole.out, whole.choice, [len(b) for b in batches]


def check_engine(name, settings) -> bool:
    space = build_space(settings)
    t0 = time.perf_counter()
    cpu_out, cpu_ch, cpu_sizes = rows(space, "cpu")
    t1 = time.perf_counter()
    gpu_out, gpu_ch, gpu_sizes = rows(space, "cuda")
    t2 = time.perf_counter()
    ok = (
        np.array_equal(cpu_out, gpu_out)
        and np.array_equal(cpu_ch, gpu_ch)
        and cpu_sizes == gpu_sizes
        and cpu_out.dtype == gpu_out.dtype
        and cpu_ch.dtype == gpu_ch.dtype
    )
    print(
        f"{'ok ' if ok else 'BAD'} engine {name:22s} space {space.size:6d}  rows {cpu_out.shape[1]:5d}  "
        f"batches {len(cpu_sizes):2d}  cpu {t1 - t0:5.2f} s  sim {t2 - t1:5.2f} s"
    )
    if name == "pools-valid":  # row-group batches (a sink's): the rows carried to the next slab survive the device
        al_out, al_ch, al_sizes = rows(space, "cuda", align=30, slab_rows=64)
        same = np.array_equal(al_out, cpu_out) and np.array_equal(al_ch, cpu_ch)
        same = same and len(al_sizes) > 2 and all(k % 30 == 0 for k in al_sizes[:-1])
        print(f"{'ok ' if same else 'BAD'} engine {name:22s} aligned to 30 rows: batches {al_sizes}")
        ok = ok and same
    return ok


def check_kernels(name, settings, q, target=None) -> bool:
    """run_tasks on coarse tasks (prefix lengths q and q+1, so the CUDA side cuts them unevenly),
    both modes, the fill on a subset of tasks starting at a nonzero row."""
    from rfsweep.kernels import cpu
    from rfsweep.kernels import cuda as kc

    default_target = kc.SUB_TARGET
    space = build_space(settings)
    K = space.kernel
    ctl = np.zeros(lm.NCTL, np.int64)
    tasks = engine.prefixes(space, q, 0, int(np.prod(space.radices[:q])))
    plens = np.full(len(tasks), q, np.int64)
    # cut task 1 into its children, as the engine's split does: prefixes of two lengths in one call
    r = space.radices[q]
    kids = np.repeat(tasks[1:2], r, axis=0)
    kids[:, q] = np.arange(r)
    tasks = np.concatenate([tasks[:1], kids, tasks[2:]])
    plens = np.concatenate([plens[:1], np.full(r, q + 1, np.int64), plens[2:]])
    total = len(tasks)
    dummy_out = np.zeros((lm.NO, 1), np.int64)
    dummy_ch = np.zeros((space.depth_max, 1), np.int16)
    if target is not None:
        kc.SUB_TARGET = target  # host-side only: no recompilation
    res = []

    def extra(mod):  # the CPU kernel also takes the count pass's lookup table (unused in modes 0 and 1)
        return (np.zeros(1, np.int64), 0, np.zeros((1, 1, 1, 1), np.int64)) if mod is cpu else ()

    for mod in (cpu, kc):
        counts, evals = np.zeros(total, np.int64), np.full(total, -1, np.int64)
        mod.run_tasks(
            0, tasks, plens, np.zeros(total, np.int64), K, ctl, counts, evals, dummy_out, dummy_ch, *extra(mod)
        )
        res.append((counts, evals))
    c_cpu = res[0][0]
    ok = all(np.array_equal(x, y) for x, y in zip(res[0], res[1]))
    lev, fans = kc.plan(plens, K.nch, space.depth_max)
    # fill tasks 1.. (skip the first) at row 7 of a larger slab, as a later slab of the engine would
    sel = slice(1, total)
    n = int(c_cpu[sel].sum())
    rows0 = 7 + np.concatenate(([0], np.cumsum(c_cpu[sel])[:-1])).astype(np.int64)
    outs = []
    for mod in (cpu, kc):
        out = np.full((lm.NO, n + 7), -1, np.int64)
        ch = np.zeros((space.depth_max, n + 7), np.int16)
        m = total - 1
        counts, evals = np.zeros(m, np.int64), np.full(m, -1, np.int64)
        mod.run_tasks(1, tasks[sel], plens[sel], rows0, K, ctl, counts, evals, out, ch, *extra(mod))
        outs.append((out, ch, counts))  # rows 0..6 must stay as they were
    ok = ok and all(np.array_equal(x, y) for x, y in zip(outs[0], outs[1]))
    batches = len(list(kc._groups(fans, max(kc.SUB_BATCH, int(fans.max())))))
    kc.SUB_TARGET = default_target
    print(
        f"{'ok ' if ok else 'BAD'} kernel {name:22s} tasks {total:4d} cut {lev} -> {int(fans.sum()):5d} subtasks "
        f"in {batches} launches  "
        f"survivors {int(c_cpu.sum()):5d}  rows filled {n}"
    )
    return ok


def check_anchor_search() -> bool:
    """The anchor search's configurations scored by the CUDA kernel equal the CPU kernel's, statistic for
    statistic, on a grid preset (shared and per-level ratios, octaves) and on ssd300 (a pair of scales a
    level)."""
    from rfsweep.anchors import detectors as det
    from rfsweep.anchors import scoring as S
    from rfsweep.anchors.datasets import BoxSet

    rng = np.random.default_rng(3)
    n_img, n = 3, 12
    H, W = rng.integers(60, 200, n_img), rng.integers(60, 200, n_img)
    img = rng.integers(0, n_img, n)
    w, h = rng.uniform(4, 50, n), rng.uniform(4, 50, n)
    xyxy = np.stack([np.zeros(n) + 1, np.zeros(n) + 2, w + 1, h + 2], axis=1)
    data = BoxSet(xyxy, img, H, W, list(range(n_img)))
    small = {"min_size": 64, "max_size": 100}
    cases = {
        "faster_rcnn shared": S.make_space(
            det.preset("faster_rcnn", **small), sizes=[8, 16, 32, 64, 128, 256], ratios=[0.5, 1, 2], ratio_count=2
        ),
        "retinanet per level": S.make_space(
            det.preset("retinanet", **small), sizes=[8, 16, 32, 64, 128], ratios=[0.5, 2], ratio_count=1,
            per_level_ratios=True, scales_per_octave=[1, 2],
        ),
        "ssd300": S.make_space(
            det.preset("ssd300"), scales=[0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9, 1.05], ratios=[2, 3], ratio_count=1
        ),
        "faster_rcnn limited": S.make_space(
            det.preset("faster_rcnn", **small), sizes=[8, 16, 32, 64, 128, 256, 512], ratios=[0.5, 1, 2], ratio_count=2,
            limits=S.Limits(rf=[(40, 40), (90, 90), (200, 200), (300, 300), (900, 900)], erf=[(1e9, 1e9)] * 5,
                            max_rf=1.0, max_erf=None),
        ),
    }  # fmt: skip
    ok = True
    for name, space in cases.items():
        got = {d: S.Scored.concat(list(S.score(space, data, device=d))) for d in ("cpu", "cuda")}
        same = all(np.array_equal(getattr(got["cpu"], f), getattr(got["cuda"], f), equal_nan=True)
                   for f in ("ids", "rows", "outer", "stats"))  # fmt: skip
        ok &= same and len(got["cpu"]) == space.size
        print(f"{'ok ' if same else 'BAD'} anchor search {name}: {space.size} configurations")
    return ok


def main() -> int:
    if not config.ENABLE_CUDASIM:
        print("NUMBA_ENABLE_CUDASIM was not set before numba was imported", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    ok = True
    mod, name = gpu.backend("auto")
    ok &= name == "cuda" and mod.__name__ == "rfsweep.kernels.cuda"
    mod, name = gpu.backend("cuda")
    ok &= name == "cuda"
    print(f"{'ok ' if ok else 'BAD'} backend: auto and cuda pick {mod.__name__} ({gpu.describe()})")
    for key, settings in SPACES.items():
        ok &= check_engine(key, settings)
    ok &= check_kernels("pools-valid", SPACES["pools-valid"], 1)
    ok &= check_kernels("tf-same-jumps", SPACES["tf-same-jumps"], 1, target=600)
    ok &= check_kernels("target-rf", SPACES["target-rf"], 2)
    ok &= check_anchor_search()
    print(f"{'all identical' if ok else 'MISMATCH'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
