"""The CUDA backend: identical rows to the CPU (under numba's CUDA simulator here, on a GPU where one
exists), kernels that compile for a real GPU (PTX through NVVM, where a CUDA toolkit is installed), a
clear error for ``--device cuda`` without a GPU, and ``auto`` falling back to the CPU.

NUMBA_ENABLE_CUDASIM must be set before numba is first imported, and this process has already imported
numba without it, so the simulator runs in a subprocess (tests/cuda_sim_check.py). Tests marked
``gpu`` need a real GPU and skip cleanly without one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from paths import ROOT, TESTS

HERE = TESTS  # the helper scripts run by path live at the top of tests/


def _env(simulate: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def _gpu_usable() -> bool:
    """A real GPU that numba.cuda can use, asked in a plain subprocess (no simulator)."""
    code = "from rfsweep.engine import device as gpu; import sys; sys.exit(0 if gpu.cuda_problem() is None else 1)"
    return (
        subprocess.run([sys.executable, "-c", code], env=_env(False), capture_output=True, timeout=120).returncode == 0
    )


@pytest.mark.slow
def test_cuda_kernels_match_cpu_under_simulator():
    proc = subprocess.run(
        [sys.executable, str(HERE / "cuda_sim_check.py")], env=_env(True), capture_output=True, text=True, timeout=600
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("all identical")
    assert "BAD" not in proc.stdout


@pytest.mark.slow
def test_cuda_kernels_compile_for_a_real_gpu():
    """Types and compiles the kernels to PTX with NVVM (no GPU needed): the simulator checks no types."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "cuda_ptx_check.py")], env=_env(False), capture_output=True, text=True, timeout=600
    )
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip() or "cannot compile CUDA kernels here")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BAD" not in proc.stdout


def test_device_cuda_without_gpu_is_one_line_exit_2(tmp_path):
    if _gpu_usable():
        pytest.skip("a CUDA GPU is usable here")
    code = "from rfsweep.cli.main import main; main()"
    for args in (
        ["count", "--depth", "2", "--method", "enumerate", "--device", "cuda"],
        ["search", "--depth", "2", "--device", "cuda", "-o", str(tmp_path / "x.parquet")],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], env=_env(False), capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: field 'device': value \"cuda\": "), lines[0]
        assert "rfsweep[cuda]" in lines[0]
        assert not (tmp_path / "x.parquet").exists()


def test_backend_errors_and_auto_fallback():
    from rfsweep.core.errors import RFSweepError
    from rfsweep.engine import device as gpu

    with pytest.raises(RFSweepError, match=r"^field 'device': value \"tpu\": must be one of cpu, cuda, auto$"):
        gpu.backend("tpu")
    if gpu.simulated() or gpu.cuda_problem() is None:
        pytest.skip("numba.cuda can run kernels in this process")
    mod, name = gpu.backend("auto")
    assert (mod.__name__, name) == ("rfsweep.kernels.cpu", "cpu")
    with pytest.raises(RFSweepError) as info:
        gpu.backend("cuda")
    assert "\n" not in str(info.value) and str(info.value).startswith("field 'device': value \"cuda\": ")


def test_cpu_path_never_imports_cuda():
    code = (
        "import sys\n"
        "from rfsweep.engine import run as engine\n"
        "from rfsweep.space import build_space\n"
        "sp = build_space({'depth': 2, 'target_rf': 7})\n"
        "n = sum(len(b) for b in engine.iter_batches(sp, device='cpu'))\n"
        "assert n > 0\n"
        "bad = [m for m in ('numba.cuda', 'rfsweep.kernels.cuda', 'rfsweep.engine.device') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(False), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- real GPU only


def _real_gpu() -> bool:
    from rfsweep.engine import device as gpu

    return not gpu.simulated() and gpu.cuda_problem() is None


MEDIUM = {
    # 20^5 = 3.2M candidates, the R7 benchmark's choices two layers shorter
    "r5-window": {
        "depth": 5,
        "ops": ["conv"],
        "kernels": [1, 3, 5, 7],
        "strides": [1, 2],
        "dilations": [1, 2, 3],
        "channels": [32],
        "padding": "same",
        "input_size": 224,
        "rf_min": 100,
        "rf_max": 140,
    },
    # pools, the width rule, valid padding, budgets, jumps and a depth range
    "mixed": {
        "depth": "2-6",
        "ops": ["conv", "maxpool", "avgpool"],
        "kernels": [1, 3, 5],
        "strides": [1, 2],
        "pool_kernels": [2, 3],
        "padding": "valid",
        "input_size": 96,
        "rf_min": 20,
        "max_params": 300_000,
        "jump": [4, 8, 16],
    },
}


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(MEDIUM))
def test_gpu_matches_cpu(name):
    if not _real_gpu():
        pytest.skip("needs a CUDA GPU usable by numba (rfsweep[cuda] and an NVIDIA driver)")
    from rfsweep.engine import run as engine
    from rfsweep.space import build_space

    space = build_space(MEDIUM[name])
    got = {}
    for device in ("cpu", "cuda"):
        stats = engine.Stats()
        batches = list(engine.iter_batches(space, device=device, stats=stats))
        assert stats.device == device
        got[device] = (
            np.concatenate([b.out for b in batches], axis=1),
            np.concatenate([b.choice for b in batches], axis=1),
            [len(b) for b in batches],
        )
    assert got["cpu"][0].shape[1] > 0
    assert np.array_equal(got["cpu"][0], got["cuda"][0])
    assert np.array_equal(got["cpu"][1], got["cuda"][1])
    assert got["cpu"][2] == got["cuda"][2]
    # out is (fields, rows): the survivors are its columns
    assert engine.count_by_enumeration(space, device="cuda") == got["cpu"][0].shape[1]


@pytest.mark.slow
def test_bench_cuda_runs_under_simulator():
    """benchmarks/bench_cuda.py takes its GPU path (simulated, depth 2) and prints both devices' rows."""
    bench = ROOT / "benchmarks" / "bench_cuda.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--depth", "2", "--repeat", "1", "--simulator-ok"],
        env=_env(True),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("count rf [200, 250]  cuda") for line in lines), proc.stdout
    assert any(line.startswith("search rf [223, 225] cuda") for line in lines), proc.stdout
