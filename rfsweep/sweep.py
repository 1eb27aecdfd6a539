"""The sweep's Python API: search (DataFrame or Parquet) and count (exact, without enumerating).

>>> import rfsweep
>>> n = rfsweep.count(depth=7, kernels=[1, 3, 5, 7], rf_min=200, rf_max=250)   # doctest: +SKIP
>>> df = rfsweep.search(target_rf=224, depth="2-6", limit=100, sort="params")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # pandas costs 0.3 s to import; the sweep's Parquet path never needs it
    import pandas as pd

from rfsweep import engine, ids, objectives, sink
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
from rfsweep.sample import check_sample, draw_ranks
from rfsweep.space import Space


def _sort_key(out: np.ndarray, space: Space, sort: str) -> np.ndarray:
    return objectives.key(objectives.survivor_columns(out, space), sort, objectives.rf_target2(space))


class TopK:
    """The best ``k`` rows by a sort key (ties: smaller arch_id), holding at most k + one batch.

    Once it holds k rows, :meth:`tighten` turns the k-th key into a bound the kernels prune with
    (params and MACs only grow along a prefix, and the rf window narrows around the target), so the
    rest of the walk skips every subtree that cannot enter the top k.
    """

    def __init__(self, k: int, space: Space, sort: str):
        _sort_key(np.zeros((space.out_width, 0), np.int64), space, sort)  # refuse an unknown key early
        self.k, self.space, self.sort = k, space, sort
        self.best: Batch | None = None
        self.bound: int | None = None  # a key the k-th best cannot be worse than (seed)

    def add(self, batch: Batch) -> None:
        batch = Batch.concat([self.best, batch]) if self.best is not None else batch.copy()
        key = _sort_key(batch.out, self.space, self.sort)
        order = np.lexsort((*ids.order_keys(batch.out, batch.choice, self.space), key))[: self.k]
        self.best = batch.take(order)

    def seed(self, batches: Iterator[Batch]) -> None:
        """Take a first bound from any k survivors (e.g. the walk's first k, which a --limit without a sort
        finds cheaply): the k-th best key can only be better, so the walk prunes from its first chunk on
        instead of walking that chunk whole. The rows are not kept: the walk finds them again."""
        probe = TopK(self.k, self.space, self.sort)
        for batch in batches:
            probe.add(batch)
        if probe.best is not None and len(probe.best) == self.k:
            self.bound = int(_sort_key(probe.best.out[:, -1:], self.space, self.sort)[0])

    def tighten(self, cons: np.ndarray) -> None:
        """Narrow the run's constraints to what can still enter the top k (called between chunks, so every
        candidate still to come is later in depth-first order than the rows held)."""
        if self.sort == "erf":
            return  # the ERF only grows along a prefix: nothing to prune by
        if self.best is None or len(self.best) < self.k:
            if self.bound is not None:
                self._narrow(cons, self.bound)
            return
        worst = int(_sort_key(self.best.out[:, -1:], self.space, self.sort)[0])
        if int(self.best.out[lm.O_DEPTH, -1]) == self.space.depth_min:
            # the rest of the walk comes later in depth-first order, at a depth no smaller than the k-th
            # row's: a tie there has the larger arch_id and cannot enter, so only a better key can (a run
            # whose best rows tie by the million, e.g. params with strides free, no longer walks the ties)
            worst -= 1
        self._narrow(cons, worst)

    def _narrow(self, cons: np.ndarray, worst: int) -> None:
        """Keep only candidates whose key is at most ``worst``."""
        if self.sort == "params":
            cons[lm.C_MAX_PARAMS] = min(cons[lm.C_MAX_PARAMS], worst)
        elif self.sort == "macs":
            cons[lm.C_MAX_MACS] = min(cons[lm.C_MAX_MACS], worst)
        elif self.sort == "rf_error":  # |2 rf - t2| <= worst
            t2 = objectives.rf_target2(self.space)
            cons[lm.C_RF_MIN] = max(cons[lm.C_RF_MIN], -((worst - t2) // 2))
            cons[lm.C_RF_MAX] = min(cons[lm.C_RF_MAX], (t2 + worst) // 2)

    def result(self) -> Batch:
        return Batch.empty(self.space) if self.best is None else self.best


def check_selection(
    limit: int | None,
    sort: str | None,
    pareto: tuple[str, ...] | None = None,
    sample: int | None = None,
    where: str | None = None,
    seed: int | None = None,
) -> None:
    """Refuse what cannot be combined, one line naming the field."""
    if sort is not None and limit is None:
        raise field_error("sort", sort, "needs --limit (sorting every survivor would hold them all in memory)")
    if sort is not None and sort not in objectives.SORT_KEYS:
        raise field_error("sort", sort, f"must be one of {', '.join(objectives.SORT_KEYS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise field_error("limit", limit, "must be an integer >= 1")
    if pareto is not None and (limit is not None or sample is not None):
        raise field_error("pareto", ",".join(pareto), "keeps the whole front: not with --limit, --sort or --sample")
    if sample is not None:
        check_sample(sample, seed)
        if limit is not None:
            raise field_error("sample", sample, "draws N survivors itself: not with --limit or --sort")
        if where is not None:
            raise field_error(
                "sample",
                sample,
                "draws from the walk's exact counts, which --where (applied after) would bias; "
                "use the budget flags (--max-params, ...) to constrain the survivors",
            )
    elif seed is not None:
        raise field_error("seed", seed, "seeds --sample; give --sample N")


class Front:
    """The Pareto front of the survivors seen so far (rows no other row beats on every objective), holding
    only the front and one batch."""

    def __init__(self, space: Space, names: tuple[str, ...]):
        self.space, self.names = space, names
        self.best: Batch | None = None

    def add(self, batch: Batch) -> None:
        if len(batch) == 0:
            return
        if self.best is not None:
            batch = Batch.concat([self.best, batch])
        cols = objectives.survivor_columns(batch.out, self.space)
        t2 = objectives.rf_target2(self.space)
        keep = objectives.front_mask([objectives.key(cols, name, t2) for name in self.names])
        self.best = batch.take(keep)

    def result(self) -> Batch:
        """The front, ordered by the objectives in turn, ties by arch_id."""
        if self.best is None:
            return Batch.empty(self.space)
        cols = objectives.survivor_columns(self.best.out, self.space)
        t2 = objectives.rf_target2(self.space)
        keys = [objectives.key(cols, name, t2) for name in self.names]
        order = np.lexsort([*ids.order_keys(self.best.out, self.best.choice, self.space), *reversed(keys)])
        return self.best.take(order)


def _filtered(batches: Iterator[Batch], space: Space, where: str | None) -> Iterator[Batch]:
    """Only the survivors passing ``--where`` (evaluated on the batch's scalar columns)."""
    if where is None:
        yield from batches
        return
    from rfsweep.where import parse_where

    cond = parse_where(where, sink.schema(space, layout="compact"))
    for batch in batches:
        yield batch.take(cond.mask(objectives.survivor_columns(batch.out, space)))


def _batches(
    space: Space,
    limit: int | None = None,
    sort: str | None = None,
    pareto: tuple[str, ...] | None = None,
    sample: int | None = None,
    seed: int | None = None,
    where: str | None = None,
    **kw,
) -> Iterator[Batch]:
    """Survivor batches: all of them in depth-first order, the first ``limit``, the best ``limit`` by
    ``sort``, the Pareto front, or a uniform sample; ``where`` filters them first."""
    check_selection(limit, sort, pareto, sample, where, seed)
    if space.has_blocks and _whole_space(space, kw):
        # a space of stages: exact selections by dynamic programming (rfsweep.stage_select), which answer
        # for the whole space only (a shard's range walks, as a chain's does)
        from rfsweep import stage_select

        chosen = dict(limit=limit, sort=sort, pareto=pareto, sample=sample, seed=seed, where=where)
        if stage_select.applicable(space, chosen) is None:
            yield from stage_select.run(space, chosen, device=kw.get("device", "cpu"), threads=kw.get("threads"),
                                   stats=kw.get("stats"))  # fmt: skip
            return
    kw["reuse_buffers"] = True  # every consumer below copies a batch before asking for the next
    if sample is not None:
        kw.pop("reuse_buffers")
        kw.pop("slab_rows", None)
        plan = engine.CountedPlan(space, **kw)
        for ranks in draw_ranks(plan.total, sample, np.random.default_rng(seed)):
            yield from plan.rows_at(ranks)
        plan.stats.extra["sampled_from"] = plan.total
        return
    if pareto is not None:
        front = Front(space, pareto)
        for batch in _filtered(engine.iter_batches(space, **kw), space, where):
            front.add(batch)
        yield front.result()
        return
    if sort is None:
        if where is None:
            yield from engine.iter_batches(space, limit=limit, **kw)
            return
        left = limit
        for batch in _filtered(engine.iter_batches(space, **kw), space, where):
            take = len(batch) if left is None else min(left, len(batch))
            yield batch.take(slice(0, take))
            if left is not None:
                left -= take
                if left == 0:
                    return
        return
    top = TopK(limit, space, sort)
    if where is None and sort != "erf" and kw.get("device", "cpu") == "cpu":
        # the walk's first k rows (each task capped at k: cheap) bound the k-th best from the start
        probe = {k: kw[k] for k in ("threads", "q", "task_range", "slab_rows") if k in kw}
        top.seed(engine.iter_batches(space, limit=limit, reuse_buffers=True, **probe))
    for batch in _filtered(engine.iter_batches(space, tighten=top.tighten, **kw), space, where):
        top.add(batch)
    yield top.result()


def _whole_space(space: Space, kw: dict) -> bool:
    """Whether the engine keywords cover every task: no ``task_range``, or one from the first to the last."""
    rng = kw.get("task_range")
    if rng is None:
        return True
    q = kw.get("q")
    return q is not None and tuple(int(x) for x in rng) == (0, math.prod(space.radices[:q]))


def selected_batches(space: Space, **kw) -> Iterator[Batch]:
    """The survivor batches a selection keeps (keywords as :func:`search`: ``limit``, ``sort``, ``pareto``,
    ``sample``, ``seed``, ``where``), with the engine's keywords passed through (``device``, ``threads``,
    ``stats``, ``progress``, and ``q`` with ``task_range`` for a shard: see :class:`rfsweep.engine.Plan`).
    A batch may be a view of buffers the engine reuses: copy it before asking for the next."""
    return _batches(space, **kw)


SELECT_OPTIONS = ("limit", "sort", "pareto", "sample", "seed", "where")


def _selection(kw: dict) -> dict:
    """The row-selection options out of the keyword arguments (the rest are settings)."""
    sel = {k: kw.pop(k, None) for k in SELECT_OPTIONS}
    if sel["pareto"] is not None:
        sel["pareto"] = objectives.parse_objectives(sel["pareto"])
    return sel


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
    default: wide for a chain, lists for a space of stages; see rfsweep.sink).
    """
    sel = _selection(settings)
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
    sel = _selection(selection)
    if selection:
        raise field_error(next(iter(selection)), None, "unknown option of the search")
    sch = sink.schema(space, layout=columns)
    tables = sink.tables_for(space)
    for batch in _batches(space, device=device, threads=threads, stats=stats, progress=progress, **sel):
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
    **settings: Any,
) -> Stats:
    """Stream survivors to ``path`` by the output rule of :mod:`rfsweep.files` (atomically: a temporary
    name, renamed when complete). ``inputs`` are files the output must not be (the --space file).
    Selection keywords as :func:`search`.

    A ``path`` with no extension, a trailing ``/``, an existing directory or a URL is a Parquet dataset
    (:mod:`rfsweep.dataset`): the same rows, in parts, sharded over ``cluster="local:N"`` (N worker
    processes here) or a running Dask ``scheduler`` ("tcp://host:8786"), or over this process without
    either; ``resume`` continues an interrupted dataset, ``shards`` sets how many (see
    :func:`rfsweep.sharded.search_to_dataset`).
    """
    from rfsweep.files import is_dataset

    if cluster is not None or scheduler is not None or resume or shards is not None or is_dataset(path):
        from rfsweep.sharded import search_to_dataset

        return search_to_dataset(
            path,
            space,
            cluster=cluster,
            scheduler=scheduler,
            resume=resume,
            shards=shards,
            device=device,
            threads=threads,
            stats=stats,
            progress=progress,
            columns=columns,
            inputs=inputs,
            **settings,
        )
    sel = _selection(settings)
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
