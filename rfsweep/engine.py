"""Plans the work, runs the kernels, streams survivor batches in depth-first order.

The tree of candidates is cut into tasks (prefixes); a count pass gives each task's number of
survivors; tasks with more than a slab's worth are split into their children; consecutive tasks are
grouped into slabs of at most ``slab_rows`` rows, and a fill pass writes each slab. Memory is bounded
by the slab, however many candidates survive, and the rows come out in the same order whatever the
number of threads or the device.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from rfsweep.errors import field_error
from rfsweep.kernels import layer_math as lm
from rfsweep.space import Space

log = logging.getLogger("rfsweep")

SLAB_ROWS = 1 << 20  # ~1M rows a slab; the sink cuts it into Parquet row groups of 512K (sink.ROW_GROUP_ROWS)
CHUNK_TASKS = 1 << 16
TASKS_PER_THREAD = 512


@dataclass
class Batch:
    """Survivors in depth-first order: ``out[:, O_*]`` metrics, ``choice[:, p]`` choice indices."""

    out: np.ndarray
    choice: np.ndarray

    def __len__(self) -> int:
        return self.out.shape[0]


@dataclass
class Stats:
    space_size: int = 0
    evaluated: int = 0
    kept: int = 0
    tasks: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.space_size / self.seconds if self.seconds > 0 else float("inf")

    @property
    def pruned(self) -> int:
        """Candidates never evaluated: their prefix was cut by a bound."""
        return self.space_size - self.evaluated


def _backend(device: str):
    """The module with run_tasks for this device: kernels.cpu or kernels.cuda."""
    if device == "cpu":
        from rfsweep.kernels import cpu

        return cpu, "cpu"
    from rfsweep import gpu

    return gpu.backend(device)


def kernels_cached() -> bool:
    """Whether the CPU kernels' compiled code is in numba's on-disk cache (False: the first call compiles)."""
    import os

    from rfsweep.kernels import cpu

    try:
        return os.path.exists(cpu.run_tasks._cache._cache_file._index_path)
    except AttributeError:  # numba's cache internals moved: say nothing rather than guess
        return True


def task_depth(space: Space, threads: int) -> int:
    """Prefix length of the first cut: enough tasks to balance the threads, no deeper than needed."""
    want = max(64, threads * TASKS_PER_THREAD)
    q, n = 0, 1
    while q < space.depth_max and n < want:
        n *= space.radices[q]
        q += 1
    return q


def _prefixes(space: Space, q: int, start: int, stop: int) -> np.ndarray:
    """Rows = prefixes of length q with mixed-radix index start..stop-1, padded to depth_max."""
    ids = np.arange(start, stop, dtype=np.int64)
    out = np.zeros((stop - start, space.depth_max), np.int64)
    for p in range(q - 1, -1, -1):
        r = space.radices[p]
        out[:, p] = ids % r
        ids //= r
    return out


def _split(space: Space, tasks, plens, counts, evals, limit: int, count_pass):
    """Replace every task with more than ``limit`` survivors by its children, recursively, in order."""
    while True:
        big = np.nonzero((counts > limit) & (plens < space.depth_max))[0]
        if big.size == 0:
            return tasks, plens, counts, evals
        pieces: list[tuple] = []
        prev = 0
        for i in big:
            pieces.append((tasks[prev:i], plens[prev:i], counts[prev:i], evals[prev:i]))
            r = space.radices[plens[i]]
            kids = np.repeat(tasks[i : i + 1], r, axis=0)
            kids[:, plens[i]] = np.arange(r)
            kl = np.full(r, plens[i] + 1, np.int64)
            pieces.append((kids, kl, *count_pass(kids, kl)))
            prev = i + 1
        pieces.append((tasks[prev:], plens[prev:], counts[prev:], evals[prev:]))
        tasks, plens, counts, evals = (np.concatenate([p[k] for p in pieces]) for k in range(4))


class _Runner:
    """Binds a space's kernel arrays to a backend's run_tasks."""

    def __init__(self, space: Space, device: str, stats: Stats):
        self.space = space
        self.backend, stats.device = _backend(device)
        if stats.device == "cpu" and not kernels_cached():
            log.info("compiling the numba kernels (once per install, about 10 s)...")
        self.arrays = space.kernel_arrays()
        self.dummy_out = np.zeros((1, lm.NO), np.int64)
        self.dummy_ch = np.zeros((1, max(1, space.depth_max)), np.int16)

    def run(self, mode, tasks, plens, rows0, out=None, out_ch=None):
        a = self.arrays
        return self.backend.run_tasks(
            mode,
            tasks,
            plens,
            rows0,
            a["choices"],
            a["nch"],
            a["cons"],
            a["jumps"],
            a["anchors"],
            a["growth"],
            a["dep_off"],
            self.dummy_out if out is None else out,
            self.dummy_ch if out_ch is None else out_ch,
        )

    def count_pass(self, tasks, plens):
        """(survivors, candidates evaluated) per task."""
        evals = np.zeros(len(tasks), np.int64)
        counts = self.run(0, tasks, plens, evals)
        return counts, evals


def _chunks(space: Space, threads: int | None, stats: Stats):
    """The first cut of the tree, in chunks of at most CHUNK_TASKS prefixes: (tasks, plens, done, total)."""
    import numba

    q = task_depth(space, threads or numba.get_num_threads())
    total = math.prod(space.radices[:q])
    stats.tasks = total
    for start in range(0, total, CHUNK_TASKS):
        stop = min(total, start + CHUNK_TASKS)
        yield _prefixes(space, q, start, stop), np.full(stop - start, q, np.int64), stop, total


class _Threads:
    """Run with a given number of numba threads, restoring the previous number after."""

    def __init__(self, threads: int | None):
        self.threads = threads

    def __enter__(self):
        import numba

        self.old = numba.get_num_threads()
        # dynamic scheduling: subtrees differ in size by orders of magnitude, and a static split of
        # the task range left one of two cores idle for most of the R7 count
        self.chunk = numba.get_parallel_chunksize()
        numba.set_parallel_chunksize(1)
        if self.threads:
            if not 1 <= self.threads <= numba.config.NUMBA_NUM_THREADS:
                raise field_error("threads", self.threads, f"must be in 1..{numba.config.NUMBA_NUM_THREADS}")
            numba.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc):
        import numba

        numba.set_num_threads(self.old)
        numba.set_parallel_chunksize(self.chunk)
        return False


def count_by_enumeration(
    space: Space, *, device: str = "cpu", threads: int | None = None, stats: Stats | None = None
) -> int:
    """Exact number of survivors by walking the tree (every constraint; pruned subtrees skipped)."""
    stats = stats if stats is not None else Stats()
    stats.space_size = space.size
    runner = _Runner(space, device, stats)
    t0 = time.perf_counter()
    total = 0
    with _Threads(threads):
        for tasks, plens, _, _ in _chunks(space, threads, stats):
            counts, evals = runner.count_pass(tasks, plens)
            total += int(counts.sum())
            stats.evaluated += int(evals.sum())
    stats.kept = total
    stats.seconds = time.perf_counter() - t0
    return total


def iter_batches(
    space: Space,
    *,
    slab_rows: int = SLAB_ROWS,
    threads: int | None = None,
    device: str = "cpu",
    stats: Stats | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    reuse_buffers: bool = False,
) -> Iterator[Batch]:
    """Yield the survivors in depth-first order, in batches of at most ``slab_rows`` rows.

    (A task that cannot be split further, a prefix of full depth, holds at most depth_max + 1 rows, so
    a batch exceeds ``slab_rows`` only when ``slab_rows`` is below that.) ``progress(done, total,
    kept)`` is called after each chunk of tasks. With ``reuse_buffers`` every batch is a view of the
    same two buffers, valid until the next batch is asked for: fresh 1M-row buffers cost ~0.1 s of
    page faults each, a third of the fill pass on R7.
    """
    buffers: list[np.ndarray] = []

    def slab(rows: int) -> tuple[np.ndarray, np.ndarray]:
        if not reuse_buffers:
            return np.empty((rows, space.out_width), np.int64), np.zeros((rows, max(1, space.depth_max)), np.int16)
        if not buffers or buffers[0].shape[0] < rows:
            buffers[:] = [
                np.empty((rows, space.out_width), np.int64),
                np.zeros((rows, max(1, space.depth_max)), np.int16),
            ]
        return buffers[0][:rows], buffers[1][:rows]

    stats = stats if stats is not None else Stats()
    stats.space_size = space.size
    runner = _Runner(space, device, stats)
    t0 = time.perf_counter()
    try:
        with _Threads(threads):
            for tasks, plens, done, total in _chunks(space, threads, stats):
                counts, evals = runner.count_pass(tasks, plens)
                tasks, plens, counts, evals = _split(space, tasks, plens, counts, evals, slab_rows, runner.count_pass)
                stats.evaluated += int(evals.sum())
                keep = counts > 0
                tasks, plens, counts = tasks[keep], plens[keep], counts[keep]
                i = 0
                while i < len(counts):
                    # group consecutive tasks into one slab of at most slab_rows rows
                    acc = np.cumsum(counts[i:])
                    j = i + max(1, int(np.searchsorted(acc, slab_rows, side="right")))
                    rows = int(acc[j - i - 1])
                    rows0 = np.zeros(j - i, np.int64)
                    rows0[1:] = acc[: j - i - 1]
                    out, out_ch = slab(rows)
                    runner.run(1, tasks[i:j], plens[i:j], rows0, out, out_ch)
                    stats.kept += rows
                    yield Batch(out, out_ch)
                    i = j
                if progress is not None:
                    progress(done, total, stats.kept)
    finally:
        stats.seconds = time.perf_counter() - t0
