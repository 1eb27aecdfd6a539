"""Compiles the CUDA kernels for a real GPU (PTX, compute capability 9.0) without one.

The CUDA simulator runs the kernels as Python and checks no types, so a change to layer_math that the
CUDA target cannot compile would pass the simulator tests. This script types and compiles the kernels
with NVVM, which needs a CUDA toolkit but no GPU and no driver. Run by tests/engine/test_cuda.py in a
subprocess (it patches how numba asks the driver for the compute capability).

Exit codes: 0 compiled, 1 a kernel does not compile, 77 cannot check here (no NVVM, simulator on).
"""

from __future__ import annotations

import sys
import time

SKIP = 77
CC = (9, 0)  # H100


def main() -> int:
    import numba
    import numpy as np
    from numba import config, types

    if config.ENABLE_CUDASIM:
        print("skip: NUMBA_ENABLE_CUDASIM is set")
        return SKIP
    try:
        import numba.cuda.dispatcher as dispatcher
        from numba import cuda
        from numba.cuda.cudadrv import nvvm
    except Exception as exc:
        print(f"skip: numba.cuda cannot be imported ({exc})")
        return SKIP
    if not nvvm.is_available():
        print("skip: no CUDA toolkit (NVVM) found")
        return SKIP
    if not hasattr(dispatcher, "get_current_device"):
        print("skip: this numba.cuda asks for the compute capability elsewhere")
        return SKIP

    class _Device:  # device functions take the compute capability from the current device
        compute_capability = CC

    dispatcher.get_current_device = lambda: _Device()

    from rfsweep.kernels import cuda as kc
    from rfsweep.kernels import layer_math as lm
    from rfsweep.space import build_space

    ok = True
    # the kernels' argument types are the same for every space (int64 arrays, int16 choices)
    spaces = {
        "r7-window": {
            "depth": 7,
            "ops": ["conv"],
            "kernels": [1, 3, 5, 7],
            "strides": [1, 2],
            "dilations": [1, 2, 3],
            "channels": [32],
            "rf_min": 200,
            "rf_max": 250,
        }
    }
    for name, settings in spaces.items():
        space = build_space(settings)
        ty = lambda x: numba.typeof(np.ascontiguousarray(x))  # noqa: E731
        i64 = types.int64
        tasks = np.zeros((4, space.depth_max), np.int64)
        vec = np.zeros(4, np.int64)
        out = np.zeros((lm.NO, 1), np.int64)
        ch = np.zeros((space.depth_max, 1), np.int16)
        arrs = tuple(ty(a) for a in space.kernel[:-1]) + (ty(np.zeros(lm.NCTL, np.int64)),)  # ... and ctl
        head = (ty(tasks), ty(vec), i64, i64, ty(vec), i64, i64)
        sigs = {
            "count": (kc._count_kernel, head + (ty(vec),) * 3 + arrs + (ty(out), ty(ch))),
            "fill": (kc._fill_kernel, head + (ty(vec),) * 2 + arrs + (ty(out), ty(ch))),
            "offsets": (kc._offsets_kernel, (ty(vec), i64, i64, ty(vec), ty(vec), ty(vec))),
        }
        for kname, (kernel, sig) in sigs.items():
            t0 = time.perf_counter()
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=CC)
            except Exception as exc:
                ok = False
                print(f"BAD {name} {kname}: {type(exc).__name__}: {exc}")
                continue
            print(f"ok  {name} {kname}: {ptx.count(chr(10))} PTX lines in {time.perf_counter() - t0:.1f} s")
    # the anchor search's configuration kernel (float64 tables, bool validity, int64 the rest)
    f64, b1 = types.float64[:, :, ::1], types.boolean[:, ::1]
    i2, f2, i1 = types.int64[:, ::1], types.float64[:, ::1], types.int64[::1]
    sig = (f64, i2, f2, b1, i2, i64, i64, types.boolean, i2, i1, i1, types.float64, i64, i2, f2, i2)
    t0 = time.perf_counter()
    try:
        ptx, _ = cuda.compile_ptx(kc._anchor_kernel.py_func, sig, cc=CC)
        print(f"ok  anchor search configurations: {ptx.count(chr(10))} PTX lines in {time.perf_counter() - t0:.1f} s")
    except Exception as exc:
        ok = False
        print(f"BAD anchor search configurations: {type(exc).__name__}: {exc}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
