"""The state graph of a space of stages, on which the exact selections and samples run.

In a space of stages every position's choices share one stride (rfsweep.engine.stage_select checks it), so the
map size and the jump entering each position are the same for every candidate. A choice's rf
increment, params, MACs and 12 x ERF variance then depend only on the choice and on the channels it
receives; they are computed by the kernels' own ``child()`` (rfsweep.space.packing.children, as
rfsweep.engine.stage_count does), so they are the sweep's numbers. After the first p positions a prefix
leaves a *state*: (the rf it has added, its output channels). Prefixes that share a state share their
futures exactly: the same completions, the same rf, and the same costs added by every completion.
That is what lets a dynamic programme over positions replace the walk over the tree.

``Graph`` holds, per position, each reachable input's per-choice table; per level (after p positions)
the reachable states; the final states that meet the rf window and the jump; and, backwards, which
states can still reach one (``live``) and the least params and MACs (and latency, with a latency table) any
such completion adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from rfsweep.kernels import layer_math as lm
from rfsweep.space.model import Space
from rfsweep.space.packing import children, state_row

INF = np.int64(1) << np.int64(62)  # "no completion": larger than any cost (costs stay below 2^62)


@dataclass
class ChoiceTable:
    """One position's choices for one input channel count (index = choice index)."""

    ok: np.ndarray  # the choice fits (its map stays >= min_out_size)
    drf: np.ndarray  # rf it adds (at this position's jump)
    params: np.ndarray
    macs: np.ndarray
    erf: np.ndarray  # 12 x ERF variance it adds
    cout: np.ndarray  # its output channels
    peak: np.ndarray | None = None  # its own peak activation memory, elements (kernels.costs.block_peak)
    latency: np.ndarray | None = None  # whole microseconds of --latency-lut (rfsweep.space.latency), if any

    def metric(self, name: str) -> np.ndarray:
        """A per-choice additive quantity: params, macs, erf (12 x variance), latency (microseconds) or zero."""
        if name == "zero":
            return np.zeros(len(self.ok), np.int64)
        return getattr(self, name)


@dataclass
class Graph:
    """States per level and per-position choice tables (see the module docstring)."""

    space: Space
    tables: list[dict[int, ChoiceTable]]  # tables[p][cin]
    rf: list[np.ndarray]  # rf[p][s]: the rf the state's prefix added (the candidate's rf is 1 + that at the end)
    cin: list[np.ndarray]  # cin[p][s]: the channels entering position p
    keys: list[np.ndarray] = field(default_factory=list)  # sorted state keys per level, for lookups
    order: list[np.ndarray] = field(default_factory=list)  # state index of each sorted key
    final_ok: np.ndarray | None = None  # level P: rf in the window and the final jump allowed
    live: list[np.ndarray] = field(default_factory=list)  # live[p][s]: some completion ends in final_ok
    least: dict[str, list[np.ndarray]] = field(default_factory=dict)  # least[q][p][s]: least q completions add
    memo: dict = field(default_factory=dict)  # programmes built on this graph (rfsweep.engine.stage_sample's counts)

    @property
    def positions(self) -> int:
        return len(self.tables)

    def lookup(self, p: int, rf: np.ndarray, cout: np.ndarray) -> np.ndarray:
        """State indices at level p of (rf, channels) pairs; -1 where no such state."""
        key = np.asarray(rf, np.int64) * self._cmul + np.asarray(cout, np.int64)
        keys = self.keys[p]
        at = np.searchsorted(keys, key)
        at_c = np.minimum(at, max(len(keys) - 1, 0))
        hit = (at < len(keys)) & (keys[at_c] == key) if len(keys) else np.zeros(key.shape, bool)
        return np.where(hit, self.order[p][at_c] if len(keys) else -1, -1)

    def successors(self, p: int, states: np.ndarray, table: ChoiceTable) -> np.ndarray:
        """succ[i, c]: the level-(p+1) state after choice c from states[i] (-1: the choice does not fit,
        or leads nowhere the rf window and the jump allow)."""
        nxt = self.lookup(p + 1, self.rf[p][states][:, None] + table.drf[None, :], table.cout[None, :])
        nxt = np.where(table.ok[None, :], nxt, -1)
        if self.live and len(self.live[p + 1]):
            nxt = np.where(nxt >= 0, np.where(self.live[p + 1][np.maximum(nxt, 0)], nxt, -1), -1)
        return nxt

    def final_rf(self) -> np.ndarray:
        """The candidate's rf at each final state."""
        return 1 + self.rf[-1]

    _cmul: int = 0
    final_jump: int = 1  # the jump after the last position (one stride per position: the same for all)


def choice_tables(space: Space) -> tuple[list[dict[int, ChoiceTable]], int]:
    """Per position, {input channels: ChoiceTable} over the channels a prefix can deliver, and the final
    jump. The map size and jump entering each position are fixed (one stride per position)."""

    n, jump = space.input_size, 1
    inputs = {space.in_channels}
    tables = []
    for p in range(space.depth_max):
        rows = [state_row(n, jump, cin, 0) for cin in sorted(inputs)]
        per_cin, outs, n_next = {}, set(), None
        for cin, kids in zip(sorted(inputs), children(space, p, rows)):
            kids = np.array(kids, np.int64)
            ok = kids[:, lm.S_N] >= max(1, space.min_out_size)
            # a candidate's peak activation memory is the largest of its positions' own (no tensor lives
            # from one position to the next but the one they pass on), and a position's own depends only
            # on its choice and its input (size and channels, fixed here): a budget on it is exactly a
            # filter of the choices
            if space.max_peak_act is not None:
                ok &= kids[:, lm.S_PEAK] <= space.max_peak_act
            if ok.any():
                n_next = int(kids[ok][0, lm.S_N])
            per_cin[cin] = ChoiceTable(
                ok=ok,
                drf=np.where(ok, kids[:, lm.S_RF] - 1, 0),
                params=kids[:, lm.S_PARAMS].copy(),
                macs=kids[:, lm.S_MACS].copy(),
                erf=kids[:, lm.S_ERF].copy(),
                cout=kids[:, lm.S_CIN].copy(),
                peak=kids[:, lm.S_PEAK].copy(),
                latency=None if space.latency is None else space.latency.units[p][cin],
            )
            outs |= set(kids[ok, lm.S_CIN].tolist())
        tables.append(per_cin)
        inputs = outs
        jump *= space.positions[p][0].jump_factor
        n = n_next if n_next is not None else 0
    return tables, jump


def build(space: Space) -> Graph:
    """The state graph with the window, liveness and least-cost tables (cached on the space)."""
    cached = space.__dict__.get("_stage_graph")
    if cached is not None:
        return cached
    tables, final_jump = choice_tables(space)
    graph = _from_tables(space, tables, final_jump)
    space.__dict__["_stage_graph"] = graph
    return graph


def peak_budget(graph: Graph, budget: int) -> Graph:
    """The graph of the candidates whose peak activation memory is at most ``budget``: each position's
    choices above it dropped (exact: a candidate's peak is the largest of its positions' own), the
    states, liveness and least costs rebuilt. Not cached on the space."""
    tables = [{cin: replace(t, ok=t.ok & (t.peak <= budget)) for cin, t in per_cin.items()} for per_cin in graph.tables]
    return _from_tables(graph.space, tables, graph.final_jump)


def _from_tables(space: Space, tables: list[dict[int, ChoiceTable]], final_jump: int) -> Graph:
    rf = [np.zeros(1, np.int64)]
    cin = [np.array([space.in_channels], np.int64)]
    for per_cin in tables:
        pairs = set()
        for c, table in per_cin.items():
            here = rf[-1][cin[-1] == c]
            if len(here) == 0 or not table.ok.any():
                continue
            steps = np.unique(np.stack([table.drf[table.ok], table.cout[table.ok]], axis=1), axis=0)
            sums = (here[:, None] + steps[None, :, 0]).ravel()
            outs = np.broadcast_to(steps[None, :, 1], (len(here), len(steps))).ravel()
            pairs |= set(zip(sums.tolist(), outs.tolist()))
        ordered = sorted(pairs)
        rf.append(np.array([r for r, _ in ordered], np.int64))
        cin.append(np.array([c for _, c in ordered], np.int64))
    graph = Graph(space, tables, rf, cin)
    graph.final_jump = final_jump
    graph._cmul = int(max(int(c.max(initial=0)) for c in cin)) + 1
    for r, c in zip(rf, cin):
        key = r * graph._cmul + c
        order = np.argsort(key, kind="stable")
        graph.keys.append(key[order])
        graph.order.append(order.astype(np.int64))
    final = 1 + rf[-1]
    ok = final >= space.rf_min
    if space.rf_max is not None:
        ok &= final <= space.rf_max
    if space.jumps and final_jump not in space.jumps:
        ok[:] = False
    graph.final_ok = ok
    _backward(graph)
    return graph


def restrict(graph: Graph, final_ok: np.ndarray) -> Graph:
    """The same graph with fewer final states allowed (liveness and least costs recomputed)."""
    out = replace(graph, final_ok=np.asarray(final_ok, bool) & graph.final_ok, live=[], least={}, memo={})
    out._cmul = graph._cmul
    _backward(out)
    return out


def completion(graph: Graph, funcs: list, weights: list[float] | None = None) -> list[list[np.ndarray]]:
    """Per function, level and state, the sum one live completion adds: the least completion in the
    functions' lexicographic order (``weights`` None: exact, the sums of a lexicographic minimum are the
    minimum of sums), or the least in the weighted sum (floats only pick it: the sums returned are that
    completion's, exactly). ``funcs`` are callables table -> per-choice int64 values. INF where no
    completion is live."""
    P = graph.positions
    m = len(funcs)
    out = [[None] * (P + 1) for _ in range(m)]
    for f in range(m):
        out[f][P] = np.where(graph.final_ok, 0, INF)
    w_next = np.where(graph.final_ok, 0.0, np.inf)
    for p in range(P - 1, -1, -1):
        n = len(graph.rf[p])
        sums = [np.full(n, INF) for _ in range(m)]
        w_here = np.full(n, np.inf)
        for c, table in graph.tables[p].items():
            states = np.nonzero(graph.cin[p] == c)[0]
            if len(states) == 0 or len(graph.rf[p + 1]) == 0:
                continue
            nxt = graph.successors(p, states, table)
            good = nxt >= 0
            at = np.maximum(nxt, 0)
            vals = [np.where(good, out[f][p + 1][at] + funcs[f](table)[None, :], INF) for f in range(m)]
            if weights is None:
                cand = good
                for v in vals:  # narrow to the least of each function in turn
                    least = np.where(cand, v, INF).min(axis=1)
                    cand = cand & (v == least[:, None])
                pick = cand.argmax(axis=1)
            else:
                wt = np.where(good, w_next[at] + sum(w * funcs[f](table) for f, w in enumerate(weights))[None, :],
                              np.inf)  # fmt: skip
                pick = wt.argmin(axis=1)
                w_here[states] = wt[np.arange(len(states)), pick]
            rows = np.arange(len(states))
            ok = good[rows, pick]
            for f in range(m):
                sums[f][states] = np.where(ok, vals[f][rows, pick], INF)
        for f in range(m):
            out[f][p] = sums[f]
        w_next = w_here
    return out


def level_groups(graph: Graph, p: int, groups_of):
    """The choice groups of every table at position p and the state each group leads to from each state.

    ``groups_of(table)`` returns (drf, cout, payload) per group for one table. Returns tid[s] (the
    table of state s, -1 if none), gt_off (table t's groups: gt_off[t]..gt_off[t + 1]), ns_off and nxt
    (nxt[ns_off[s] + g - gt_off[tid[s]]]: the next state, -1 where none is live), and the payloads.
    """
    cins = sorted(graph.tables[p])
    index = {c: i for i, c in enumerate(cins)}
    tid = np.array([index.get(int(c), -1) for c in graph.cin[p]], np.int64)
    drfs, couts, payloads, gt_off = [], [], [], [0]
    for c in cins:
        drf, cout, payload = groups_of(graph.tables[p][c])
        drfs.append(np.asarray(drf, np.int64))
        couts.append(np.asarray(cout, np.int64))
        payloads.append(payload)
        gt_off.append(gt_off[-1] + len(drfs[-1]))
    n = len(graph.rf[p])
    ns_off = np.zeros(n + 1, np.int64)
    parts = []
    for s in range(n):
        t = tid[s]
        if t < 0:
            ns_off[s + 1] = ns_off[s]
            continue
        v = graph.lookup(p + 1, graph.rf[p][s] + drfs[t], couts[t])
        live = v >= 0
        live[live] = graph.live[p + 1][v[live]]
        parts.append(np.where(live, v, -1))
        ns_off[s + 1] = ns_off[s] + len(v)
    nxt = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return tid, np.array(gt_off, np.int64), ns_off, nxt.astype(np.int64), payloads


def _backward(graph: Graph) -> None:
    """live[p][s] and least[q][p][s] (q = params, macs, and latency with a latency table): completions that
    end in the window, backwards."""
    P = graph.positions
    live = [None] * (P + 1)
    quantities = ("params", "macs") + (("latency",) if graph.space.latency is not None else ())
    least = {q: [None] * (P + 1) for q in quantities}
    live[P] = graph.final_ok.copy()
    for q in least:
        least[q][P] = np.where(live[P], 0, INF)
    for p in range(P - 1, -1, -1):
        n = len(graph.rf[p])
        lv = np.zeros(n, bool)
        lq = {q: np.full(n, INF) for q in least}
        for c, table in graph.tables[p].items():
            states = np.nonzero(graph.cin[p] == c)[0]
            if len(states) == 0 or len(graph.rf[p + 1]) == 0:
                continue
            nxt = graph.lookup(p + 1, graph.rf[p][states][:, None] + table.drf[None, :], table.cout[None, :])
            nxt = np.where(table.ok[None, :], nxt, -1)
            good = nxt >= 0
            good[good] = live[p + 1][nxt[good]]
            lv[states] = good.any(axis=1)
            for q in least:
                after = np.where(good, least[q][p + 1][np.maximum(nxt, 0)] + table.metric(q)[None, :], INF)
                lq[q][states] = after.min(axis=1)
        live[p] = lv
        for q in least:
            least[q][p] = lq[q]
    graph.live = live
    graph.least = least


__all__ = [
    "INF",
    "ChoiceTable",
    "Graph",
    "build",
    "choice_tables",
    "completion",
    "level_groups",
    "restrict",
]
