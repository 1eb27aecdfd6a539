"""The walk's tasks spread over threads (rfsweep.engine.threads): spans, results, errors, the stop flag."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rfsweep.engine import threads
from rfsweep.engine.run import Stats, _Runner, prefixes
from rfsweep.space import build_space


@given(n=st.integers(0, 5000), n_threads=st.integers(1, 16))
def test_spans_cover_every_task_once_in_order_and_shrink(n, n_threads):
    spans = threads.spans(n, n_threads)
    assert [a for a, _ in spans] == ([0] if n else []) + [b for _, b in spans[:-1]]
    assert (spans[-1][1] if spans else 0) == n
    sizes = [b - a for a, b in spans]
    assert all(s >= 1 for s in sizes) and sizes == sorted(sizes, reverse=True)
    if n:
        assert sizes[-1] == 1  # the last claims are single tasks: the threads finish together


def _kernel(seen):
    """A stand-in kernel: records its span and thread, writes count = 10 x task and evals = task."""

    def kernel(mode, tasks, plens, rows0, K, ctl, counts, evals, *shared):
        seen.append((threading.current_thread().name, len(tasks)))
        counts[:] = tasks[:, 0] * 10
        evals[:] = tasks[:, 0]

    return kernel


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_every_task_gets_its_own_results_whatever_the_threads(n_threads):
    n = 1000
    tasks = np.arange(n, dtype=np.int64)[:, None]
    counts, evals = np.zeros(n, np.int64), np.full(n, -1, np.int64)
    seen: list = []
    ctl = np.zeros(2, np.int64)
    threads.run_spread(_kernel(seen), n_threads, 0, tasks, tasks[:, 0], tasks[:, 0], None, ctl, counts, evals, "out")
    assert list(counts) == list(range(0, 10 * n, 10)) and list(evals) == list(range(n))
    assert sum(k for _, k in seen) == n
    assert len({name for name, _ in seen}) <= n_threads


def test_an_error_in_a_thread_is_raised_to_the_caller_and_the_stop_flag_stops_the_claims():
    n = 500
    tasks = np.arange(n, dtype=np.int64)[:, None]
    counts, evals = np.zeros(n, np.int64), np.full(n, -1, np.int64)

    def failing(mode, tasks, *rest):
        if tasks[0, 0] > 100:
            raise ValueError("bad task")

    with pytest.raises(ValueError, match="bad task"):
        threads.run_spread(failing, 2, 0, tasks, tasks[:, 0], tasks[:, 0], None, np.zeros(2, np.int64), counts, evals)
    ctl = np.zeros(2, np.int64)
    calls = []

    def stopping(mode, tasks, *rest):
        calls.append(len(tasks))
        ctl[0] = 1  # the host raised the stop flag during the first span

    threads.run_spread(stopping, 2, 0, tasks, tasks[:, 0], tasks[:, 0], None, ctl, counts, evals)
    assert len(calls) <= 2  # at most one span a thread once the flag is up


def test_the_count_pass_by_lookup_and_by_walking_agree_on_several_threads():
    """Mode 2 (prefix walk + suffix table) and mode 0 (the walk) through the spreader, 1 and 2 threads."""
    space = build_space(dict(depth="1-5", ops=["conv", "maxpool"], kernels=[1, 3, 5], strides=[1, 2], rf_min=20,
                             rf_max=40, channels=[4], input_size=64))  # fmt: skip
    tasks = prefixes(space, 2, 0, space.radices[0] * space.radices[1])
    plens = np.full(len(tasks), 2, np.int64)
    got = []
    for n_threads in (1, 2):
        for use_table in (True, False):
            runner = _Runner(space, "cpu", Stats(), n_threads, use_table=use_table)
            counts, _ = runner.count_pass(tasks, plens)
            assert runner.walked is not use_table
            got.append(list(counts))
    assert all(g == got[0] for g in got) and sum(got[0]) > 0


@given(n=st.integers(0, 300), n_threads=st.integers(1, 6))
def test_spread_runs_every_task_once_with_a_slot_per_thread(n, n_threads):
    """threads.spread (the Parquet encoder's): every task once, each thread a slot of its own in 0..threads-1
    (its scratch rows), an error raised to the caller."""
    done = np.zeros(n, np.int64)
    slots: dict[str, set] = {}

    def kernel(first, last, slot, out):
        slots.setdefault(threading.current_thread().name + str(threading.get_ident()), set()).add(slot)
        out[first:last] += 1

    threads.spread(kernel, n_threads, n, done)
    assert list(done) == [1] * n
    assert all(len(s) == 1 for s in slots.values())
    assert sorted(s for v in slots.values() for s in v) == sorted({s for v in slots.values() for s in v})
    assert all(0 <= s < max(1, min(n_threads, n)) for v in slots.values() for s in v)

    def failing(first, last, slot):
        if last > n // 2:
            raise ValueError("bad task")

    if n:
        with pytest.raises(ValueError, match="bad task"):
            threads.spread(failing, n_threads, n)
