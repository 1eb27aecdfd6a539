"""Tasks spread over threads: a one-thread kernel that releases the GIL, called on spans of the tasks.

The walk (``kernels.cpu.run_tasks``) is compiled as a plain nogil kernel and parallelised here rather than
with numba's ``prange``: the parallel kernel cost ~2 s more of a first run's compile on 2 cores (parfor
lowering and the gufunc around its body; benchmarks/bench_cold.py --compiles) for the same walk. The
threads claim spans of consecutive tasks from a shared cursor, largest first and shrinking as the
tasks run out (guided scheduling), so a few hundred calls balance subtrees whose sizes differ by orders
of magnitude. Each task writes only its own ``counts``/``evals`` entries and rows, so the results do
not depend on the number of threads or on which thread ran a span.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

SPANS_PER_THREAD = 8  # a claim takes 1 / (threads x this) of the tasks left (at least one task)


def spans(n: int, threads: int) -> list[tuple[int, int]]:
    """The spans [a, b) the threads claim in turn, in order: each ``ceil(left / (threads x SPANS_PER_THREAD))``
    tasks long, so they cover 0..n and shrink to single tasks at the end."""
    out = []
    at = 0
    while at < n:
        size = -(-(n - at) // (threads * SPANS_PER_THREAD))
        out.append((at, at + size))
        at += size
    return out


def run_spread(kernel: Callable, threads: int, mode, tasks, plens, rows0, K, ctl, counts, evals, *shared) -> None:
    """``kernel(mode, tasks, plens, rows0, K, ctl, counts, evals, *shared)`` (kernels.cpu.run_tasks) on spans
    of the tasks, in ``threads`` threads (:func:`spread`). The per-task arrays are sliced (views,
    C-contiguous: one compiled signature); ``shared`` (the output slabs, each task writing its own rows,
    and the lookup table) are passed whole. A raised ``ctl[0]`` (the stop flag) also stops the spans not
    yet begun. The first exception a thread meets is raised here once every thread has returned."""

    def span(a: int, b: int, slot: int) -> None:
        if ctl[0] == 0:
            kernel(mode, tasks[a:b], plens[a:b], rows0[a:b], K, ctl, counts[a:b], evals[a:b], *shared)

    spread(span, threads, len(tasks), name="rfsweep-walk")


def spread(kernel: Callable, threads: int, n: int, *args, name: str = "rfsweep-encode") -> None:
    """``kernel(first, last, slot, *args)`` on spans [first, last) of ``n`` independent tasks (:func:`spans`),
    in ``threads`` threads (this one and ``threads - 1`` daemon threads named ``name``), each claiming the
    next span from a shared cursor when it is done with its last; ``slot`` (0 .. threads - 1) names the
    calling thread, for its scratch rows. The walk (:func:`run_spread`) and the Parquet encoder
    (kernels.encode.encode_tasks, a few dozen tasks a call) run this way. The first exception a thread
    meets is raised here once every thread has returned, and stops the claiming."""
    threads = max(1, min(threads, n))
    if threads == 1:
        if n:
            kernel(0, n, 0, *args)
        return
    todo = spans(n, threads)
    lock = threading.Lock()
    cursor = [0]
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        while not errors:
            with lock:
                i = cursor[0]
                cursor[0] = i + 1
            if i >= len(todo):
                return
            try:
                kernel(todo[i][0], todo[i][1], slot, *args)
            except BaseException as exc:  # handed to the caller
                errors.append(exc)
                return

    helpers = [threading.Thread(target=work, args=(k,), name=name, daemon=True) for k in range(1, threads)]
    for t in helpers:
        t.start()
    work(0)
    for t in helpers:
        t.join()
    if errors:
        raise errors[0]
