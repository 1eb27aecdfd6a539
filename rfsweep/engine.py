"""Plans the work, runs the kernels, streams survivor batches in depth-first order.

The tree of candidates is cut into tasks (prefixes); a count pass gives each task's number of
survivors; tasks with more than a slab's worth are split into their children; consecutive tasks are
grouped into slabs of at most ``slab_rows`` rows, and a fill pass writes each slab. Memory is bounded
by the slab, however many candidates survive, and the rows come out in the same order whatever the
number of threads or the device.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from rfsweep.errors import RFSweepError
from rfsweep.kernels import layer_math as lm
from rfsweep.space import Space

SLAB_ROWS = 1 << 20  # ~1M rows: one Parquet row group per slab (pyarrow writes a group per table)
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
    kept: int = 0
    tasks: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.space_size / self.seconds if self.seconds > 0 else float("inf")


def _backend(device: str):
    """The module with run_tasks for this device: kernels.cpu or kernels.cuda."""
    if device == "cpu":
        from rfsweep.kernels import cpu

        return cpu, "cpu"
    from rfsweep import gpu

    return gpu.backend(device)


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


def _split(space: Space, tasks: np.ndarray, plens: np.ndarray, counts: np.ndarray, limit: int, run):
    """Replace every task with more than ``limit`` survivors by its children, recursively, in order."""
    while True:
        big = np.nonzero((counts > limit) & (plens < space.depth_max))[0]
        if big.size == 0:
            return tasks, plens, counts
        pieces_t, pieces_l, pieces_c = [], [], []
        prev = 0
        for i in big:
            pieces_t.append(tasks[prev:i])
            pieces_l.append(plens[prev:i])
            pieces_c.append(counts[prev:i])
            r = space.radices[plens[i]]
            kids = np.repeat(tasks[i:i + 1], r, axis=0)
            kids[:, plens[i]] = np.arange(r)
            kl = np.full(r, plens[i] + 1, np.int64)
            pieces_t.append(kids)
            pieces_l.append(kl)
            pieces_c.append(run(0, kids, kl, np.zeros(r, np.int64)))
            prev = i + 1
        pieces_t.append(tasks[prev:])
        pieces_l.append(plens[prev:])
        pieces_c.append(counts[prev:])
        tasks, plens, counts = np.concatenate(pieces_t), np.concatenate(pieces_l), np.concatenate(pieces_c)


def iter_batches(space: Space, *, slab_rows: int = SLAB_ROWS, threads: int | None = None, device: str = "cpu",
                 stats: Stats | None = None, progress: Callable[[int, int, int], None] | None = None
                 ) -> Iterator[Batch]:
    """Yield survivor batches of at most ``slab_rows`` rows (more only if one prefix's own... never).

    ``progress(done_tasks, total_tasks, kept)`` is called after every slab.
    """
    import numba

    stats = stats if stats is not None else Stats()
    stats.space_size = space.size
    backend, stats.device = _backend(device)
    arrays = space.kernel_arrays()
    nthreads = threads or numba.get_num_threads()
    dummy_out = np.zeros((1, lm.NO), np.int64)
    dummy_ch = np.zeros((1, max(1, space.depth_max)), np.int16)

    def run(mode, tasks, plens, rows0, out=dummy_out, out_ch=dummy_ch):
        return backend.run_tasks(mode, tasks, plens, rows0, arrays["choices"], arrays["nch"], arrays["cons"],
                                 arrays["jumps"], arrays["growth"], arrays["dep_off"], out, out_ch)

    q = task_depth(space, nthreads)
    total = math.prod(space.radices[:q])
    stats.tasks = total
    t0 = time.perf_counter()
    old_threads = numba.get_num_threads()
    if threads:
        if threads > numba.config.NUMBA_NUM_THREADS:
            raise RFSweepError(f"field 'threads': value {threads}: at most {numba.config.NUMBA_NUM_THREADS}")
        numba.set_num_threads(threads)
    try:
        for start in range(0, total, CHUNK_TASKS):
            stop = min(total, start + CHUNK_TASKS)
            tasks = _prefixes(space, q, start, stop)
            plens = np.full(stop - start, q, np.int64)
            counts = run(0, tasks, plens, np.zeros(stop - start, np.int64))
            tasks, plens, counts = _split(space, tasks, plens, counts, slab_rows, run)
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
                out = np.empty((rows, lm.NO), np.int64)
                out_ch = np.zeros((rows, max(1, space.depth_max)), np.int16)
                run(1, tasks[i:j], plens[i:j], rows0, out, out_ch)
                stats.kept += rows
                yield Batch(out, out_ch)
                i = j
            if progress is not None:
                progress(stop, total, stats.kept)
    finally:
        if threads:
            numba.set_num_threads(old_threads)
        stats.seconds = time.perf_counter() - t0
