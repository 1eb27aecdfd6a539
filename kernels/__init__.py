"""Numba kernels (importable as rfsweep.kernels): costs and layer_math (shared math), cpu, cuda."""

import hashlib
from pathlib import Path

SHARED = ("costs.py", "layer_math.py")  # the register_jitable modules these kernels inline:
INLINING = ("cpu", "encode", "stages")


def _drop_stale_cache() -> None:
    """Delete cpu.py's, encode.py's and stages.py's cached machine code when the shared math (layer_math.py, costs.py)
    has changed.

    numba's cache=True keys a kernel on its own file only, but those kernels inline the shared
    register_jitable functions: an edit there would otherwise run the old compiled code.
    """
    here = Path(__file__).resolve().parent
    try:
        stamp = hashlib.sha1(b"".join((here / f).read_bytes() for f in SHARED)).hexdigest()
        cache = here / "__pycache__"
        marker = cache / "layer_math.stamp"
        if marker.is_file() and marker.read_text() == stamp:
            return
        for module in INLINING:
            for f in cache.glob(f"{module}.*.nb[ic]"):
                f.unlink()
        cache.mkdir(exist_ok=True)
        marker.write_text(stamp)
    except OSError:  # a read-only install: nothing is cached there to go stale
        pass


_drop_stale_cache()
