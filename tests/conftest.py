"""Shared test settings: hypothesis profiles, the `slow` marker, and the test folders on the import path.

`pytest` skips tests marked slow (subprocesses: the CUDA simulator, PTX compiles, signals sent to real
runs) so the default run stays under a minute on 2 cores; `pytest --slow` (what CI runs) includes them.
Hypothesis runs the "dev" profile by default and "ci" with --slow (more examples); HYPOTHESIS_PROFILE
picks one explicitly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# tests/ follows rfsweep's layers (tests/engine, tests/output, ...); the helpers (naive.py, docs_pages.py,
# paths.py, dataset_check.py) sit at the top, and a test module may take another's spaces (test_dask uses
# test_dataset's runs): every folder of tests/ is importable by module name, as the flat folder was
_HERE = Path(__file__).resolve().parent
for _folder in sorted(
    p
    for p in _HERE.iterdir()
    if p.is_dir() and p.name.isidentifier() and not p.name.startswith("_") and p.name != "reference"
):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (CI does)")


def pytest_configure(config):
    profile = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if config.getoption("--slow") else "dev")
    settings.load_profile(profile)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
