"""Exact selections on spaces of stages by dynamic programming over positions: the best k, the Pareto
front, and (rfsweep.engine.stage_sample) uniform samples, without walking the tree.

A space of stages (Once-for-All MobileNetV3: 7371^5 = 2.2e19 subnets) is too large to walk, but its
candidates are paths through a small graph (rfsweep.space.stage_graph): after p positions a prefix leaves a
state (rf added, channels out), and prefixes that share a state share every completion, with the same
rf, the same costs added and the same constraints met. The programmes below keep, per state, only the
prefixes that can still be part of the answer, then rebuild the chosen candidates' choice indices and
get their rows from :func:`rfsweep.engine.run.evaluate`: the kernels' own rows, as the walk writes them.

Why each is exact:

* **best k** by a key (params, MACs, 12 x ERF variance negated, latency in whole microseconds of the
  --latency-lut table, or for ``rf_error`` the constant 0 with the final rf deciding at the end), ties
  to the smaller arch_id = the lexicographically smaller choice tuple. Candidates are ordered by (key,
  prefix) inside a state. If a prefix x of a top-k candidate x + y had k prefixes before it in its
  state, each of them with the suffix y would be a candidate (same state: same rf, same costs added,
  same constraints) before x + y: so only the first k prefixes of each state are needed. With a budget
  on another quantity o (top k by MACs under --max-params), a prefix is only beaten by those before it
  with no larger o (they stay within the budget wherever x does), so each state keeps the prefixes that
  have fewer than k such prefixes before them (no larger in every budgeted quantity among params, MACs
  and latency). A budget on the key itself, and every budget with the least cost a
  completion still adds, drops prefixes that cannot finish inside it. Extending a state's list by a
  group of choices (one rf increment, one output: one next state), pair (i, j) has at least
  (d_i + 1)(d_j + 1) - 1 pairs before it with no larger o, so only pairs with (d_i + 1)(d_j + 1) <= k
  are formed.
* **Pareto front** by 2-3 of params, MACs, rf_error, ERF, latency_ms: per state, the distinct vectors of the
  additive objectives (and of the budgeted quantities that are not objectives) that no other vector of
  the state beats (no worse everywhere, better in an objective); a beaten prefix's every completion is
  beaten by the same completion of the prefix that beats it. Equal vectors are one node with every
  (parent, choice) that reaches it, so ties are kept, and the front's candidates are every path into
  the front's final nodes (rf_error is the final state's).

The rows, their order and ties are then those of the walk's TopK and Front (the same classes order them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.engine import objectives, stage_sample, steer
from rfsweep.engine.run import Batch, Stats
from rfsweep.engine.run import evaluate_chosen as evaluate
from rfsweep.engine.select import Front, TopK
from rfsweep.kernels import layer_math as lm
from rfsweep.space import Space, stage_graph
from rfsweep.space.stage_graph import INF, Graph

MAX_K = 100_000  # --limit with --sort beyond this goes to the walk
MAX_PAIRS = 30_000_000  # partial candidates formed at one position (about 40 bytes each)
MAX_FRONT_ROWS = 1 << 20  # candidates on a front, ties included
ERF_EXACT = 1 << 50  # below this, 12 x variance -> sqrt(v / 12) keeps distinct values distinct and in order
# the stop flag of the kernels called in the main thread on one table's choices (milliseconds): raised by no
# one, so a flag left up by an earlier signal cannot cut them short. Work on a level's prefixes (seconds at
# MAX_PAIRS) runs in steer's kernel thread with steer.control(), so Ctrl-C stays live.
NEVER = np.zeros(steer.NCTL, np.int64)
KEYS = {"params": "params", "macs": "macs", "erf": "erf", "rf_error": "zero", "latency_ms": "latency"}
BUDGETED = ("params", "macs", "latency")  # the per-choice costs a budget can bound (latency: whole microseconds)
FLAGS = {"params": "--max-params", "macs": "--max-macs", "latency": "--max-latency-ms"}


def applicable(space: Space, selection: dict) -> str | None:
    """None when the selection (limit, sort, pareto, sample, seed, where) can be made here exactly, else
    why not (one clause; the walk is used)."""
    why = _space_reason(space)
    if why is not None:
        return why
    limit, sort, pareto, sample, where = (selection.get(k) for k in ("limit", "sort", "pareto", "sample", "where"))
    if isinstance(pareto, str):
        pareto = tuple(n.strip() for n in pareto.split(","))
    if where is not None:
        return "--where filters the walk's rows"
    if sort == "latency_ms" and space.latency is None:
        return "--sort latency_ms needs --latency-lut"
    if "latency_ms" in (pareto or ()) and space.latency is None:
        return "--pareto latency_ms needs --latency-lut"
    budgets = [q for q in BUDGETED if _budget(space, q) is not None]
    if sample is not None:
        if len(budgets) > 1:
            named = " and ".join(FLAGS[q] for q in budgets)
            return f"both {named} are set (the exact count handles one budget)"
        return None
    if pareto is not None:
        if "depth" in pareto:
            return "a space of stages has no depth objective"
        if "peak_act" in pareto:
            if len(pareto) > 3:
                return "peak_act is a largest value: the exact front takes it beside one or two objectives"
        if "erf" in pareto and _erf_bound(space) >= ERF_EXACT:
            return "the ERF variances are too large to compare exactly as sigmas"
        return None
    if sort is None or limit is None:
        return "the walk lists survivors in order"
    if sort not in KEYS and sort != "peak_act":
        return f"unknown sort key {sort!r}"
    if limit > MAX_K:
        return f"--limit above {MAX_K:,}"
    if sort == "erf" and _erf_bound(space) >= ERF_EXACT:
        return "the ERF variances are too large to compare exactly as sigmas"
    return None


def _space_reason(space: Space) -> str | None:
    if not space.has_blocks or space.depth_min != space.depth_max:
        return "not a space of stages"
    if space.no_unproductive or space.levels or space.min_convs:
        return "--no-unproductive, --anchors and --min-convs need the whole prefix"
    if any(r != lm.ROLE_BODY | lm.ROLE_HEAD for rs in space.roles for r in rs):
        return "the space has head-only choices"
    for p, options in enumerate(space.positions):
        if len({c.jump_factor for c in options}) != 1:
            return f"position {p}'s choices have different strides"
    return None


def _budget(space: Space, q: str) -> int | None:
    return {"params": space.max_params, "macs": space.max_macs, "latency": space.max_latency}.get(q)


def _by_least_key(names) -> bool:
    """A front by peak_act and one additive objective: by the least key per peak (else by the fronts of
    the other objectives per peak)."""
    return len(names) == 2 and "peak_act" in names and "rf_error" not in names


def _others(budgets: list[str], key: str) -> list[str]:
    """The budgeted quantities besides a sort key or objective (``key``: a --sort/--pareto name)."""
    return [q for q in budgets if q != KEYS.get(key)]


def _budgets(space: Space) -> list[str]:
    return [q for q in BUDGETED if _budget(space, q) is not None]


def _erf_bound(space: Space) -> int:
    graph = stage_graph.build(space)
    return sum(max((int(t.erf[t.ok].max(initial=0)) for t in per.values()), default=0) for per in graph.tables)


def run(
    space: Space, selection: dict, *, device: str = "cpu", threads: int | None = None, stats: Stats | None = None
) -> Iterator[Batch]:
    """The selection's rows in batches, with the Stats of an exact method (every candidate settled)."""
    stats = stats if stats is not None else Stats()
    stats.space_size = stats.covered = space.size
    t0 = time.perf_counter()
    kw = dict(device=device, threads=threads, stats=stats)
    try:
        if selection.get("sample") is not None:
            yield from stage_sample.sample(space, selection["sample"], selection.get("seed"), **kw)
        elif selection.get("pareto") is not None:
            yield front(space, tuple(selection["pareto"]), **kw)
        else:
            yield top_k(space, selection["limit"], selection["sort"], **kw)
    finally:
        stats.seconds = time.perf_counter() - t0


# ---------------------------------------------------------------- shared helpers


def _segments(sorted_ids: np.ndarray, n: int) -> np.ndarray:
    """starts[s]..starts[s + 1]: the run of id s in a sorted id array (n ids)."""
    return np.searchsorted(sorted_ids, np.arange(n + 1)).astype(np.int64)


def _dense_rank(seg_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Dense rank (0..) of each value within its segment (equal values, equal ranks)."""
    if len(values) == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((values, seg_ids))
    sv, ss = values[order], seg_ids[order]
    new = np.ones(len(order), bool)
    new[1:] = (sv[1:] != sv[:-1]) | (ss[1:] != ss[:-1])
    first = np.ones(len(order), bool)
    first[1:] = ss[1:] != ss[:-1]
    c = np.cumsum(new) - 1
    base = np.maximum.accumulate(np.where(first, c, 0))
    rank = np.empty(len(order), np.int64)
    rank[order] = c - base
    return rank


def _rebuild(parents: list[np.ndarray], choices: list[np.ndarray], last: np.ndarray) -> np.ndarray:
    """Choice tuples of the final items ``last`` by following the parent pointers back."""
    P = len(parents)
    out = np.zeros((len(last), P), np.int64)
    at = np.asarray(last, np.int64)
    for p in range(P - 1, -1, -1):
        out[:, p] = choices[p][at]
        at = parents[p][at]
    return out


def _evaluate(space: Space, choice: np.ndarray, **kw) -> Batch:
    return evaluate(space, choice, **kw)[0]


# ---------------------------------------------------------------- best k


def top_k(
    space: Space, k: int, sort: str, *, device: str = "cpu", threads: int | None = None, stats: Stats | None = None
) -> Batch:
    """The best ``k`` survivors by ``sort`` (params, macs, rf_error, erf, latency_ms, peak_act), ties to the
    smaller arch_id: the rows and order of the walk's TopK (see the module docstring for why it is exact).

    For rf_error the key is the final state's: the programme first allows only the final rfs of the
    smallest errors and widens them until k candidates are found (every candidate left out has a larger
    error than all of those found, so the first k found are the best k).
    """

    why = applicable(space, {"limit": k, "sort": sort})
    if why is not None:
        raise field_error("sort", sort, f"the exact selection cannot take this space: {why}")
    if sort == "peak_act":
        return _top_k_by_peak(space, k, device=device, threads=threads, stats=stats)
    graph = stage_graph.build(space)
    key_name, sign = KEYS[sort], (-1 if sort == "erf" else 1)
    others = _others(_budgets(space), sort)
    bk = _budget(space, key_name)
    bk = INF if bk is None else np.int64(bk)

    def kfun(table):
        return sign * table.metric(key_name)

    if sort != "rf_error":
        found = _topk_pass(graph, k, kfun, bk, others)
        final = found[2]["key"]
    else:
        t2 = objectives.rf_target2(space)
        err = np.abs(2 * graph.final_rf() - t2)
        levels = np.unique(err[graph.final_ok])
        take = 1
        while True:  # widen the allowed errors until k candidates are found, or every error is allowed
            allowed = err <= levels[min(take, len(levels)) - 1] if len(levels) else graph.final_ok
            sub = graph if take >= len(levels) else stage_graph.restrict(graph, allowed)
            found = _topk_pass(sub, k, kfun, bk, others)
            if len(found[2]["state"]) >= k or take >= len(levels):
                break
            take *= 4
        final = err[found[2]["state"]]
    parents, choices, it = found
    best = np.lexsort((it["lex"], final))[:k]
    chosen = _rebuild(parents, choices, best)
    chosen = chosen[np.lexsort(chosen.T[::-1])]  # arch_id order, for evaluate
    batch = _evaluate(space, chosen, device=device, threads=threads, stats=stats)
    top = TopK(k, space, sort)
    top.add(batch)
    return top.result()


def _top_k_by_peak(space: Space, k: int, **kw) -> Batch:
    """The best ``k`` by peak activation memory, ties to the smaller arch_id. The peak is a largest value,
    not a sum, so it is no key of the programme; but a budget on it is a filter of each position's
    choices (rfsweep.space.stage_graph.peak_budget), and the candidates' peaks are among the choices' own.
    With ``first(v)`` the first k candidates in arch_id order with peak <= v (the programme with a zero
    key), a search over those values finds the least v with k of them: every candidate of peak below v
    (fewer than k: ``first`` of the value before v gives all of them) comes first, then those of peak v
    in arch_id order, and the first k of ``first(v)`` hold at least the k - (those below) needed."""
    graph = stage_graph.build(space)
    others = _budgets(space)
    values = np.unique(np.concatenate([t.peak[t.ok] for per in graph.tables for t in per.values()] + [[0]]))

    def first(i: int) -> np.ndarray:
        g = graph if i == len(values) - 1 else stage_graph.peak_budget(graph, int(values[i]))
        if not g.final_ok.any() or not g.live[0].any():
            return np.zeros((0, g.positions), np.int64)
        parents, choices, it = _topk_pass(g, k, _zero, INF, others)
        return _rebuild(parents, choices, np.argsort(it["lex"], kind="stable")[:k])

    lo, hi = 0, len(values) - 1  # the least i with k candidates of peak <= values[i] (or the last)
    found = {hi: first(hi)}
    if len(found[hi]) >= k:
        while lo < hi:
            mid = (lo + hi) // 2
            found[mid] = first(mid)
            if len(found[mid]) >= k:
                hi = mid
            else:
                lo = mid + 1
    below = found.get(hi - 1) if hi > 0 else None
    below = first(hi - 1) if hi > 0 and below is None else below
    chosen = found[hi] if below is None else np.concatenate([below, found[hi]])
    chosen = np.unique(chosen, axis=0)  # arch_id order (lexicographic choices), for evaluate
    top = TopK(k, space, "peak_act")
    if len(chosen):
        top.add(_evaluate(space, chosen, **kw))
    return top.result()


def _front_with_peak(space: Space, names: tuple[str, ...], **kw) -> Batch:
    """The Pareto front by peak activation memory and one additive objective q (params, macs, erf or
    latency_ms).

    With m(v) the least q-key among the candidates of peak <= v (the best-1 programme on the choices
    within v: rfsweep.space.stage_graph.peak_budget), m is non-increasing in v, and a candidate x is on
    the front exactly when its key is m(peak(x)) and m drops at peak(x) (below the value before it:
    otherwise a candidate of smaller peak has a key no larger). So the front is, at each value v where m
    drops, every candidate of peak <= v with key m(v) (the best-k programme with the key budgeted to
    m(v)); the values where m drops are found by bisection (m equal at both ends: no drop between).
    """
    q = next(n for n in names if n != "peak_act")
    graph = stage_graph.build(space)
    key_name, sign = KEYS[q], (-1 if q == "erf" else 1)
    others = _others(_budgets(space), q)
    bk = _budget(space, key_name)
    bk = INF if bk is None else np.int64(bk)
    values = np.unique(np.concatenate([t.peak[t.ok] for per in graph.tables for t in per.values()] + [[0]]))
    last = len(values) - 1

    def kfun(table):
        return sign * table.metric(key_name)

    def sub(i: int) -> Graph:
        return graph if i == last else stage_graph.peak_budget(graph, int(values[i]))

    least: dict[int, int | None] = {}

    def m(i: int) -> int | None:
        if i not in least:
            g = sub(i)
            found = None
            if g.final_ok.any() and g.live[0].any():
                it = _topk_pass(g, 1, kfun, bk, others)[2]
                found = int(it["key"].min()) if len(it["key"]) else None
            least[i] = found
        return least[i]

    drops = _changes(last, lambda i: m(i) is not None, lambda a, b: m(a) == m(b))
    if not drops:
        return Batch.empty(space)
    result = Front(space, names)
    for i in sorted(drops):
        g = sub(i)
        parents, choices, it = _topk_pass(g, MAX_K + 1, kfun, np.int64(m(i)), others)
        if len(it["key"]) > MAX_K:
            raise field_error(
                "pareto", ",".join(names), f"more than {MAX_K:,} candidates tie at one point of the front"
            )
        chosen = _rebuild(parents, choices, np.arange(len(it["key"])))
        chosen = np.unique(chosen, axis=0)
        if len(chosen):
            result.add(_evaluate(space, chosen, **kw))
        steer.check()
    return result.result()


def _front_by_peak_levels(space: Space, names: tuple[str, ...], **kw) -> Batch:
    """The Pareto front by peak activation memory and two other objectives (a, b: two of params, macs,
    erf, latency_ms, rf_error), or rf_error alone (b = 0 for all).

    With F(v) the (a, b) front of the candidates of peak <= v (the front programme on the choices within
    v: rfsweep.space.stage_graph.peak_budget), a candidate x of peak v is on the three-objective front
    exactly when it is on F(v) (no candidate of peak <= v beats it in (a, b)) and no vector of F(u), u the
    value before v, is no larger than its (a, b) in both (a candidate of smaller peak with (a, b) no
    worse beats it; every such candidate's (a, b) is matched or beaten by F(u)'s). The set of F's vectors
    only changes where new candidates beat or extend it; where it is the same at u and v no candidate of
    peak in (u, v] can be on the front (its (a, b) is matched by F(u)), so the values where F changes are
    found by bisection, and at each the nodes of F(v) that F(value before v) does not match are taken
    whole (every path into them has peak v: one of smaller peak would be matched by F(value before v)).
    """
    rest = tuple(n for n in names if n != "peak_act")
    graph = stage_graph.build(space)
    values = np.unique(np.concatenate([t.peak[t.ok] for per in graph.tables for t in per.values()] + [[0]]))
    last = len(values) - 1

    def sub(i: int) -> Graph:
        return graph if i == last else stage_graph.peak_budget(graph, int(values[i]))

    def nonempty(g: Graph) -> bool:
        return bool(g.final_ok.any() and g.live[0].any())

    vectors: dict[int, np.ndarray] = {}

    def front_vectors(i: int) -> np.ndarray:
        """F(values[i])'s distinct (a, b) vectors, sorted."""
        if i not in vectors:
            g = sub(i)
            if not nonempty(g):
                vectors[i] = np.zeros((0, 2), np.int64)
            else:
                _, keys, on_front = _front_nodes(g, rest)
                vectors[i] = np.unique(_two(keys[on_front]), axis=0)
            steer.check()
        return vectors[i]

    changes = _changes(
        last, lambda i: nonempty(sub(i)), lambda a, b: np.array_equal(front_vectors(a), front_vectors(b))
    )
    if not changes:
        return Batch.empty(space)
    lo = changes[0]
    parts, total = [], 0
    for i in changes:
        edges, keys, on_front = _front_nodes(sub(i), rest)
        take = on_front & ~_matched(_two(keys), front_vectors(i - 1) if i > lo else np.zeros((0, 2), np.int64))
        chosen = _paths(edges, np.nonzero(take)[0], names)
        total += len(chosen)
        if total > MAX_FRONT_ROWS:
            raise field_error(
                "pareto", ",".join(names), f"more than {MAX_FRONT_ROWS:,} candidates lie on the front (ties "
                f"included): add a budget or another objective",
            )  # fmt: skip
        parts.append(chosen)
        steer.check()
    chosen = np.concatenate(parts) if parts else np.zeros((0, graph.positions), np.int64)
    if len(chosen) == 0:
        return Batch.empty(space)
    return _checked_front(space, names, chosen, **kw)


def _changes(last: int, has, same) -> list[int]:
    """For a quantity of the peak levels 0..last that only improves with the level: the least level i
    with ``has(i)`` (a candidate of peak <= values[i]), then, in order, every later level where it
    differs from the level before (``same(a, b)``: equal at a < b, so at every level between). Empty
    when ``has(last)`` is false. Found by bisection: a few evaluations per change."""
    if not has(last):
        return []
    lo, hi = 0, last
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if has(mid) else (mid + 1, hi)
    found = [lo]

    def scan(a: int, b: int) -> None:  # the changes in (a, b]
        if same(a, b):
            return
        if b == a + 1:
            found.append(b)
            return
        mid = (a + b) // 2
        scan(a, mid)
        scan(mid, b)

    if lo < last:
        scan(lo, last)
    return sorted(found)


def _two(keys: np.ndarray) -> np.ndarray:
    """Two key columns: one objective with a zero beside it."""
    return keys if keys.shape[1] == 2 else np.concatenate([keys, np.zeros((len(keys), 1), np.int64)], axis=1)


def _matched(keys: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Per row of ``keys`` (two columns), whether some row of ``front`` is no larger in both."""
    if len(front) == 0 or len(keys) == 0:
        return np.zeros(len(keys), bool)
    order = np.lexsort((front[:, 1], front[:, 0]))
    a, least_b = front[order, 0], np.minimum.accumulate(front[order, 1])
    at = np.searchsorted(a, keys[:, 0], side="right") - 1  # the front rows with a no larger: order[:at + 1]
    return (at >= 0) & (least_b[np.maximum(at, 0)] <= keys[:, 1])


def _stopped() -> bool:
    """The stop flag is up: the work in the kernel thread gives up (its caller raises and discards it)."""
    return bool(steer.control()[steer.CTL_STOP])


def _zero(table) -> np.ndarray:
    return np.zeros(len(table.ok), np.int64)


def _topk_pass(graph: Graph, k: int, kfun, bk, others: list[str]):
    """The k-best programme (module docstring) over ``graph``: key ``kfun`` (its budget ``bk``, INF when
    none) and budgets on the quantities ``others`` besides the key (0 to 3). Per level, each state's
    prefixes that can still be among the k best, in (key, prefix) order. Returns (parents, choices,
    final items).

    The k-th best key found so far also bounds the rest: completing each prefix with one known
    completion (the least in its other costs, or in a few mixes of key and other costs) gives distinct
    candidates; those within every budget are survivors, so once k of them are known the k-th of their
    keys is at least the k-th best key, and a prefix whose key plus the least key a completion adds
    exceeds it is dropped (ties kept: the arch_id may still decide for it).
    """
    space = graph.space
    P = graph.positions
    m = len(others)
    ofuns = [lambda t, q=q: t.metric(q) for q in others]
    bo = np.array([_budget(space, q) for q in others], np.int64)
    suf_k = stage_graph.completion(graph, [kfun])[0]
    suf_o = [stage_graph.completion(graph, [f])[0] for f in ofuns]
    witnesses = _witnesses(graph, kfun, ofuns)
    bound = bk
    K = _kernels()

    def dominated_by(starts, seg_ids, o, ctl):
        """Per item, the items before it in its segment with no larger other costs (see the kernels)."""
        d = np.empty(len(o), np.int64)
        if m == 0:
            d[:] = np.arange(len(o)) - starts[seg_ids]
        elif m == 1:
            K.dominators(starts, _dense_rank(seg_ids, o[:, 0]), d, ctl)
        else:
            K.dominators_n(starts, o, np.int64(k), d, ctl)
        return d

    def groups_of(table):
        c = np.nonzero(table.ok)[0]
        kinc, o = kfun(table)[c], _columns([f(table)[c] for f in ofuns], len(c))
        drf, cout = table.drf[c], table.cout[c]
        order = np.lexsort((c, kinc, cout, drf))
        c, kinc, o, drf, cout = c[order], kinc[order], o[order], drf[order], cout[order]
        start = np.ones(len(c), bool)
        start[1:] = (drf[1:] != drf[:-1]) | (cout[1:] != cout[:-1])
        gid = np.cumsum(start) - 1
        starts = np.append(np.nonzero(start)[0], len(c)).astype(np.int64)
        d = dominated_by(starts, gid, o, NEVER)
        keep = d < k  # a member with k members before it of no larger other costs never pairs
        gid, c, kinc, o, d = gid[keep], c[keep], kinc[keep], o[keep], d[keep]
        off = np.searchsorted(gid, np.arange(len(starts)))
        return drf[starts[:-1]], cout[starts[:-1]], (off, c, kinc, o, d)

    def settle(out, n_states):
        """A level's pairs by state, key, then prefix, less those with k pairs before them of no larger
        other costs, with their prefixes' lexicographic ranks (in the kernel thread: seconds at MAX_PAIRS).
        None once the stop flag is up (steer.call raises)."""
        if _stopped():
            return None
        out_v, out_key, out_o, out_plex, out_c, out_parent = out
        order = np.lexsort((out_c, out_plex, out_key, out_v))  # by state, key, then prefix (parent, choice)
        v, key, o, plex, c, parent = (x[order] for x in out)
        starts = _segments(v, n_states)
        d = dominated_by(starts, v, o, steer.control())
        if _stopped():  # d is partly written
            return None
        keep = d < k
        v, key, o, plex, c, parent, d = (x[keep] for x in (v, key, o, plex, c, parent, d))
        lex = np.empty(len(v), np.int64)
        lex[np.lexsort((c, plex))] = np.arange(len(v))
        return v, key, o, plex, c, parent, d, lex

    one = np.zeros(1, np.int64)
    it = dict(state=one, key=one, o=np.zeros((1, m), np.int64), d=one, lex=one)  # level 0: the empty prefix
    parents, choices = [], []
    for p in range(P):
        tid, gt_off, ns_off, nxt, payloads = stage_graph.level_groups(graph, p, groups_of)
        gm_off, m_c, m_k, m_o, m_d = _concat_members(payloads, m)
        seg = _segments(it["state"], len(graph.rf[p]))
        suf = _columns([x[p + 1] for x in suf_o], len(graph.rf[p + 1]))
        args = (
            seg, it["key"], it["o"], it["d"], it["lex"], tid, gt_off, ns_off, nxt, gm_off, m_c, m_k, m_o, m_d,
            suf_k[p + 1], suf, np.int64(bound), bo, np.int64(k),
        )  # fmt: skip
        empty, empty_o = np.zeros(0, np.int64), np.zeros((0, m), np.int64)
        n = steer.call(K.topk_expand, False, *args, empty, empty, empty_o, empty, empty, empty, steer.control())
        if n > MAX_PAIRS:
            raise field_error(
                "limit", k, f"the exact best {k:,} would form {n:,} partial candidates at position {p}; lower --limit"
            )
        out = [np.empty(n, np.int64), np.empty(n, np.int64), np.empty((n, m), np.int64)]
        out += [np.empty(n, np.int64) for _ in range(3)]
        steer.call(K.topk_expand, True, *args, *out, steer.control())
        v, key, o, plex, c, parent, d, lex = steer.call(settle, out, len(graph.rf[p + 1]))
        it = dict(state=v, key=key, o=o, d=d, lex=lex)
        parents.append(parent)
        choices.append(c)
        best_key = np.full(len(v), INF)  # each prefix's best known completion within the budgets
        for kw_, ows in witnesses:
            k_end = key + kw_[p + 1][v]
            fits = (kw_[p + 1][v] < INF) & (k_end <= bk)
            for q, ow in enumerate(ows):
                fits &= o[:, q] + ow[p + 1][v] <= bo[q]
            best_key = np.where(fits, np.minimum(best_key, k_end), best_key)
        if np.count_nonzero(best_key < INF) >= k:
            bound = min(bound, int(np.partition(best_key, k - 1)[k - 1]))
        steer.check()
    return parents, choices, it


def _columns(cols: list[np.ndarray], n: int) -> np.ndarray:
    """Per-item columns side by side (n rows; no columns: shape (n, 0))."""
    return np.ascontiguousarray(np.stack(cols, axis=1)) if cols else np.zeros((n, 0), np.int64)


def _witnesses(graph: Graph, kfun, ofuns: list) -> list:
    """Known completions per state, as (key sums, [sums of each other cost]): the least in the other
    costs (each first, in turn), and, with budgets besides the key, the least in key + lam x (other
    costs) for a few lam (a large ERF under a MACs budget lies near the budget, far from the cheapest
    completion)."""
    if not ofuns:
        return [(stage_graph.completion(graph, [kfun])[0], [])]
    funcs = [kfun, *ofuns]
    out = []
    for first in range(len(ofuns)):  # least in one other cost, then in the others, then in the key
        order = [1 + first, *[1 + i for i in range(len(ofuns)) if i != first], 0]
        sums = stage_graph.completion(graph, [funcs[i] for i in order])
        ordered = [sums[order.index(i)] for i in range(len(funcs))]
        out.append((ordered[0], ordered[1:]))

    def spread(f):
        return sum(float(np.ptp(f(t)[t.ok])) if t.ok.any() else 0.0 for per in graph.tables for t in per.values())

    sk, so = spread(kfun), [spread(f) for f in ofuns]
    if sk > 0 and all(x > 0 for x in so):
        for j in range(-3, 4):
            weights = [1.0] + [4.0**j * sk / x / len(so) for x in so]
            sums = stage_graph.completion(graph, funcs, weights)
            out.append((sums[0], sums[1:]))
    return out


def _concat_members(payloads, m: int):
    """Flatten per-table member lists (offsets relative to each table's groups) into global arrays: the
    groups' offsets, then members' choices, key increments, other costs (m columns), dominator counts."""
    offs, cs, ks, os_, ds = [np.zeros(1, np.int64)], [], [], [], []
    base = 0
    for off, c, kinc, o, d in payloads:
        offs.append(np.asarray(off[1:], np.int64) + base)
        cs.append(c)
        ks.append(kinc)
        os_.append(o)
        ds.append(d)
        base += len(c)

    def cat(parts):
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    o = np.ascontiguousarray(np.concatenate(os_).astype(np.int64)) if os_ else np.zeros((0, m), np.int64)
    return cat(offs), cat(cs), cat(ks), o, cat(ds)


def _kernels():
    from rfsweep.kernels import stages as stage_kernels

    return stage_kernels


# ---------------------------------------------------------------- Pareto front


def front(
    space: Space,
    names: tuple[str, ...],
    *,
    device: str = "cpu",
    threads: int | None = None,
    stats: Stats | None = None,
) -> Batch:
    """The Pareto front of the survivors by ``names`` (2-3 of params, macs, rf_error, erf, latency_ms, with
    peak_act beside one or two of them), ties kept,
    ordered by the objectives then arch_id: the walk's Front (see the module docstring)."""

    why = applicable(space, {"pareto": names})
    if why is not None:
        raise field_error("pareto", ",".join(names), f"the exact front cannot take this space: {why}")
    kw = dict(device=device, threads=threads, stats=stats)
    if "peak_act" in names:
        if _by_least_key(names):
            return _front_with_peak(space, names, **kw)
        return _front_by_peak_levels(space, names, **kw)
    edges, keys, on_front = _front_nodes(stage_graph.build(space), names)
    chosen = _paths(edges, np.nonzero(on_front)[0], names)
    if len(chosen) == 0:
        return Batch.empty(space)
    return _checked_front(space, names, chosen, **kw)


def _checked_front(space: Space, names: tuple[str, ...], chosen: np.ndarray, **kw) -> Batch:
    """The rows of the chosen candidates (choice tuples) in the walk's Front order; every one must be on it."""
    chosen = chosen[np.lexsort(chosen.T[::-1])]
    batch = _evaluate(space, chosen, **kw)
    result = Front(space, names)
    result.add(batch)
    out = result.result()
    if len(out) != len(batch):
        raise RuntimeError(
            "a candidate of the programme's front is dominated: rfsweep.engine.stage_select is wrong here"
        )
    return out


def _front_nodes(graph: Graph, names: tuple[str, ...]):
    """The programme of the module docstring on ``graph``: (edges per level, the final nodes' objective
    keys (one row per node, all minimised: erf negated), which of them are on the front)."""
    space = graph.space
    P = graph.positions
    # tracked columns: the additive objectives (erf negated: all minimised), then budgets not among them
    objs = [KEYS[n] for n in names if n != "rf_error"]  # per-choice quantities: params, macs, erf, latency
    dims = objs + [q for q in _budgets(space) if q not in objs] or ["zero"]  # rf_error alone: one node per state
    nobj = len(objs)
    sign = np.array([-1 if d == "erf" else 1 for d in dims], np.int64)
    bud = np.array([INF if _budget(space, d) is None else _budget(space, d) for d in dims], np.int64)
    K = _kernels()

    def groups_of(table):
        c = np.nonzero(table.ok)[0]
        vec = np.stack([sign[i] * table.metric(d)[c] for i, d in enumerate(dims)], axis=1)
        drf, cout = table.drf[c], table.cout[c]
        order = np.lexsort((c, *[vec[:, i] for i in range(len(dims) - 1, -1, -1)], cout, drf))
        c, vec, drf, cout = c[order], vec[order], drf[order], cout[order]
        start = np.ones(len(c), bool)
        start[1:] = (drf[1:] != drf[:-1]) | (cout[1:] != cout[:-1])
        starts = np.append(np.nonzero(start)[0], len(c)).astype(np.int64)
        keep = np.empty(len(c), np.bool_)
        K.front_keep(starts, vec, nobj, keep, NEVER)  # a choice its group beats is beaten in every candidate
        gid = (np.cumsum(start) - 1)[keep]
        c, vec = c[keep], vec[keep]
        # equal vectors of a group: one group vector, its members every such choice
        new = np.ones(len(c), bool)
        new[1:] = (gid[1:] != gid[:-1]) | (vec[1:] != vec[:-1]).any(axis=1)
        gv_off = np.searchsorted(gid[new], np.arange(len(starts)))
        vm_off = np.append(np.nonzero(new)[0], len(c))
        return drf[starts[:-1]], cout[starts[:-1]], (gv_off, vec[new], vm_off, c)

    def settle(out_v, out_vec, out_u, out_f, n_states, vm_off, vm_c):
        """A level's sums as nodes (state, vector), those another node of the state beats dropped, and the
        edges into the kept ones (in the kernel thread: seconds of sorting at MAX_PAIRS). None once the stop
        flag is up (steer.call raises)."""
        if _stopped():
            return None
        n = len(out_v)
        order = np.lexsort((*[out_vec[:, i] for i in range(len(dims) - 1, -1, -1)], out_v))
        out_v, out_vec, out_u, out_f = out_v[order], out_vec[order], out_u[order], out_f[order]
        new = np.ones(n, bool)
        new[1:] = (out_v[1:] != out_v[:-1]) | (out_vec[1:] != out_vec[:-1]).any(axis=1)
        node = np.cumsum(new) - 1
        n_state, n_vec = out_v[new], out_vec[new]
        keep = np.empty(len(n_state), np.bool_)
        K.front_keep(_segments(n_state, n_states), np.ascontiguousarray(n_vec), nobj, keep, steer.control())
        if _stopped():  # keep is partly written
            return None
        renum = np.cumsum(keep) - 1
        live = keep[node]
        # edges: each kept sum, once per member choice of its group vector
        e_node, e_u, e_f = renum[node[live]], out_u[live], out_f[live]
        reps = vm_off[e_f + 1] - vm_off[e_f]
        e_node, e_u = np.repeat(e_node, reps), np.repeat(e_u, reps)
        first = np.repeat(vm_off[e_f], reps)
        within = np.arange(len(first)) - np.repeat(np.cumsum(reps) - reps, reps)
        e_c = vm_c[first + within]
        return (e_node, e_u, e_c), n_state[keep], n_vec[keep]

    seg_state = np.zeros(1, np.int64)
    vec = np.zeros((1, len(dims)), np.int64)
    edges = []  # per level: (node, parent node, choice), grouped by node
    for p in range(P):
        tid, gt_off, ns_off, nxt, payloads = stage_graph.level_groups(graph, p, groups_of)
        gv_off, gvec, vm_off, vm_c = _concat_vectors(payloads, len(dims))
        suf = np.stack(
            [graph.least[d][p + 1] if bud[i] < INF else np.zeros(len(graph.rf[p + 1]), np.int64)
             for i, d in enumerate(dims)], axis=1,
        )  # fmt: skip
        seg = _segments(seg_state, len(graph.rf[p]))
        args = (seg, vec, tid, gt_off, ns_off, nxt, gv_off, gvec, np.ascontiguousarray(suf), bud)
        e1, e2 = np.zeros(0, np.int64), np.zeros((0, len(dims)), np.int64)
        n = steer.call(K.front_expand, False, *args, e1, e2, e1, e1, steer.control())
        if n > MAX_PAIRS:
            raise field_error(
                "pareto", ",".join(names), f"the exact front would form {n:,} partial vectors at position {p}"
            )
        out_v, out_vec, out_u, out_f = (np.empty(n, np.int64), np.empty((n, len(dims)), np.int64),
                                        np.empty(n, np.int64), np.empty(n, np.int64))  # fmt: skip
        steer.call(K.front_expand, True, *args, out_v, out_vec, out_u, out_f, steer.control())
        level, seg_state, vec = steer.call(settle, out_v, out_vec, out_u, out_f, len(graph.rf[p + 1]), vm_off, vm_c)
        edges.append(level)
        steer.check()
    # the front of the final nodes (rf_error from the state), then every path into it
    t2 = objectives.rf_target2(space) if "rf_error" in names else 0
    keys = []
    for name in names:
        if name == "rf_error":
            keys.append(np.abs(2 * graph.final_rf()[seg_state] - t2))
        else:
            keys.append(vec[:, dims.index(KEYS[name])])
    if len(seg_state) == 0:
        on_front = np.zeros(0, bool)
    elif len(keys) == 1:  # one objective (rf_error per peak level): its least value
        on_front = keys[0] == keys[0].min()
    else:
        on_front = objectives.front_mask(keys)
    return edges, np.stack(keys, axis=1).astype(np.int64), on_front


def _concat_vectors(payloads, dims: int):
    gv, vecs, vm, cs = [np.zeros(1, np.int64)], [], [np.zeros(1, np.int64)], []
    nv = nc = 0
    for gv_off, gvec, vm_off, c in payloads:
        gv.append(np.asarray(gv_off[1:], np.int64) + nv)
        vecs.append(gvec)
        vm.append(np.asarray(vm_off[1:], np.int64) + nc)
        cs.append(c)
        nv += len(gvec)
        nc += len(c)
    gvec = np.concatenate(vecs).astype(np.int64) if vecs else np.zeros((0, dims), np.int64)
    cat = np.concatenate
    return (
        cat(gv).astype(np.int64),
        np.ascontiguousarray(gvec),
        cat(vm).astype(np.int64),
        (cat(cs).astype(np.int64) if cs else np.zeros(0, np.int64)),
    )


def _paths(edges, last: np.ndarray, names) -> np.ndarray:
    """Every choice tuple from the root to the final nodes ``last`` (the edges of each level, in order)."""
    P = len(edges)
    counts = np.ones(1)
    for e_node, e_u, _ in edges:  # paths into each node (floats: only compared with the cap)
        counts = np.bincount(e_node, weights=counts[e_u], minlength=int(e_node.max(initial=-1)) + 1)
    total = float(counts[last].sum()) if len(last) else 0.0
    if total > MAX_FRONT_ROWS:
        raise field_error(
            "pareto", ",".join(names), f"{total:.3g} candidates lie on the front (ties included); at most "
            f"{MAX_FRONT_ROWS:,}: add a budget or another objective",
        )  # fmt: skip
    rows = np.zeros((len(last), P), np.int64)
    at = np.asarray(last, np.int64)
    for p in range(P - 1, -1, -1):
        e_node, e_u, e_c = edges[p]
        order = np.argsort(e_node, kind="stable")
        e_node, e_u, e_c = e_node[order], e_u[order], e_c[order]
        lo = np.searchsorted(e_node, at, side="left")
        hi = np.searchsorted(e_node, at, side="right")
        reps = hi - lo
        rows = np.repeat(rows, reps, axis=0)
        pick = np.repeat(lo, reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
        rows[:, p] = e_c[pick]
        at = e_u[pick]
    return rows


__all__ = ["applicable", "evaluate", "front", "run", "top_k"]
