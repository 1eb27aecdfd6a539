"""Shards of a sweep: contiguous ranges of the engine's first-cut tasks, and the jobs a worker runs on them.

A shard is a range of prefixes; a worker (a Dask worker process, or this process) rebuilds the space from
its settings (no large pickles), runs the same engine on the range (:class:`rfsweep.engine.run.Plan` with ``q``
and ``task_range``) and writes its part with the same sink as a whole search. Consecutive shards' rows, in
order, are the rows of the whole run, so the parts of a dataset read in name order are the file a single
process writes. Nothing here computes a metric: it plans ranges, runs the engine, and merges what the
selections keep (:class:`rfsweep.engine.select.TopK`, :class:`rfsweep.engine.select.Front`) exactly as one process does.

The job functions (:func:`run_shard`, :func:`count_range`, :func:`warm`) take and return plain dicts of
small values: they travel to Dask workers by reference (this module is imported there) and run one at a
time in a process (a lock), whatever the worker's thread count, because each kernel call already uses
every numba thread of the process.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import math
import os
import socket
import threading
import time
from dataclasses import asdict

import numpy as np

from rfsweep.core.errors import RFSweepError, field_error
from rfsweep.engine import run as engine
from rfsweep.engine import select
from rfsweep.output import dataset, sink
from rfsweep.output import parquet as parquet_out
from rfsweep.output.batches import selected_batches

# Many more shards than workers: subtrees differ in size by orders of magnitude even after balancing by
# survivors (the walk's cost also follows pruned prefixes), so a worker that draws a slow shard must not
# hold up the end; 8 a worker kept both workers of local:2 busy to within a shard on R7.
SHARDS_PER_WORKER = 8
# A part holds at most ~8M rows (~45 MB in the wide layout) when the plan's count allows: parts stay a
# comfortable unit for readers (row groups of 512K rows) and for --resume.
PART_ROWS = 1 << 23
RANGES_PER_WORKER = 16  # ranges of a distributed count pass, per worker (even splits of the task list)
STOP_WAIT_SECONDS = 2.0  # how long stop_run waits for a stopped shard to remove its temporary part

_LOCK = threading.Lock()
_STOPPED: set[str] = set()
_ACTIVE: collections.Counter = collections.Counter()


class ShardStopped(RuntimeError):
    """The run this shard belongs to was stopped (Ctrl-C or an error on the client)."""


@functools.lru_cache(maxsize=8)
def _space_from(settings_json: str, for_search: bool):
    from rfsweep.space import build_space

    return build_space(json.loads(settings_json), for_search=for_search)


def space_of(settings: dict, for_search: bool = True):
    """The Space of these settings, built once per process (jobs carry settings, never a Space)."""
    return _space_from(json.dumps(settings, sort_keys=True), for_search)


def _check_version(job: dict) -> None:
    from rfsweep.core.version import __version__

    if job["version"] != __version__:
        raise RFSweepError(
            f"worker {socket.gethostname()} (pid {os.getpid()}) runs rfsweep {__version__}, the client "
            f"{job['version']}: install the same version on every worker"
        )


@contextlib.contextmanager
def _running(run: str):
    with _LOCK:
        _ACTIVE[run] += 1
        try:
            if run in _STOPPED:  # stopped while this job waited for the process's lock
                raise ShardStopped(run)
            yield
        finally:
            _ACTIVE[run] -= 1


def _watch(run: str, outer=None):
    """An engine progress callback that stops the shard once its run is stopped (the engine calls it
    several times a second from the thread waiting on the kernel: raising there stops the kernel within
    a few thousand nodes, and the sink removes its temporary part)."""

    def progress(p):
        if run in _STOPPED:
            raise ShardStopped(run)
        if outer is not None:
            outer(p)

    return progress


def stop_run(run: str, wait: float = STOP_WAIT_SECONDS) -> int:
    """Stop this process's shards of ``run`` (called on every worker when the client stops); waits up to
    ``wait`` seconds for them to end. Returns how many were still running."""
    _STOPPED.add(run)
    deadline = time.monotonic() + wait
    while _ACTIVE[run] > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    return _ACTIVE[run]


def _engine_kw(job: dict, stats: engine.Stats, progress=None) -> dict:
    return dict(
        device=job["device"],
        threads=job["threads"],
        stats=stats,
        progress=_watch(job["run"], progress),
        q=job["q"],
        task_range=tuple(job["range"]),
    )


def run_shard(job: dict, progress=None) -> dict:
    """Run one shard: the survivors of its task range, selected as the run asks.

    ``job["kind"]``: ``rows`` writes the shard's rows (all, ``where``-filtered, or its first ``limit``) as
    the part ``job["name"]`` of the dataset at ``job["target"]``; ``sample`` writes the survivors of the
    shard-local ranks ``job["ranks"]`` (drawn on the client from the exact counts); ``merge`` returns the
    shard's best ``limit`` by ``sort`` or its Pareto front as arrays, for the client to merge.
    Returns ``{"index", "rows", "stats", "batch", "seconds", "worker"}`` (and ``"checksum"``, the SHA-256 of
    the part written), or ``{"index", "stopped": True}``
    when the run was stopped meanwhile (nothing written: the part's temporary file is removed).
    """
    _check_version(job)
    try:
        return _run_shard(job, progress)
    except ShardStopped:  # the client stopped the run and no longer waits for this: not a failure to log
        return {"index": job["index"], "stopped": True}


def _run_shard(job: dict, progress) -> dict:
    t0 = time.perf_counter()
    with _running(job["run"]):
        space = space_of(job["settings"])
        stats = engine.Stats()
        kw = _engine_kw(job, stats, progress)
        out = {"index": job["index"], "rows": 0, "batch": None}
        if job["kind"] == "merge":
            batches = [b.copy() for b in selected_batches(space, **job["selection"], **kw)]
            batch = engine.Batch.concat(batches) if batches else engine.Batch.empty(space)
            out["batch"], out["rows"] = (batch.out, batch.choice), len(batch)
        else:
            target = dataset.open_target(job["target"])
            sch = sink.schema(space, layout=job["columns"])
            if job["kind"] == "sample":
                ranks = np.asarray(job["ranks"], np.int64)
                batches = engine.CountedPlan(space, **kw).rows_at(ranks) if len(ranks) else iter(())
            else:
                batches = selected_batches(space, **job["selection"], **kw)
            meta = {**sink.metadata(space, job["meta"]), **dataset.part_record(job["index"], job["range"])}
            with dataset.part_writer(target, job["name"], sch, meta, space, job["threads"]) as part:
                for batch in batches:
                    if job["run"] in _STOPPED:
                        raise ShardStopped(job["run"])
                    if len(batch):
                        part.write_batch(batch)
            out["rows"], out["checksum"] = part.rows, part.checksum
    out["stats"] = asdict(stats)
    out["seconds"] = time.perf_counter() - t0
    out["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return out


def count_range(job: dict, progress=None) -> dict:
    """Count a range of first-cut tasks: per task (``per_task``, what the shard planner balances by; a
    table lookup where the constraints allow) or in all, by the pruned walk (``rfsweep count --method
    enumerate``). Returns ``{"index", "counts" or "count", "stats"}``."""
    _check_version(job)
    with _running(job["run"]):
        space = space_of(job["settings"], for_search=job.get("for_search", True))
        stats = engine.Stats()
        kw = _engine_kw(job, stats, progress)
        out = {"index": job["index"]}
        if job["per_task"]:
            out["counts"] = engine.CountedPlan(space, **kw).counts
        else:
            out["count"] = engine.count_by_enumeration(space, **kw)
    out["stats"] = asdict(stats)
    return out


def warm(job: dict) -> dict:
    """Load (or compile) every kernel a shard uses, on a tiny space, before the shards start; report this
    process's rfsweep version and numba threads (the client refuses a worker of another version)."""
    import numba

    from rfsweep.core.version import __version__

    t0 = time.perf_counter()
    with _running("warm"):
        space = space_of(dict(depth="1-2", kernels=[1, 3], strides=[1, 2], input_size=8))
        stats = engine.Stats()
        sch = sink.schema(space, layout=job["columns"])
        cols = parquet_out.plan(space, sch)
        encoder = parquet_out.Encoder(space, sch, cols) if cols is not None else None
        tables = sink.tables_for(space)
        for batch in engine.iter_batches(space, device=job["device"], stats=stats, q=1, task_range=(0, 2)):
            if encoder is not None:  # the writer of the wide and compact layouts (rfsweep.output.parquet)
                for part in encoder.encode(batch.out, batch.choice, [(0, len(batch))]):
                    encoder.release(part)
            else:
                sink.to_table(batch, space, tables, sch)
        engine.CountedPlan(space, device=job["device"], q=1).rows_at(np.array([0], np.int64))
        engine.count_by_enumeration(space, device=job["device"], q=1)
    return {
        "version": __version__,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "seconds": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------ planning (on the client)


def first_cut(space, shards_wanted: int) -> tuple[int, int]:
    """(q, tasks): the prefix length whose tasks number at least 512 a shard (engine.task_depth), so that
    shard boundaries can balance survivors finely."""
    q = engine.task_depth(space, max(64, shards_wanted))
    return q, math.prod(space.radices[:q])


def even_ranges(tasks: int, n: int) -> list[tuple[int, int]]:
    """``n`` contiguous ranges of about equal numbers of tasks (fewer when there are fewer tasks)."""
    n = max(1, min(n, tasks))
    bounds = [tasks * i // n for i in range(n + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def shard_count(rows: int | None, workers: int, distributed: bool, explicit: int | None) -> int:
    """How many shards: ``explicit``, else at least SHARDS_PER_WORKER a worker on a cluster (one shard in
    this process), and enough that no part holds more than PART_ROWS rows."""
    if explicit is not None:
        return explicit
    base = SHARDS_PER_WORKER * workers if distributed else 1
    return max(base, math.ceil((rows or 0) / PART_ROWS))


def split_ranks(ranks: np.ndarray, survivors: list[int]) -> list[np.ndarray]:
    """Global depth-first ranks (sorted) as each shard's local ranks, given the survivors of each shard."""
    starts = np.concatenate(([0], np.cumsum(np.asarray(survivors, np.int64))))
    cuts = np.searchsorted(ranks, starts)
    return [ranks[cuts[i] : cuts[i + 1]] - starts[i] for i in range(len(survivors))]


def limit_cut(rows: dict[int, int], shards: int, limit: int) -> tuple[int, int] | None:
    """(shard, rows it keeps) once the shards done from the first on hold ``limit`` rows: the rows of
    shards after it are not part of the first ``limit``. None while the prefix holds fewer."""
    total = 0
    for i in range(shards):
        if i not in rows:
            return None
        if total + rows[i] >= limit:
            return i, limit - total
        total += rows[i]
    return None


def merge(space, selection: dict, results: list[dict]) -> engine.Batch:
    """The whole run's best ``limit`` by ``sort`` or Pareto front, from each shard's (exactly as a single
    process merges its batches: ties by arch_id, so the order of the shards does not matter)."""
    keep = select.TopK(selection["limit"], space, selection["sort"]) if selection.get("sort") else None
    if keep is None:
        keep = select.Front(space, tuple(selection["pareto"]))
    for res in results:
        batch = engine.Batch(*res["batch"])
        if len(batch):
            keep.add(batch)
    return keep.result()


def add_stats(total: engine.Stats, part: dict) -> None:
    """Add a shard's Stats (as a dict) into the run's."""
    total.evaluated += part["evaluated"]
    total.covered += part["covered"]
    total.kept += part["kept"]
    total.device = part["device"]


def errors_in(exc: BaseException) -> str:
    """One line for an exception a worker raised (its message, whitespace folded)."""
    if isinstance(exc, RFSweepError):
        return str(exc)
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def check_shards(shards) -> None:
    if shards is not None and (isinstance(shards, bool) or not isinstance(shards, int) or shards < 1):
        raise field_error("shards", shards, "must be an integer >= 1")


__all__ = [
    "PART_ROWS",
    "SHARDS_PER_WORKER",
    "ShardStopped",
    "add_stats",
    "check_shards",
    "count_range",
    "even_ranges",
    "first_cut",
    "limit_cut",
    "merge",
    "run_shard",
    "shard_count",
    "space_of",
    "split_ranks",
    "stop_run",
    "warm",
]
