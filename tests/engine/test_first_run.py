"""What the main job compiles on a first run (issue 24: compile less, not later): one signature per kernel,
the walk without the blocks path, one counting programme. Seconds are benchmarks/bench_cold.py's, never
asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

MAIN_JOB = ["search", "--target-rf", "224", "--min-convs", "5", "--sort", "params", "--limit", "1000"]

PROBE = """
import json, sys
from numba.core import event
compiled = []
class Listen(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Listen())
from rfsweep.cli.main import main
try:
    main(sys.argv[1:] + ["-q"], standalone_mode=False)
except SystemExit:
    pass
from rfsweep.kernels import cpu
signatures = {name: [str(s) for s in d.signatures] for name, d in vars(cpu).items() if hasattr(d, "signatures")}
print(json.dumps({"compiled": compiled, "signatures": signatures}))
"""


@pytest.mark.slow
def test_the_main_job_compiles_each_kernel_once_and_only_what_a_chain_needs(tmp_path):
    env_cache = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}  # empty: everything is compiled, as after an install
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *MAIN_JOB, "-o", str(tmp_path / "c.parquet")],
        capture_output=True, text=True, timeout=300, env={**os.environ, **env_cache}, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    used = {name: sigs for name, sigs in got["signatures"].items() if sigs}
    # the walk (with the count pass's lookup) and the suffix table, which also gives "of N matching"
    assert sorted(used) == ["run_tasks", "suffix_table"]
    assert all(len(sigs) == 1 for sigs in used.values()), used
    assert "none)" in used["run_tasks"][0]  # KernelArrays.blocks is None: a chain
    assert "blocks_child" not in got["compiled"] and "count_dp" not in got["compiled"]
