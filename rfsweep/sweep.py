"""The sweep's Python API: search (DataFrame or Parquet) and count (exact, without enumerating).

>>> import rfsweep
>>> n = rfsweep.count(depth=7, kernels=[1, 3, 5, 7], rf_min=200, rf_max=250)   # doctest: +SKIP
>>> df = rfsweep.search(target_rf=224, depth="2-6", limit=100, sort="params")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # pandas costs 0.3 s to import; the sweep's Parquet path never needs it
    import pandas as pd

from rfsweep import engine, sink
from rfsweep.engine import Batch, Stats
from rfsweep.errors import field_error
from rfsweep.kernels import layer_math as lm
from rfsweep.space import Space, build_space

SORT_KEYS = ("params", "macs", "rf_error", "erf")
DP_CELLS_MAX = 10_000_000  # (jumps x rf x out-size) states, 32 bytes each; beyond it, count by enumeration


def make_space(space: Space | dict | None = None, **settings: Any) -> Space:
    """A Space from a Space, a settings dict and/or keyword settings (keywords win)."""
    if isinstance(space, Space):
        if settings:
            return build_space({**space.settings, **settings})
        return space
    return build_space({**(space or {}), **settings})


# ------------------------------------------------------------------ counting


def _jump_tables(space: Space):
    """Reachable jumps that can still end on an allowed jump, and the transition table between them."""

    def ok(j):
        return not space.jumps or any(a % j == 0 for a in space.jumps)

    values = {1}
    frontier = {1}
    for p in range(space.depth_max):
        frontier = {j * c.stride for j in frontier for c in space.positions[p] if ok(j * c.stride)}
        values |= frontier
    jv = sorted(values)
    index = {j: i for i, j in enumerate(jv)}
    width = max(space.radices)
    nxt = np.full((len(jv), space.depth_max, width), -1, np.int64)
    for i, j in enumerate(jv):
        for p, options in enumerate(space.positions):
            for c, ch in enumerate(options):
                nxt[i, p, c] = index.get(j * ch.stride, -1)
    final = np.array([1 if not space.jumps or j in space.jumps else 0 for j in jv], np.int64)
    return np.array(jv, np.int64), nxt, final


def rf_histogram(space: Space, rf_min: int, rf_max: int | None) -> list[int]:
    """Exact number of candidates per final rf (index = rf) meeting the jump and out-size constraints.

    With ``rf_max`` None the last bucket (index ``rf_min``) holds every rf >= rf_min.
    """
    from rfsweep.kernels.cpu import count_dp

    jv, nxt, final = _jump_tables(space)
    arrays = space.kernel_arrays()
    cons = arrays["cons"].copy()
    cons[lm.C_RF_MIN] = rf_min
    cap = dp_cap(space, rf_min, rf_max)
    cons[lm.C_RF_MAX] = space.rf_bound if rf_max is None else cap
    if cap < rf_min:
        return [0] * (rf_min + 1)
    hist_u = np.zeros(cap + 1, np.uint64)
    hist_f = np.zeros(cap + 1, np.float64)
    count_dp(arrays["choices"], arrays["nch"], cons, jv, nxt, final, cap, hist_u, hist_f)
    return [_exact(int(u), float(f)) for u, f in zip(hist_u, hist_f)]


def _exact(low: int, approx: float) -> int:
    """The integer that is ``low`` modulo 2^64 and closest to ``approx`` (float64 DP running beside it)."""
    return low + (1 << 64) * round((approx - low) / float(1 << 64))


def dp_cap(space: Space, rf_min: int, rf_max: int | None) -> int:
    """The programme's last rf bucket: the upper bound when there is one, else rf_min (saturating)."""
    return rf_min if rf_max is None else min(rf_max, space.rf_bound)


def dp_cells(space: Space, cap: int) -> int:
    nd = space.input_size + 1 if space.padding == "valid" else 1
    return len(_jump_tables(space)[0]) * (cap + 1) * nd


def count_method(space: Space) -> str:
    """'dp' when every constraint is one the (jump, rf, out-size) programme tracks, else 'enumerate'."""
    if (
        space.max_params is not None
        or space.max_macs is not None
        or space.no_unproductive
        or space.levels
        or space.min_convs
        or space.has_head
    ):
        return "enumerate"
    if dp_cells(space, dp_cap(space, space.rf_min, space.rf_max)) > DP_CELLS_MAX:
        return "enumerate"
    return "dp"


@dataclass
class CountResult:
    count: int
    space_size: int
    method: str
    seconds: float
    device: str

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "space_size": self.space_size,
            "method": self.method,
            "seconds": round(self.seconds, 6),
            "device": self.device,
            "rate": (self.space_size / self.seconds) if self.seconds > 0 else None,
        }


def count_details(
    space: Space | dict | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    method: str = "auto",
    **settings: Any,
) -> CountResult:
    """Exact number of candidates meeting the constraints, and how it was found.

    rf, jump and out-size constraints are counted by dynamic programming over (jump, rf, out size)
    states, without enumerating: the cost does not grow with the space. Budgets (params, MACs),
    --no-unproductive, --min-convs, detector levels and a head (positions index -1) need the whole
    prefix, so they are counted by the pruned enumeration.
    """
    sp = make_space(space, **settings)
    if device != "cpu":  # refuse a device that is not there even when the DP (CPU-only) answers
        from rfsweep import gpu

        gpu.backend(device)
    if method == "auto":
        method = count_method(sp)
    if method not in ("dp", "enumerate"):
        raise field_error("method", method, "must be auto, dp or enumerate")
    if method == "dp" and count_method(sp) != "dp":
        raise field_error(
            "method",
            "dp",
            "this space has constraints the programme cannot count (params, MACs, "
            "unproductive, min convs, anchors) or is too large for it; use enumerate",
        )
    t0 = time.perf_counter()
    if method == "dp":
        hist = rf_histogram(sp, sp.rf_min, sp.rf_max)
        return CountResult(sum(hist[sp.rf_min :]), sp.size, "dp", time.perf_counter() - t0, "cpu")
    stats = Stats()
    n = engine.count_by_enumeration(sp, device=device, threads=threads, stats=stats)
    return CountResult(n, sp.size, "enumerate", time.perf_counter() - t0, stats.device)


def count(space: Space | dict | None = None, **kwargs: Any) -> int:
    """Exact number of candidates meeting the constraints (see :func:`count_details`)."""
    return count_details(space, **kwargs).count


def nearest_rfs(space: Space, limit: int = 3) -> tuple[list[int], list[int]]:
    """Reachable final rfs just below and just above the space's RF window (jump/out-size respected)."""
    hi_cap = min(space.rf_bound, max(2 * (space.rf_max or space.rf_min), space.rf_min + 64))
    if dp_cells(space, hi_cap) > DP_CELLS_MAX:
        return [], []
    hist = rf_histogram(space, 1, hi_cap)
    below = [r for r in range(min(space.rf_min - 1, len(hist) - 1), 0, -1) if hist[r]][:limit]
    above_start = (space.rf_max or space.rf_min) + 1
    above = [r for r in range(above_start, len(hist)) if hist[r]][:limit]
    return below, above


# ------------------------------------------------------------------ searching


def _sort_key(out: np.ndarray, space: Space, sort: str) -> np.ndarray:
    if sort == "params":
        return out[:, lm.O_PARAMS]
    if sort == "macs":
        return out[:, lm.O_MACS]
    if sort == "rf_error":
        target2 = 2 * space.target_rf if space.target_rf is not None else space.rf_min + (space.rf_max or space.rf_min)
        return np.abs(2 * out[:, lm.O_RF] - target2)
    if sort == "erf":
        return -out[:, lm.O_ERF]  # largest effective RF first
    raise field_error("sort", sort, f"must be one of {', '.join(SORT_KEYS)}")


class TopK:
    """The best ``k`` rows by a sort key (ties: smaller arch_id), holding at most k + one batch."""

    def __init__(self, k: int, space: Space, sort: str):
        self.k, self.space, self.sort = k, space, sort
        self.best: Batch | None = None

    def add(self, batch: Batch) -> None:
        if self.best is not None:
            batch = Batch(np.concatenate([self.best.out, batch.out]), np.concatenate([self.best.choice, batch.choice]))
        key = _sort_key(batch.out, self.space, self.sort)
        order = np.lexsort((batch.out[:, lm.O_ARCH], key))[: self.k]
        self.best = Batch(batch.out[order], batch.choice[order])

    def result(self) -> Batch:
        if self.best is None:
            return Batch(
                np.zeros((0, self.space.out_width), np.int64), np.zeros((0, max(1, self.space.depth_max)), np.int16)
            )
        return self.best


def _batches(space: Space, limit: int | None, sort: str | None, **kw) -> Iterator[Batch]:
    """Survivor batches: all of them in depth-first order, or the best ``limit`` by ``sort``."""
    if sort is not None and limit is None:
        raise field_error("sort", sort, "needs --limit (sorting every survivor would hold them all in memory)")
    if limit is not None and limit < 1:
        raise field_error("limit", limit, "must be >= 1")
    kw["reuse_buffers"] = True  # every consumer below copies a batch before asking for the next
    if limit is None:
        yield from engine.iter_batches(space, **kw)
        return
    if sort is None:  # the first `limit` rows in depth-first order
        left = limit
        for batch in engine.iter_batches(space, **kw):
            take = min(left, len(batch))
            yield Batch(batch.out[:take], batch.choice[:take])
            left -= take
            if left == 0:
                return
        return
    top = TopK(limit, space, sort)
    for batch in engine.iter_batches(space, **kw):
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
    **settings: Any,
) -> pd.DataFrame:
    """Survivors as a DataFrame (columns as the Parquet output). Use ``limit`` on large spaces.

    Parameters are the search settings (``target_rf``, ``depth``, ``kernels``, ... as in
    ``rfsweep search --help`` with underscores), ``limit``/``sort`` (params, macs, rf_error, erf),
    ``device`` (cpu, cuda, auto), ``threads`` and ``columns`` (full, or compact without the per-layer lists).
    """
    sp = make_space(space, **settings)
    tables = list(iter_tables(sp, limit=limit, sort=sort, device=device, threads=threads, stats=stats, columns=columns))
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
    progress: Callable[[int, int, int], None] | None = None,
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
    progress=None,
    columns: str = "full",
    **settings: Any,
) -> Stats:
    """Stream survivors to ``path`` (atomically: a temporary name, renamed when complete)."""
    sp = make_space(space, **settings)
    stats = stats if stats is not None else Stats()
    meta = sink.metadata(sp, {"limit": limit, "sort": sort, "columns": columns})
    with sink.ParquetSink(path, sink.schema(sp, layout=columns), meta) as out:
        for table in iter_tables(
            sp, limit=limit, sort=sort, device=device, threads=threads, stats=stats, progress=progress, columns=columns
        ):
            out.write(table)
    stats.extra["written"] = out.rows
    return stats
