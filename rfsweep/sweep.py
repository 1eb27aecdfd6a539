"""The sweep's Python API: search (DataFrame or Parquet) and count (exact, without enumerating).

>>> import rfsweep
>>> n = rfsweep.count(depth=7, kernels=[1, 3, 5, 7], rf_min=200, rf_max=250)   # doctest: +SKIP
>>> df = rfsweep.search(target_rf=224, depth="2-6", limit=100, sort="params")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # pandas costs 0.3 s to import; the sweep's Parquet path never needs it
    import pandas as pd

from rfsweep import engine, sink
from rfsweep.counting import (  # noqa: F401  (the count API lives in counting; these names stay here too)
    CountResult,
    count,
    count_details,
    count_method,
    make_space,
    nearest_rfs,
    rf_histogram,
    window_count,
)
from rfsweep.engine import Batch, Stats
from rfsweep.errors import field_error
from rfsweep.kernels import layer_math as lm
from rfsweep.space import Space

SORT_KEYS = ("params", "macs", "rf_error", "erf")


def _sort_key(out: np.ndarray, space: Space, sort: str) -> np.ndarray:
    if sort == "params":
        return out[:, lm.O_PARAMS]
    if sort == "macs":
        return out[:, lm.O_MACS]
    if sort == "rf_error":
        return np.abs(2 * out[:, lm.O_RF] - _target2(space))
    if sort == "erf":
        return -out[:, lm.O_ERF]  # largest effective RF first
    raise field_error("sort", sort, f"must be one of {', '.join(SORT_KEYS)}")


def _target2(space: Space) -> int:
    """Twice the rf the rf_error sort aims at: the target, else the window's centre."""
    if space.target_rf is not None:
        return 2 * space.target_rf
    return space.rf_min + (space.rf_max or space.rf_min)


class TopK:
    """The best ``k`` rows by a sort key (ties: smaller arch_id), holding at most k + one batch.

    Once it holds k rows, :meth:`tighten` turns the k-th key into a bound the kernels prune with
    (params and MACs only grow along a prefix, and the rf window narrows around the target), so the
    rest of the walk skips every subtree that cannot enter the top k.
    """

    def __init__(self, k: int, space: Space, sort: str):
        _sort_key(np.zeros((0, space.out_width), np.int64), space, sort)  # refuse an unknown key early
        self.k, self.space, self.sort = k, space, sort
        self.best: Batch | None = None

    def add(self, batch: Batch) -> None:
        if self.best is not None:
            batch = Batch(np.concatenate([self.best.out, batch.out]), np.concatenate([self.best.choice, batch.choice]))
        else:
            batch = Batch(batch.out.copy(), batch.choice.copy())
        key = _sort_key(batch.out, self.space, self.sort)
        order = np.lexsort((batch.out[:, lm.O_ARCH], key))[: self.k]
        self.best = Batch(batch.out[order], batch.choice[order])

    def tighten(self, cons: np.ndarray) -> None:
        """Narrow the run's constraints to what can still enter the top k (ties included)."""
        if self.best is None or len(self.best) < self.k:
            return
        worst = int(_sort_key(self.best.out[-1:], self.space, self.sort)[0])
        if self.sort == "params":
            cons[lm.C_MAX_PARAMS] = min(cons[lm.C_MAX_PARAMS], worst)
        elif self.sort == "macs":
            cons[lm.C_MAX_MACS] = min(cons[lm.C_MAX_MACS], worst)
        elif self.sort == "rf_error":  # |2 rf - t2| <= worst
            t2 = _target2(self.space)
            cons[lm.C_RF_MIN] = max(cons[lm.C_RF_MIN], -((worst - t2) // 2))
            cons[lm.C_RF_MAX] = min(cons[lm.C_RF_MAX], (t2 + worst) // 2)

    def result(self) -> Batch:
        if self.best is None:
            return Batch(
                np.zeros((0, self.space.out_width), np.int64), np.zeros((0, max(1, self.space.depth_max)), np.int16)
            )
        return self.best


def check_selection(limit: int | None, sort: str | None) -> None:
    if sort is not None and limit is None:
        raise field_error("sort", sort, "needs --limit (sorting every survivor would hold them all in memory)")
    if sort is not None and sort not in SORT_KEYS:
        raise field_error("sort", sort, f"must be one of {', '.join(SORT_KEYS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise field_error("limit", limit, "must be an integer >= 1")


def _batches(space: Space, limit: int | None, sort: str | None, **kw) -> Iterator[Batch]:
    """Survivor batches: all of them in depth-first order, the first ``limit``, or the best ``limit`` by ``sort``."""
    check_selection(limit, sort)
    kw["reuse_buffers"] = True  # every consumer below copies a batch before asking for the next
    if sort is None:
        yield from engine.iter_batches(space, limit=limit, **kw)
        return
    top = TopK(limit, space, sort)
    for batch in engine.iter_batches(space, tighten=top.tighten, **kw):
        top.add(batch)
    yield top.result()


def search(
    space: Space | dict | None = None,
    *,
    limit: int | None = None,
    sort: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    stats: Stats | None = None,
    columns: str = "full",
    progress: Callable[[engine.Progress], None] | None = None,
    **settings: Any,
) -> pd.DataFrame:
    """Survivors as a DataFrame (columns as the Parquet output). Use ``limit`` on large spaces.

    Parameters are the search settings (``target_rf``, ``depth``, ``kernels``, ... as in
    ``rfsweep search --help`` with underscores), ``limit``/``sort`` (params, macs, rf_error, erf),
    ``device`` (cpu, cuda, auto), ``threads`` and ``columns`` (full, or compact without the per-layer lists).
    """
    sp = make_space(space, **settings)
    tables = list(
        iter_tables(
            sp,
            limit=limit,
            sort=sort,
            device=device,
            threads=threads,
            stats=stats,
            columns=columns,
            progress=progress,
        )
    )
    sch = sink.schema(sp, layout=columns)
    table = pa.concat_tables(tables) if tables else sch.empty_table()
    return table.to_pandas()


def iter_tables(
    space: Space,
    *,
    limit: int | None = None,
    sort: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    stats: Stats | None = None,
    progress: Callable[[engine.Progress], None] | None = None,
    columns: str = "full",
) -> Iterator[pa.Table]:
    """Arrow tables of survivors (see :func:`search`)."""
    sch = sink.schema(space, layout=columns)
    tables = sink.LayerTables(space)
    for batch in _batches(space, limit, sort, device=device, threads=threads, stats=stats, progress=progress):
        if len(batch):
            yield sink.to_table(batch, space, tables, sch)


def search_to_parquet(
    path: str,
    space: Space | dict | None = None,
    *,
    limit: int | None = None,
    sort: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    stats: Stats | None = None,
    progress: Callable[[engine.Progress], None] | None = None,
    columns: str = "full",
    inputs: tuple[str | None, ...] = (),
    **settings: Any,
) -> Stats:
    """Stream survivors to ``path`` by the output rule of :mod:`rfsweep.files` (atomically: a temporary
    name, renamed when complete). ``inputs`` are files the output must not be (the --space file).
    """
    sp = make_space(space, **settings)
    check_selection(limit, sort)
    stats = stats if stats is not None else Stats()
    meta = sink.metadata(sp, {"limit": limit, "sort": sort, "columns": columns})
    with sink.ParquetSink(path, sink.schema(sp, layout=columns), meta, inputs=inputs) as out:
        for table in iter_tables(
            sp, limit=limit, sort=sort, device=device, threads=threads, stats=stats, progress=progress, columns=columns
        ):
            out.write(table)
    stats.extra["written"] = out.rows
    return stats
