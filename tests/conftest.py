"""Shared test settings: hypothesis profiles and the `slow` marker.

`pytest` skips tests marked slow (subprocesses: the CUDA simulator, PTX compiles, signals sent to real
runs) so the default run stays under a minute on 2 cores; `pytest --slow` (what CI runs) includes them.
Hypothesis runs the "dev" profile by default and "ci" with --slow (more examples); HYPOTHESIS_PROFILE
picks one explicitly.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

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
