"""The survivor batches a selection keeps: every survivor in depth-first order, the first ``limit``, the
best ``limit`` by a key, the Pareto front, a uniform sample; ``where`` filters them first (parsed against
the output's columns, hence here, beside the sink). Shards (rfsweep.distributed) run the same function
on their ranges.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.engine import objectives, stage_select
from rfsweep.engine import run as engine
from rfsweep.engine.run import Batch
from rfsweep.engine.sample import draw_ranks
from rfsweep.engine.select import Front, TopK, check_selection
from rfsweep.engine.where import parse_where
from rfsweep.output import sink, writer
from rfsweep.space import Space


def _filtered(batches: Iterator[Batch], space: Space, where: str | None, stats=None) -> Iterator[Batch]:
    """Only the survivors passing ``--where`` (evaluated on the batch's scalar columns) and within
    ``--max-latency-ms`` (which the kernels do not see: the rows over it are not survivors, and leave
    ``stats.kept``)."""
    if where is None and space.max_latency is None:
        yield from batches
        return
    cond = parse_where(where, sink.schema(space, layout="compact")) if where is not None else None
    for batch in batches:
        cols = objectives.survivor_columns(batch.out, space, batch.choice)
        keep = np.ones(len(batch), bool)
        if space.max_latency is not None:
            keep = cols["latency_us"] <= space.max_latency
            if stats is not None:
                stats.kept -= int(len(batch) - keep.sum())
        if cond is not None:
            keep &= cond.mask(cols)
        yield batch.take(keep)


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
        # a space of stages: exact selections by dynamic programming (rfsweep.engine.stage_select), which answer
        # for the whole space only (a shard's range walks, as a chain's does)
        chosen = dict(limit=limit, sort=sort, pareto=pareto, sample=sample, seed=seed, where=where)
        if stage_select.applicable(space, chosen) is None:
            yield from stage_select.run(space, chosen, device=kw.get("device", "cpu"), threads=kw.get("threads"),
                                   stats=kw.get("stats"))  # fmt: skip
            return
    kw["reuse_buffers"] = True  # every consumer below copies a batch before asking for the next
    filtered = where is not None or space.max_latency is not None  # rows the kernels keep are dropped after
    if sample is not None and space.max_latency is not None:
        why = stage_select.applicable(space, dict(sample=sample, seed=seed, where=where)) or "a shard's range"
        raise field_error("sample", sample, f"with --max-latency-ms draws by the exact sampler of spaces of "
                          f"stages only, which cannot take this: {why}")  # fmt: skip
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
        for batch in _filtered(engine.iter_batches(space, **kw), space, where, kw.get("stats")):
            front.add(batch)
        yield front.result()
        return
    if sort is None:
        if not filtered:
            # every batch whole row groups but the last: the sink encodes them in place, copying nothing
            yield from engine.iter_batches(space, limit=limit, align=writer.ROW_GROUP_ROWS, **kw)
            return
        left = limit
        for batch in _filtered(engine.iter_batches(space, **kw), space, where, kw.get("stats")):
            take = len(batch) if left is None else min(left, len(batch))
            yield batch.take(slice(0, take))
            if left is not None:
                left -= take
                if left == 0:
                    return
        return
    top = TopK(limit, space, sort)
    if not filtered and sort not in ("erf", "latency_ms") and kw.get("device", "cpu") == "cpu":
        # the walk's first k rows (each task capped at k: cheap) bound the k-th best from the start
        probe = {k: kw[k] for k in ("threads", "q", "task_range", "slab_rows") if k in kw}
        top.seed(engine.iter_batches(space, limit=limit, reuse_buffers=True, **probe))
    for batch in _filtered(engine.iter_batches(space, tighten=top.tighten, **kw), space, where, kw.get("stats")):
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
    ``stats``, ``progress``, and ``q`` with ``task_range`` for a shard: see :class:`rfsweep.engine.run.Plan`).
    A batch may be a view of buffers the engine reuses: copy it before asking for the next."""
    return _batches(space, **kw)


SELECT_OPTIONS = ("limit", "sort", "pareto", "sample", "seed", "where")


def pop_selection(kw: dict) -> dict:
    """The row-selection options out of the keyword arguments (the rest are settings)."""
    sel = {k: kw.pop(k, None) for k in SELECT_OPTIONS}
    if sel["pareto"] is not None:
        sel["pareto"] = objectives.parse_objectives(sel["pareto"])
    return sel
