"""The sweep's Python API: search (DataFrame or Parquet) and count (exact, without enumerating).

>>> import rfsweep
>>> n = rfsweep.count(depth=7, kernels=[1, 3, 5, 7], rf_min=200, rf_max=250)   # doctest: +SKIP
>>> df = rfsweep.search(target_rf=224, depth="2-6", limit=100, sort="params")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:  # pandas costs 0.3 s to import; the sweep's Parquet path never needs it
    import pandas as pd

from rfsweep.core.errors import field_error
from rfsweep.engine import run as engine
from rfsweep.engine.count import (  # noqa: F401  (the count API lives in rfsweep.engine.count; re-exported here)
    CountResult,
    count,
    count_details,
    count_method,
    make_space,
    nearest_rfs,
    rf_histogram,
    window_count,
)
from rfsweep.engine.run import Stats
from rfsweep.engine.select import check_selection
from rfsweep.output import sink
from rfsweep.output.batches import pop_selection, selected_batches
from rfsweep.space import Space


def search(
    space: Space | dict | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    stats: Stats | None = None,
    columns: str | None = None,
    progress: Callable[[engine.Progress], None] | None = None,
    **settings: Any,
) -> pd.DataFrame:
    """Survivors as a DataFrame (columns as the Parquet output). Use a selection on large spaces.

    Parameters are the search settings (``target_rf``, ``depth``, ``kernels``, ... as in
    ``rfsweep search --help`` with underscores), a selection of rows: ``limit`` (the first N) and
    ``sort`` (the best N by params, macs, rf_error or erf), ``pareto`` (the non-dominated survivors
    by two or three of params, macs, rf_error, erf, depth), ``sample`` with ``seed`` (N survivors
    drawn uniformly), ``where`` (a filter such as ``"params < 2e6 and depth >= 5"``); and ``device``
    (cpu, cuda, auto), ``threads`` and ``columns`` (the layout: wide, lists or compact; None, the space's
    default: wide for a chain, lists for a space of stages; see rfsweep.output.sink).
    """
    sel = pop_selection(settings)
    sp = make_space(space, **settings)
    tables = list(
        iter_tables(sp, device=device, threads=threads, stats=stats, columns=columns, progress=progress, **sel)
    )
    sch = sink.schema(sp, layout=columns)
    table = pa.concat_tables(tables) if tables else sch.empty_table()
    return table.to_pandas()


def iter_tables(
    space: Space,
    *,
    device: str = "cpu",
    threads: int | None = None,
    stats: Stats | None = None,
    progress: Callable[[engine.Progress], None] | None = None,
    columns: str | None = None,
    **selection: Any,
) -> Iterator[pa.Table]:
    """Arrow tables of survivors (see :func:`search` for the selection keywords)."""
    sel = pop_selection(selection)
    if selection:
        raise field_error(next(iter(selection)), None, "unknown option of the search")
    sch = sink.schema(space, layout=columns)
    tables = sink.tables_for(space)
    for batch in selected_batches(space, device=device, threads=threads, stats=stats, progress=progress, **sel):
        if len(batch):
            yield sink.to_table(batch, space, tables, sch)


def search_to_parquet(
    path: str,
    space: Space | dict | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    stats: Stats | None = None,
    progress: Callable[[engine.Progress], None] | None = None,
    columns: str | None = None,
    inputs: tuple[str | None, ...] = (),
    cluster: str | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    shards: int | None = None,
    break_lock: bool = False,
    **settings: Any,
) -> Stats:
    """Stream survivors to ``path`` by the output rule of :mod:`rfsweep.core.files` (atomically: a temporary
    name, renamed when complete). ``inputs`` are files the output must not be (the --space file).
    Selection keywords as :func:`search`.

    A ``path`` with no extension, a trailing ``/``, an existing directory or a URL is a Parquet dataset
    (:mod:`rfsweep.output.dataset`): the same rows, in parts, sharded over ``cluster="local:N"`` (N worker
    processes here) or a running Dask ``scheduler`` ("tcp://host:8786"), or over this process without
    either; ``resume`` continues an interrupted dataset (rebuilding parts that do not check out),
    ``break_lock`` takes over a lock another machine left, ``shards`` sets how many (see
    :func:`rfsweep.distributed.sharded.search_to_dataset`).
    """
    from rfsweep.core.files import is_dataset

    if cluster is not None or scheduler is not None or resume or break_lock or shards is not None or is_dataset(path):
        from rfsweep.distributed.sharded import search_to_dataset

        return search_to_dataset(
            path,
            space,
            cluster=cluster,
            scheduler=scheduler,
            resume=resume,
            break_lock=break_lock,
            shards=shards,
            device=device,
            threads=threads,
            stats=stats,
            progress=progress,
            columns=columns,
            inputs=inputs,
            **settings,
        )
    sel = pop_selection(settings)
    sp = make_space(space, **settings)
    check_selection(sel["limit"], sel["sort"], sel["pareto"], sel["sample"], sel["where"], sel["seed"])
    stats = stats if stats is not None else Stats()
    columns = sink.layout_name(columns, sp)
    meta = sink.metadata(sp, {**sel, "pareto": sel["pareto"] and list(sel["pareto"]), "columns": columns})
    sch = sink.schema(sp, layout=columns)
    with sink.ParquetSink(path, sch, meta, inputs=inputs, space=sp, threads=threads) as out:
        for batch in selected_batches(sp, device=device, threads=threads, stats=stats, progress=progress, **sel):
            if len(batch):
                out.write_batch(batch)
    stats.extra["written"] = out.rows
    return stats
