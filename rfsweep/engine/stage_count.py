"""Exact counts of a space of stages under a budget: per-stage tables, then a meet in the middle.

In a space of stages the strides are fixed per stage, so each stage's rf increment, params and MACs
depend on its own configuration and its input channels only: the candidate's rf is 1 plus a sum over
stages, and so is its cost. The count of candidates with rf in [lo, hi] and cost <= B is then a
counting problem over sums of independent tables (conditioned on the channels each stage receives
when stages offer channel choices):

1. each stage's table: the distinct (rf increment, cost) pairs of its configurations, with multiplicities
   (the kernels' own child() computes them);
2. the stages are split in two groups. G1 is chosen so that every cost in it is a multiple of a large g
   (stages without squeeze-and-excitation at high resolution: Once-for-All MobileNetV3's stages 1 and 3
   cost multiples of 25,088 and 7,840 MACs), so G1's sums take at most B / g values;
3. G2's sums are enumerated pair by pair (its largest stage against the others' combined table), each
   counted in the bucket ``floor((B - cost) / g)`` of its rf: exactly the number of g-units left for G1;
4. a G1 sum of v units fits with exactly the G2 sums whose bucket is >= v: suffix sums over buckets and
   prefix sums over rf give every G1 sum's partners in one lookup.

Every count is an exact integer. The split is chosen for the least work with the pair enumeration under
~3e10 steps; the bucket table is built in bands of rows of at most 6e7 cells (480 MB), so a fine cost
resolution (ProxylessNAS: G1 sums in units of 392 MACs) costs time, not memory. A space with no such
split is refused with one line (or counted by enumeration when it is small).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.engine import steer
from rfsweep.engine.run import Progress
from rfsweep.kernels import layer_math as lm
from rfsweep.space import Space

MAX_CELLS = 60_000_000  # one row of the G2 bucket table (G1 cost units) at most
BAND_CELLS = 60_000_000  # a band of rows of the bucket table (distinct rf x G1 cost units), int64: 480 MB
MAX_PAIRS = 30_000_000_000  # G2 enumeration steps
MAX_G1 = 50_000_000  # G1 combined table entries


@dataclass
class Table:
    """One position's configurations for a given input: rf increments, costs, multiplicities, out channels."""

    rf: np.ndarray
    cost: np.ndarray
    weight: np.ndarray
    cout: np.ndarray


def _combine(a: Table, b: Table) -> Table:
    """The table of sums of two independent tables (distinct (rf, cost) pairs, multiplicities multiplied)."""
    rf = (a.rf[:, None] + b.rf[None, :]).ravel()
    cost = (a.cost[:, None] + b.cost[None, :]).ravel()
    weight = (a.weight[:, None] * b.weight[None, :]).ravel()
    return _aggregate(rf, cost, weight)


def _aggregate(rf, cost, weight) -> Table:
    """Distinct (rf, cost) pairs in (rf, cost) order, multiplicities summed (exact int64)."""
    if len(rf) == 0:
        return Table(rf, cost, weight, np.zeros(0, np.int64))
    rf0, c0 = int(rf.min()), int(cost.min())
    shift = int(cost.max() - c0).bit_length()
    if (int(rf.max() - rf0) << shift) < 2**62:  # one int64 key: a 1-D sort, ~10x faster than unique rows
        key = ((rf - rf0) << shift) | (cost - c0)
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
        w = np.add.reduceat(weight[order], starts)
        key = key[starts]
        return Table(rf0 + (key >> shift), c0 + (key & ((1 << shift) - 1)), w, np.zeros(len(key), np.int64))
    keys = np.stack([rf, cost], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    w = np.zeros(len(uniq), np.int64)
    np.add.at(w, inverse.ravel(), weight)
    return Table(uniq[:, 0].copy(), uniq[:, 1].copy(), w, np.zeros(len(uniq), np.int64))


BUDGETS = (("--max-params", "params"), ("--max-macs", "macs"), ("--max-latency-ms", "latency"))


def budget_of(space: Space, q: str) -> int | None:
    """The budget on a per-choice cost: params, macs, or latency (whole microseconds, rfsweep.space.latency)."""
    return {"params": space.max_params, "macs": space.max_macs, "latency": space.max_latency}[q]


def applicable(space: Space) -> str | None:
    """None when the split method can count the space, else why not (one clause)."""
    if not space.has_blocks or space.depth_min != space.depth_max:
        return "not a space of stages"
    set_ = [flag for flag, q in BUDGETS if budget_of(space, q) is not None]
    if len(set_) > 1:
        return f"both {' and '.join(set_)} are set (the method handles one budget)"
    if not set_ and space.max_peak_act is None:
        return "there is no budget (the counting programme counts it)"
    if space.no_unproductive or space.levels or space.min_convs:
        return "--no-unproductive, --anchors and --min-convs need the whole prefix"
    for p, options in enumerate(space.positions):
        if len({c.jump_factor for c in options}) != 1:
            return f"position {p}'s choices have different strides"
    return None


def position_tables(space: Space, budget_field: int | str | None):
    """For each position: {input channels: Table} of the choices that fit (the peak-activation budget is a
    filter of them: rfsweep.space.stage_graph), their cost the budgeted field (lm.S_MACS or lm.S_PARAMS, or
    "latency": whole microseconds; None: no cost); and the final jump. The per-choice arithmetic is
    rfsweep.space.stage_graph's (the kernels' own child(), at each position's fixed input size and jump),
    shared with the exact selections and samples."""
    from rfsweep.space.stage_graph import choice_tables

    name = {lm.S_MACS: "macs", lm.S_PARAMS: "params", "latency": "latency", None: "zero"}[budget_field]
    tables, jump = choice_tables(space)
    out = []
    for per_cin in tables:
        out.append(
            {
                cin: Table(t.drf[t.ok], t.metric(name)[t.ok], np.ones(int(t.ok.sum()), np.int64), t.cout[t.ok])
                for cin, t in per_cin.items()
            }
        )
    return out, jump


def _assignments(tables) -> list[list[Table]]:
    """Every choice of the channels between positions, as per-position tables restricted to it."""
    paths = [([], None)]
    for per_cin in tables:
        nxt = []
        for path, cin in paths:
            options = per_cin if cin is None else {cin: per_cin.get(cin)}
            for table in options.values():
                if table is None or len(table.rf) == 0:
                    continue
                for cout in np.unique(table.cout):
                    keep = table.cout == cout
                    sub = _aggregate(table.rf[keep], table.cost[keep], table.weight[keep])
                    nxt.append((path + [sub], int(cout)))
        paths = nxt
    return [path for path, _ in paths]


def count(space: Space, *, threads: int | None = None, progress=None) -> int:
    """Candidates with rf in the window and cost within the budget, exactly (see the module docstring).
    ``progress`` (optional) sees engine.Progress snapshots (phase 'stages') several times a second."""
    why = applicable(space)
    if why is not None:
        raise field_error("method", "stages", f"cannot count this space: {why}")
    q = next((q for _, q in BUDGETS if budget_of(space, q) is not None), None)
    field = {"macs": lm.S_MACS, "params": lm.S_PARAMS, "latency": "latency", None: None}[q]
    budget = 0 if q is None else budget_of(space, q)  # --max-peak-act alone: no cost, the filtered tables decide
    tables, final_jump = position_tables(space, field)
    if space.jumps and final_jump not in space.jumps:
        return 0
    lo, hi = space.rf_min, space.rf_max
    total = 0
    paths = _assignments(tables)
    t0 = time.perf_counter()
    for k, path in enumerate(paths):
        report = None
        if progress is not None:

            def report(share: float, k=k) -> None:
                fraction = (k + share) / len(paths)
                progress(Progress("stages", fraction, 0, space.size, 0, 0, 0, time.perf_counter() - t0))

        total += _count_fixed(path, lo, hi, budget, threads, report)
        steer.check()
    return total


def _rf_sums(path: list[Table], positions) -> np.ndarray:
    """The distinct rf sums of some positions (few: rf increments take a handful of values a stage)."""
    sums = np.zeros(1, np.int64)
    for i in positions:
        sums = np.unique((sums[:, None] + np.unique(path[i].rf)[None, :]).ravel())
    return sums


def _split(path: list[Table], room: int):
    """(G1 positions, G2 positions, g) with the least work whose bucket table fits, or None."""
    variable = [i for i, t in enumerate(path) if len(t.rf) > 1]
    gcds = {i: int(np.gcd.reduce(path[i].cost[path[i].cost > 0])) if np.any(path[i].cost > 0) else 0 for i in variable}
    best = None
    for k in range(1, len(variable)):
        for g1 in itertools.combinations(variable, k):
            g2 = [i for i in variable if i not in g1]
            g = 0
            for i in g1:
                g = math.gcd(g, gcds[i])
            if g == 0:
                continue
            size1 = math.prod(len(path[i].rf) for i in g1)
            pairs = math.prod(len(path[i].rf) for i in g2)  # the others' combined table x the largest
            if size1 > MAX_G1 or pairs > MAX_PAIRS:
                continue
            width = room // g + 2
            if width > MAX_CELLS:  # one row of the bucket table (the table is built in bands of rows)
                continue
            cells = len(_rf_sums(path, g2)) * width
            work = pairs + size1 + cells
            if best is None or work < best[0]:
                best = (work, g1, g2, g)
    return None if best is None else best[1:]


def _count_fixed(path: list[Table], lo: int, hi: int | None, budget: int, threads, report=None) -> int:
    const_rf = sum(int(t.rf[0]) for t in path if len(t.rf) == 1)
    const_cost = sum(int(t.cost[0]) for t in path if len(t.rf) == 1)
    const_w = math.prod(int(t.weight[0]) for t in path if len(t.rf) == 1)
    room = budget - const_cost
    if room < 0:
        return 0
    lo_r = lo - 1 - const_rf  # the window on the variable positions' rf sum
    hi_r = None if hi is None else hi - 1 - const_rf
    variable = [t for t in path if len(t.rf) > 1]
    if not variable:
        return const_w if lo_r <= 0 and (hi_r is None or hi_r >= 0) else 0
    if not any(int(t.cost.max()) for t in variable):
        # no cost budget: a convolution of the positions' rf histograms (a few hundred distinct sums), in
        # Python integers (the products pass 2^63 on Once-for-All)
        acc = {0: 1}
        for t in variable:
            hist: dict[int, int] = {}
            for r, w in zip(t.rf.tolist(), t.weight.tolist()):
                hist[r] = hist.get(r, 0) + w
            nxt: dict[int, int] = {}
            for r1, w1 in acc.items():
                for r2, w2 in hist.items():
                    nxt[r1 + r2] = nxt.get(r1 + r2, 0) + w1 * w2
            acc = nxt
            steer.check()
        return const_w * sum(w for r, w in acc.items() if r >= lo_r and (hi_r is None or r <= hi_r))
    if len(variable) == 1:
        t = variable[0]
        ok = (t.cost <= room) & (t.rf >= lo_r) & ((t.rf <= hi_r) if hi_r is not None else True)
        return const_w * int(t.weight[ok].sum())
    split = _split(path, room)
    if split is None:
        raise field_error("method", "stages", "no split of the stages keeps the exact count within reach")
    g1, g2, g = split
    t1 = path[g1[0]]
    for i in g1[1:]:
        t1 = steer.call(_combine, t1, path[i])  # seconds of numpy on OFA: in the kernel thread, Ctrl-C stays live
    order = sorted(g2, key=lambda i: len(path[i].rf))
    x = path[order[-1]]  # the largest G2 table, scanned against the others' combined table
    one = np.zeros(1, np.int64)
    y = Table(one, one, np.ones(1, np.int64), one)
    for i in order[:-1]:
        y = steer.call(_combine, y, path[i])
    r2 = _rf_sums(path, g2)  # G2's rf values, indexed
    # G1 sums cost v1 units, v1 in [vmin, vmax]: a G2 sum leaving q units pairs with the v1 <= q, so q
    # only matters clamped to [vmin - 1, vmax] (below vmin: no partner; from vmax on: every one)
    v1 = t1.cost // g  # exact: every G1 cost is a multiple of g
    vmin, vmax = int(v1.min()), int(min(v1.max(), room // g))
    if vmin > vmax:
        return 0
    width = vmax - vmin + 2  # column 0: q < vmin; column q - vmin + 1 otherwise
    if width > MAX_CELLS:
        raise field_error("method", "stages", f"one row of the bucket table would hold {width:.2g} cells")
    from rfsweep.kernels.cpu import stage_buckets

    ox = np.lexsort((x.cost, x.rf))  # grouped by rf, by cost within a group
    xr_vals, x_first = np.unique(x.rf[ox], return_index=True)
    x_start = np.append(x_first, len(ox)).astype(np.int64)
    x_cost, x_w = np.ascontiguousarray(x.cost[ox]), np.ascontiguousarray(x.weight[ox])
    x_q, x_r = np.divmod(x_cost, g)  # costs >= 0: floor division
    x_wsum = np.concatenate([[0], np.cumsum(x_w)]).astype(np.int64)
    # y grouped by rf, those with room left only; its room as g units and a remainder (the kernel's q)
    y_left = room - y.cost
    oy = np.flatnonzero(y_left >= 0)
    oy = oy[np.lexsort((y_left[oy], y.rf[oy]))]  # by room within a group: the next y's writes hit the same
    # cache lines of the row (its columns shifted by a unit or two), not 1.4 MB apart (OFA: 2x faster)
    y_rfv, y_first = np.unique(y.rf[oy], return_index=True)
    y_start = np.append(y_first, len(oy)).astype(np.int64)
    y_left, y_w = np.ascontiguousarray(y_left[oy]), np.ascontiguousarray(y.weight[oy])
    y_q, y_r = np.divmod(y_left, g)
    done = np.zeros(len(r2), np.int64)  # rows of the table complete, for progress
    tick = None if report is None else (lambda: report(float(done.mean())))
    fits = v1 <= vmax
    rf1, col, w1 = t1.rf[fits], v1[fits] - vmin + 1, t1.weight[fits]
    a = np.searchsorted(r2, lo_r - rf1, side="left")  # G1 entry i pairs with the G2 rf rows a[i]..b[i]-1
    b = np.searchsorted(r2, hi_r - rf1, side="right") if hi_r is not None else np.full(len(rf1), len(r2))
    # the table in bands of rows that fit BAND_CELLS (one band on Once-for-All MobileNetV3; two on
    # ProxylessNAS under 450M MACs, whose G1 sums need 1/392 of the budget's resolution): each band's
    # partial sums give each G1 entry its partners among the band's rows, and the bands add up
    rows = max(1, BAND_CELLS // width)
    total = 0
    for r0 in range(0, len(r2), rows):
        r1 = min(len(r2), r0 + rows)
        hist = np.zeros((r1 - r0, width), np.int64)
        steer.call(
            stage_buckets, y_rfv, y_start, y_left, y_q, y_r, y_w, xr_vals, x_start, x_cost, x_q, x_r, x_w, x_wsum,
            r2[r0:r1], g, vmin, vmax, hist, steer.control(), done[r0:r1], threads=threads, tick=tick,
        )  # fmt: skip
        # in place: suffix sums over q (hist[r, c] = G2 sums of rf r2[r0 + r] leaving >= vmin + c - 1 units),
        # then prefix sums over the band's rows
        hist[:, ::-1] = np.cumsum(hist[:, ::-1], axis=1)
        np.cumsum(hist, axis=0, out=hist)
        lo_k, hi_k = np.clip(a, r0, r1) - r0, np.clip(b, r0, r1) - r0  # the band's rows, relative
        upper = np.where(hi_k > 0, hist[np.maximum(hi_k - 1, 0), col], 0)
        lower = np.where(lo_k > 0, hist[np.maximum(lo_k - 1, 0), col], 0)
        total += _dot(w1, upper - lower)
        del hist
    return const_w * total


def _dot(a: np.ndarray, b: np.ndarray) -> int:
    """sum(a * b) exactly for non-negative int64 arrays whose products may pass 2^63: 32-bit halves."""
    b_hi, b_lo = b >> 32, b & 0xFFFFFFFF
    total = 0
    for part, shift in ((b_lo, 0), (b_hi, 32)):
        prod = a.astype(object) * part.astype(object) if a.max(initial=0) >= 2**31 else a * part
        total += int(np.sum(prod, dtype=object) if prod.dtype == object else _sum_exact(prod)) << shift
    return total


def _sum_exact(x: np.ndarray) -> int:
    """sum of non-negative int64 values below 2^63 without wrapping: 32-bit halves summed apart."""
    return (int(np.sum(x >> 32)) << 32) + int(np.sum(x & 0xFFFFFFFF))


__all__ = ["BUDGETS", "applicable", "budget_of", "count", "position_tables"]
