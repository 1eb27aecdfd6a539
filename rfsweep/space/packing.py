"""A Space packed for the kernels: the int64 arrays they share, and the proof that none of them wraps.

:func:`kernel_arrays` builds the :class:`~rfsweep.kernels.layer_math.KernelArrays` the walk, the
counting programme and the list columns all read (``Space.kernel`` keeps one per space).
:func:`check_representable` refuses, before any kernel runs, a space whose ids or metrics could leave
int64 inside the kernels, where numba wraps silently; it works from upper bounds of every metric,
taken exactly per position over the states a prefix can be in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.kernels import layer_math as lm
from rfsweep.space.ids import ID_LIMIT
from rfsweep.space.settings import INT_LIMIT, OP_CODES, PAD_CODES

if TYPE_CHECKING:  # a Space is built from this module's arrays (Space.kernel): its type only, for the hints
    from rfsweep.space.model import Space

REACH_MAX = 1 << 16  # rf upper bounds up to this get the exact reachability table


def kernel_arrays(space: Space) -> lm.KernelArrays:
    """The int64 arrays every kernel takes (see kernels/layer_math.py for their layout)."""
    dmax = space.depth_max
    choices = space.__dict__.get("_choice_array")
    if choices is None:
        choices = space.__dict__["_choice_array"] = np.array(choice_table(space), np.int64)
    cons = np.zeros(lm.NC + 2 * (dmax + 1), np.int64)
    if space.max_params is not None or space.max_macs is not None:
        add_floors(space, cons)  # else they prune nothing (20 ms of a start): a top-k by cost adds them
    cons[lm.C_RF_MIN] = space.rf_min
    cons[lm.C_RF_MAX] = space.rf_cap
    cons[lm.C_MIN_OUT] = max(1, space.min_out_size)
    cons[lm.C_MAX_PARAMS] = INT_LIMIT if space.max_params is None else space.max_params
    cons[lm.C_MAX_MACS] = INT_LIMIT if space.max_macs is None else space.max_macs
    cons[lm.C_NO_UNPROD] = int(space.no_unproductive)
    cons[lm.C_N] = space.input_size
    cons[lm.C_CIN] = space.in_channels
    cons[lm.C_PAD] = PAD_CODES[space.padding]
    cons[lm.C_BIAS] = int(space.bias)
    cons[lm.C_WIDTH] = space.width
    cons[lm.C_MAX_WIDTH] = space.max_width
    cons[lm.C_DMIN] = space.depth_min
    cons[lm.C_DMAX] = dmax
    cons[lm.C_NJUMPS] = len(space.jumps)
    cons[lm.C_NLEVELS] = len(space.levels)
    cons[lm.C_MIN_CONVS] = space.min_convs
    cons[lm.C_MAX_PEAK] = INT_LIMIT if space.max_peak_act is None else space.max_peak_act
    cons[lm.C_ACT_BYTES] = space.act_bytes
    anchors = np.zeros((max(1, len(space.levels)), lm.NA), np.int64)
    for i, lv in enumerate(space.levels):
        anchors[i] = (lv.stride, lv.rf_lo, lv.rf_hi, lv.erf12)
    return lm.KernelArrays(
        choices=choices,
        nch=np.array(space.radices, np.int64),
        cons=cons,
        jumps=np.array(space.jumps or (0,), np.int64),
        anchors=anchors,
        growth=growth_table(space),
        # the kernels' arch_ids hold when the id space fits int64; a larger space's ids (rfsweep.space.ids) come
        # from the choice indices, and a count never reads them
        dep_off=np.array([o if space.id_space < INT_LIMIT else 0 for o in space.depth_offsets()], np.int64),
        blocks=_blocks_flag(space),
    )


def _blocks_flag(space: Space) -> bool | None:
    """``KernelArrays.blocks``: None for a chain, whose kernels then compile without the blocks path."""
    return True if space.has_blocks else None


def choice_table(space: Space) -> list:
    """choices[p][c][F_*] (then BF_* per block for a choice of blocks) as nested lists of Python ints:
    the kernels' table, and in Python the exact-integer twin metric_bounds runs the kernels' code on.
    Built once per space."""
    cached = space.__dict__.get("_choice_table")
    if cached is None:
        cached = space.__dict__["_choice_table"] = _choice_table(space)
    return cached


def _choice_table(space: Space) -> list:
    nmax = max((len(c.blocks) for p in space.positions for c in p), default=0)
    width = lm.NF + lm.BF * nmax
    table = []
    for p, options in enumerate(space.positions):
        rows = []
        for c, ch in enumerate(options):
            row = [0] * width
            if ch.blocks:
                row[lm.F_OP] = lm.OP_BLOCKS
                row[lm.F_C] = ch.channels
                row[lm.F_NB] = len(ch.blocks)
                for b, block in enumerate(ch.blocks):
                    row[lm.NF + lm.BF * b : lm.NF + lm.BF * (b + 1)] = block.row()
            else:
                row[lm.F_OP], row[lm.F_K], row[lm.F_D], row[lm.F_C] = (
                    OP_CODES[ch.op],
                    ch.kernel,
                    ch.dilation,
                    ch.channels,
                )
            row[lm.F_S] = ch.jump_factor
            row[lm.F_ROLE] = space.roles[p][c]
            row[lm.F_RFV] = ch.rf_step
            row[lm.F_CONVS] = ch.convs
            rows.append(row)
        rows += [[0] * width] * (max(space.radices) - len(rows))
        table.append(rows)
    return table


def growth_table(space: Space) -> np.ndarray:
    """growth[t, 0]: the most rf positions t.. add per unit of jump; with an rf upper bound of at most
    REACH_MAX, growth[t, 1 + x] also counts the relative increments v <= x that positions t.. can
    add (v = 0 when depth t may stop), so the kernels prune every prefix that cannot land in the window.
    """
    g = np.array(space.growth(), np.int64)[:, None]
    if space.rf_max is None or space.rf_cap > REACH_MAX:
        return np.ascontiguousarray(g)
    width = space.rf_cap + 1  # increments 0..rf_cap-1 matter (rf starts at 1)
    reach = np.zeros(width, bool)
    reach[0] = True  # after the last position nothing is added
    table = np.zeros((space.depth_max + 1, 1 + width), np.int64)
    table[space.depth_max, 1:] = np.cumsum(reach)
    for t in range(space.depth_max - 1, -1, -1):
        nxt = np.zeros(width, bool)
        nxt[0] = t >= space.depth_min
        vals = np.nonzero(reach)[0]
        for c in space.positions[t]:
            v = c.rf_step + c.jump_factor * vals
            nxt[v[v < width]] = True
        reach = nxt
        table[t, 1:] = np.cumsum(reach)
    table[:, 0] = g[:, 0]
    return table


class _Nested:
    """Nested lists indexed like a 2-D/3-D numpy array (``a[i, j, k]``): the kernels' register_jitable code
    runs on it in plain Python, with Python's exact integers."""

    def __init__(self, rows):
        self.rows = rows

    def __getitem__(self, key):
        out = self.rows
        for k in key if isinstance(key, tuple) else (key,):
            out = out[k]
        return out

    def __setitem__(self, key, value):
        *head, last = key
        row = self.rows
        for k in head:
            row = row[k]
        row[last] = value


def _crude_bound(space: Space) -> int:
    """A quick upper bound of any prefix's params and MACs (and so of the kernels' intermediate values)."""
    cached = space.__dict__.get("_crude_bound")
    if cached is not None:
        return cached
    blocks = {b for p in space.positions for c in p for b in c.blocks}  # few distinct ones
    cmax = max([space.in_channels, space.max_width] + [c.channels for p in space.positions for c in p])
    cmax = cmax * max([1] + [int(b.expand) + 1 for b in blocks]) + 16
    kmax = max([1] + [b.kernel for b in blocks])
    total = 0
    for options in space.positions:
        total += max(len(c.blocks) * 4 * (kmax**2 + 4) if c.blocks else c.kernel**2 + 1 for c in options)
    bound = total * cmax * cmax * (space.input_size**2 + 1) * 2
    space.__dict__["_crude_bound"] = bound
    return bound


# Below this many (state, choice) pairs a call runs child() in Python (~8 us a pair): the main job's
# bounds take 27 ms so, where the compiled step_all costs 2-5 s to compile on a first run and ~0.1 s to
# load from the cache after (measured, 2 cores; bench_cold.py).
COMPILED_PAIRS = 4096


def children(space: Space, p: int, rows: list[list[int]]) -> list[list[list[int]]]:
    """children[i][c]: the state row after choice c at position p from state row i (S_N 0: it does not
    fit), by the kernels' own child() on open constraints: compiled where no int64 can wrap and the call
    is large (``COMPILED_PAIRS``), else run in Python on exact integers."""
    if not rows:
        return []
    table = choice_table(space)
    if len(rows) * space.radices[p] >= COMPILED_PAIRS and _crude_bound(space) < INT_LIMIT:
        from rfsweep.kernels.cpu import step_all

        cons = np.array([min(v, INT_LIMIT) for v in _open_cons(space)], np.int64)
        out = np.zeros((len(rows), space.radices[p], lm.NS), np.int64)
        nch = np.array(space.radices, np.int64)
        array = space.__dict__.get("_choice_array")
        if array is None:
            array = space.__dict__["_choice_array"] = np.array(table, np.int64)
        step_all(array, nch, cons, p, np.array(rows, np.int64), out, _blocks_flag(space))
        return out.tolist()
    choices = _Nested(table)
    cons = _open_cons(space)
    result = []
    for row in rows:
        kids = []
        for c in range(space.radices[p]):
            st = _Nested([list(row), [0] * lm.NS])
            lm.any_child(st, 0, choices, cons, p, c, _blocks_flag(space))
            kids.append(st.rows[1])
        result.append(kids)
    return result


def state_row(n, jump, cin, ndown, params=0, macs=0, erf=0) -> list[int]:
    row = [0] * lm.NS
    row[lm.S_N], row[lm.S_JUMP], row[lm.S_CIN], row[lm.S_NDOWN], row[lm.S_RF] = n, jump, cin, ndown, 1
    row[lm.S_PARAMS], row[lm.S_MACS], row[lm.S_ERF], row[lm.S_JLOG] = params, macs, erf, -1
    return row


def metric_bounds(space: Space) -> dict[str, int]:
    """Upper bounds of what any prefix reaches: params, MACs, 12 x erf variance, the largest
    single-choice params and MACs, and the peak activation memory (elements).

    The kernels' own layer_math.child() runs in Python on exact integers (no int64 to wrap), from each
    prefix state summarised per (input channels, strided layers so far), the two things that fix a
    choice's channels, by the largest out size, jump, params, MACs and erf any prefix in that state has;
    every increment grows with them, so the bounds hold, and they are the true maxima whenever one
    prefix has all the largest values at once (the usual case: fewest strides, most channels).
    """
    states = {(space.in_channels, 0): (space.input_size, 1, 0, 0, 0)}
    best = {"params": 0, "macs": 0, "erf12": 0, "layer_params": 0, "layer_macs": 0, "peak": 0}
    for p in range(space.depth_max):
        rows = [
            state_row(n, jump, cin, nd, params, macs, erf) for (cin, nd), (n, jump, params, macs, erf) in states.items()
        ]
        nxt: dict[tuple[int, int], tuple[int, int, int, int, int]] = {}
        for row, kids in zip(rows, children(space, p, rows)):
            for kid in kids:
                if kid[lm.S_N] < 1:  # the choice does not fit
                    continue
                value = tuple(kid[f] for f in (lm.S_N, lm.S_JUMP, lm.S_PARAMS, lm.S_MACS, lm.S_ERF))
                key = (kid[lm.S_CIN], kid[lm.S_NDOWN])
                old = nxt.get(key)
                nxt[key] = value if old is None else tuple(map(max, old, value))
                best["layer_params"] = max(best["layer_params"], value[2] - row[lm.S_PARAMS])
                best["layer_macs"] = max(best["layer_macs"], value[3] - row[lm.S_MACS])
                best["peak"] = max(best["peak"], kid[lm.S_PEAK])  # rows start at peak 0: the choice's own
        states = nxt
        for _, _, params, macs, erf in states.values():
            best["params"] = max(best["params"], params)
            best["macs"] = max(best["macs"], macs)
            best["erf12"] = max(best["erf12"], erf)
    return best


def add_floors(space: Space, cons: np.ndarray) -> None:
    """Put :func:`cost_floors` into a kernel's constraints (``cons[NC + 2t]``, ``cons[NC + 2t + 1]``): needed
    where a params or MACs budget is set, by the space (:func:`kernel_arrays`) or by a top-k search
    narrowing one (rfsweep.engine.select.TopK, once a run)."""
    cons[lm.NC :] = np.array(cost_floors(space), np.int64).ravel()


def cost_floors(space: Space) -> list[tuple[int, int]]:
    """floors[t] = (params, MACs) every completion of a node at depth t adds at the least: 0 where a
    candidate may end, else the cheapest choice at t (over the states a prefix can reach, taken at its
    smallest map, where every cost is smallest) plus floors[t + 1]. The kernels prune a prefix whose
    cost plus its floor exceeds a budget: exact, since a budget then cuts every completion too.
    """
    # the smallest map each (channels, strided layers) state can have at each depth
    states = {(space.in_channels, 0): space.input_size}
    cheapest = []
    for p in range(space.depth_max):
        rows = [state_row(n, 1, cin, nd) for (cin, nd), n in states.items()]
        nxt: dict[tuple[int, int], int] = {}
        best = None
        for kids in children(space, p, rows):
            for kid in kids:
                if kid[lm.S_N] < 1:
                    continue
                inc = (kid[lm.S_PARAMS], kid[lm.S_MACS])
                best = inc if best is None else (min(best[0], inc[0]), min(best[1], inc[1]))
                key = (kid[lm.S_CIN], kid[lm.S_NDOWN])
                nxt[key] = min(nxt.get(key, kid[lm.S_N]), kid[lm.S_N])
        states = nxt
        cheapest.append(best or (0, 0))
    floors = [(0, 0)] * (space.depth_max + 1)
    for t in range(space.depth_max - 1, -1, -1):
        if t >= space.depth_min:
            floors[t] = (0, 0)
        else:
            floors[t] = (cheapest[t][0] + floors[t + 1][0], cheapest[t][1] + floors[t + 1][1])
    return [(min(a, INT_LIMIT), min(b, INT_LIMIT)) for a, b in floors]


def _open_cons(space: Space) -> list[int]:
    """Constraints that refuse only what does not fit (no budget, no rf cap), for the exact-integer twin."""
    cons = [0] * (lm.NC + 2 * (space.depth_max + 1))
    big = 1 << 400
    cons[lm.C_RF_MAX] = cons[lm.C_MAX_PARAMS] = cons[lm.C_MAX_MACS] = cons[lm.C_MAX_PEAK] = big
    cons[lm.C_MIN_OUT] = 1
    cons[lm.C_N] = space.input_size
    cons[lm.C_PAD] = PAD_CODES[space.padding]
    cons[lm.C_BIAS] = int(space.bias)
    cons[lm.C_WIDTH] = space.width
    cons[lm.C_MAX_WIDTH] = space.max_width
    cons[lm.C_DMAX] = space.depth_max
    return cons


def check_representable(space: Space, *, for_search: bool = True) -> None:
    """Refuse spaces whose ids or metrics could wrap int64 inside the kernels (one line, the field to change).

    A budget bounds what the walk accumulates: it stops a prefix as soon as params (MACs) pass
    ``max_params`` (``max_macs``), so with a budget only budget + one layer must fit.
    """

    if for_search and (space.id_space >= ID_LIMIT or max(space.radices, default=1) >= 1 << 32):
        raise field_error(
            "depth",
            space.settings.get("depth"),
            f"the space has {space.id_space:.3e} arch_ids, more than the 38 digits a search writes them in; "
            "narrow it, or count it (rfsweep count)",
        )
    if space.rf_bound >= INT_LIMIT or space.jump_bound >= INT_LIMIT:
        raise field_error(
            "strides",
            space.settings.get("strides"),
            f"the largest rf ({space.rf_bound:.3e}) or jump ({space.jump_bound:.3e}) does not fit in int64; "
            "use fewer or smaller strides, kernels or dilations, or a smaller depth",
        )
    b = metric_bounds(space)
    for name, key, budget in (("params", "params", space.max_params), ("MACs", "macs", space.max_macs)):
        reach = b[key] if budget is None else min(b[key], budget + b["layer_" + key])
        if reach >= INT_LIMIT:
            raise field_error(
                f"max_{key}",
                budget,
                f"the {name} of this space reach {b[key]:.3e}, beyond int64; set a --max-{key} budget "
                f"below {INT_LIMIT - b['layer_' + key]:.3e}, or narrow channels or input_size",
            )
    if b["peak"] * space.act_bytes >= INT_LIMIT:
        raise field_error(
            "input_size",
            space.input_size,
            f"the peak activation memory of this space ({b['peak']:.3e} elements) does not fit in int64; "
            "narrow channels or input_size",
        )
    if b["erf12"] >= INT_LIMIT and (for_search or space.levels):
        # a count needs the ERF only for detector levels (--anchor-erf); name the option the user can change
        dil = space.settings.get("dilations")
        key = "dilations" if dil not in (None, [1], (1,), 1, "1") else "depth"
        raise field_error(
            key,
            space.settings.get(key),
            f"the effective-RF variance of this space ({b['erf12'] / 12:.3e}) does not fit in int64; "
            "use smaller dilations, kernels or strides, or a smaller depth",
        )


__all__ = [
    "REACH_MAX",
    "check_representable",
    "children",
    "growth_table",
    "kernel_arrays",
    "metric_bounds",
    "state_row",
]
