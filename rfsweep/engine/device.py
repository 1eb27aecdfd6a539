"""Picks the CUDA backend for ``device="cuda"`` or ``"auto"``; ``"cpu"`` never comes here.

``numba.cuda`` is imported only inside these functions, and ``rfsweep.kernels.cuda`` (the CUDA
kernels) only once a usable GPU was found, so the CPU path never touches either. Under the CUDA
simulator (NUMBA_ENABLE_CUDASIM=1 set before numba is imported) a GPU is "visible": that is how the
tests run the CUDA kernels on machines without one.
"""

from __future__ import annotations

from rfsweep.core.errors import RFSweepError, field_error

DEVICES = ("cpu", "cuda", "auto")
INSTALL_HINT = "install rfsweep[cuda] with numba-cuda[cu12] or numba-cuda[cu13], and an NVIDIA driver"


def _device_error(device: str, why: str) -> RFSweepError:
    return field_error("device", device, why)


def cuda_problem() -> str | None:
    """None when numba.cuda can run kernels here, else why not (one line, no trailing period)."""
    try:
        from numba import config, cuda
    except Exception as exc:  # numba without its CUDA target, or a broken install
        return f"numba.cuda cannot be imported ({type(exc).__name__}); {INSTALL_HINT}"
    if config.ENABLE_CUDASIM:
        return None
    try:
        visible = cuda.is_available()
    except Exception:  # is_available() should not raise; treat any failure as "no GPU"
        visible = False
    if not visible:
        return f"no CUDA GPU is visible to numba; {INSTALL_HINT}"
    try:
        from numba.cuda.cudadrv import nvvm

        toolkit = nvvm.is_available()
    except Exception:
        toolkit = False
    if not toolkit:
        return f"a GPU is visible but numba finds no CUDA toolkit (NVVM); {INSTALL_HINT}"
    return None


def simulated() -> bool:
    """True when numba runs CUDA kernels in its simulator (NUMBA_ENABLE_CUDASIM=1)."""
    try:
        from numba import config
    except Exception:
        return False
    return bool(config.ENABLE_CUDASIM)


def describe() -> str:
    """The GPU numba.cuda would use, in words ("CUDA simulator" under the simulator)."""
    if simulated():
        return "CUDA simulator"
    from numba import cuda

    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def backend(device: str):
    """(module with run_tasks, name) for ``device`` in {"cuda", "auto"} ("cpu" is accepted too).

    "auto" is the GPU when numba.cuda can use one, else the CPU. "cuda" without a usable GPU raises
    RFSweepError with one line naming the field, the value and the reason.
    """
    if device not in DEVICES:
        raise _device_error(device, f"must be one of {', '.join(DEVICES)}")
    if device != "cpu":
        why = cuda_problem()
        if why is None:
            from rfsweep.kernels import cuda as cuda_kernels

            return cuda_kernels, "cuda"
        if device == "cuda":
            raise _device_error(device, why)
    from rfsweep.kernels import cpu

    return cpu, "cpu"
