"""Uniform samples of the survivors of a space of stages: exactly uniform, without replacement, without
walking the tree (Once-for-All MobileNetV3's 2.2e19 subnets under a MACs budget).

Every subset of n survivors is equally likely. Three exact ways, by what the constraints allow:

* **no budget**: the number of completions of every state (rfsweep.space.stage_graph) that end in the rf
  window is an exact integer (kept in 128 bits: counts pass 2^63). Ranks are drawn as the walk draws
  them (:func:`rfsweep.engine.sample.draw_ranks`, the same generator: the same rows as the walk for a given
  seed; beyond 2^63 survivors, distinct ranks drawn with Python integers), and each rank is *unranked*:
  at each position the choices' runs are taken in choice order, each holding (its size) x (completions
  after it) ranks, so rank r is the r-th survivor in arch_id order.
* **a budget, few survivors or a large share of them**: the survivors are walked in arch_id order on the
  state graph (each node walked has a survivor below it: its least completion fits) and the drawn ranks
  are copied out: again the walk's rows.
* **a budget, a small share of many survivors**: rejection from an exactly uniform proposal over a
  superset. With w a bucket width and m_p the least cost at position p, a choice's bucket is
  floor((cost - m_p) / w), and a candidate within the budget B has buckets summing to at most
  R = floor((B - sum m_p) / w) (a sum of floors is at most the floor of the sum). The exact number of
  candidates in the rf window with buckets summing to at most r is counted per state and r, so a
  uniform rank over that superset unranks to a uniform candidate of it; the kernels (engine.evaluate)
  accept exactly the survivors, so accepted proposals are independent and uniform over the survivors,
  and the first n distinct ones in the order drawn are a uniform subset of n (exchangeability). The
  superset holds candidates up to about B + (positions) x w, so the acceptance is high: w is chosen to
  keep the counting table small (R of 64 to 256 buckets).

The number sampled from (``stats.extra["sampled_from"]``) is the exact count: the programme's without a
budget, rfsweep.engine.stage_count's with one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from rfsweep.core.errors import RFSweepError, field_error
from rfsweep.engine import steer
from rfsweep.engine.run import Batch, Stats
from rfsweep.engine.run import evaluate_chosen as evaluate
from rfsweep.engine.sample import CHUNK, DEDUP_MAX, check_dedup, check_sample, draw_ranks
from rfsweep.space import Space, stage_graph
from rfsweep.space.stage_graph import INF, Graph

ENUM_SMALL = 1 << 16  # with a budget, at most this many survivors are walked rather than sampled by rejection
ENUM_SHARE = 4  # ... and so are they when the sample is at least 1/ENUM_SHARE of them
ENUM_MAX = 50_000_000  # the most survivors walked
BUCKET_WORK = 150_000_000  # cell updates the bucketed counting programme may take
INT63 = 1 << 63


def sample(
    space: Space,
    n: int,
    seed: int | None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    stats: Stats | None = None,
    total: int | None = None,
) -> Iterator[Batch]:
    """Batches of ``min(n, survivors)`` survivors drawn uniformly without replacement, in arch_id order
    (see the module docstring for the methods and why each is exact). ``total``: the exact number of
    survivors when already known (under a budget, counting them is most of the time on Once-for-All)."""
    check_sample(n, seed)
    stats = stats if stats is not None else Stats()
    rng = np.random.default_rng(seed)
    graph = stage_graph.build(space)
    budgets = [q for q in ("params", "macs", "latency") if _budget(space, q) is not None]
    if len(budgets) > 1:
        raise field_error(
            "sample", n, "takes one budget on a space of stages (--max-params, --max-macs or --max-latency-ms)"
        )
    kw = dict(device=device, threads=threads)
    if not budgets:
        counts = counts_for(graph, None, lex=True, threads=threads)
        total = counts.total
        stats.extra["sampled_from"] = total
        for hi, lo in _distinct_ranks(total, n, rng):
            for start in range(0, len(hi), CHUNK):
                part = (hi[start : start + CHUNK], lo[start : start + CHUNK])
                yield _evaluate(space, counts.unrank(part), stats=stats, **kw)
        return
    total = _count(space, graph) if total is None else int(total)
    stats.extra["sampled_from"] = total
    if total == 0:
        return
    if budgets[0] == "latency":  # the walk's kernels do not see latency: rejection, which checks it
        yield from _by_rejection(space, graph, "latency", min(n, total), rng, stats, **kw)
        return
    if n >= total or total <= ENUM_SMALL or ENUM_SHARE * n >= total:
        if total > ENUM_MAX:
            raise field_error(
                "sample", n, f"{n:,} of {total:,} survivors is too large a share to draw (at most 1/{ENUM_SHARE})"
            )
        walker = LexWalk(graph)
        for ranks in draw_ranks(total, n, rng):  # sorted chunks, in order: the walk goes on from chunk to chunk
            yield _evaluate(space, walker.take(ranks), stats=stats, **kw)
        return
    yield from _by_rejection(space, graph, budgets[0], n, rng, stats, **kw)


def _budget(space: Space, q: str) -> int | None:
    return {"params": space.max_params, "macs": space.max_macs, "latency": space.max_latency}[q]


def _evaluate(space: Space, choice: np.ndarray, **kw) -> Batch:
    return evaluate(space, choice, **kw)[0]


def _count(space: Space, graph: Graph) -> int:
    """The exact number of survivors under one budget: rfsweep.engine.stage_count, or the walk of them where its
    split finds no way and they are few."""
    from rfsweep.engine import stage_count

    try:
        return stage_count.count(space)
    except RFSweepError:
        bound = counts_for(graph, _budget_name(space), lex=False).total  # a superset's exact size
        if bound > ENUM_MAX:
            raise
        return LexWalk(graph).count()


def _budget_name(space: Space) -> str:
    return "macs" if space.max_macs is not None else "params"


# ---------------------------------------------------------------- ranks


def _distinct_ranks(total: int, n: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Sorted chunks of min(n, total) distinct ranks uniform in [0, total), as (hi, lo) uint64: the walk's
    draw_ranks where the walk can draw (fewer than 2^63 survivors), else i.i.d. draws with repeats dropped
    (the first n distinct in the order drawn: a uniform subset)."""
    if total < INT63:
        for ranks in draw_ranks(total, n, rng):
            yield np.zeros(len(ranks), np.uint64), ranks.astype(np.uint64)
        return
    check_dedup(n, total)
    hi = np.zeros(0, np.uint64)
    lo = np.zeros(0, np.uint64)
    while True:
        h, low = uniform_ranks(rng, total, max(2 * (n - len(hi)), 64))
        hi, lo = np.concatenate([hi, h]), np.concatenate([lo, low])
        _, first = np.unique(np.stack([hi, lo], axis=1), axis=0, return_index=True)
        if len(first) >= n:
            keep = np.sort(first)[:n]  # the first n distinct, in the order drawn
            hi, lo = hi[keep], lo[keep]
            order = np.lexsort((lo, hi))
            yield hi[order], lo[order]
            return
        keep = np.sort(first)
        hi, lo = hi[keep], lo[keep]


def uniform_ranks(rng: np.random.Generator, total: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` independent ranks uniform in [0, total) (total < 2^128), as (hi, lo) uint64: uniform
    bits, those at or above ``total`` drawn again."""
    if total <= 1 << 64:
        return np.zeros(size, np.uint64), rng.integers(0, total, size=size, dtype=np.uint64, endpoint=False)
    top = total >> 64
    bits = top.bit_length()
    hi = np.zeros(size, np.uint64)
    lo = np.zeros(size, np.uint64)
    todo = np.arange(size)
    while len(todo):
        h = rng.integers(0, 1 << bits, size=len(todo), dtype=np.uint64)
        low = rng.integers(0, 1 << 64, size=len(todo), dtype=np.uint64)
        over = (h > np.uint64(top)) | ((h == np.uint64(top)) & (low >= np.uint64(total & ((1 << 64) - 1))))
        hi[todo[~over]], lo[todo[~over]] = h[~over], low[~over]
        todo = todo[over]
    return hi, lo


# ---------------------------------------------------------------- counts of completions


def counts_for(graph: Graph, quantity: str | None, *, lex: bool, threads: int | None = None) -> Counts:
    """The graph's :class:`Counts` for a quantity and group order, built once."""
    key = ("counts", quantity, lex)
    if key not in graph.memo:
        graph.memo[key] = Counts(graph, quantity, lex=lex, threads=threads)
    return graph.memo[key]


class Counts:
    """Exact numbers of completions per (level, state, buckets left) in 128 bits, and their unranking.

    With ``quantity`` None every choice has bucket 0 and R = 0: the exact counts of completions ending in
    the rf window. With a budgeted quantity, buckets of width ``w`` (module docstring) over a superset.
    Groups of choices (one rf increment, output and bucket) are runs of consecutive choices when ``lex``
    (unranking follows arch_id order), else merged (fewer groups, any order).
    """

    def __init__(self, graph: Graph, quantity: str | None, *, lex: bool, threads: int | None = None):
        from rfsweep.kernels import stages as K

        space = graph.space
        P = graph.positions
        self.graph, self.P = graph, P
        self.w, self.R, self.empty = 1, 0, False
        offsets = [0] * P
        if quantity is not None:
            budget = _budget(space, quantity)
            offsets = [
                int(min((t.metric(quantity)[t.ok].min() for t in per.values() if t.ok.any()), default=0))
                for per in graph.tables
            ]
            slack = budget - sum(offsets)
            if slack < 0:
                self.empty = True
            self.w, self.R = _bucket_width(graph, slack)
        R = self.R

        def groups_of(table, p):
            c = np.nonzero(table.ok)[0]
            b = np.zeros(len(c), np.int64)
            if quantity is not None:
                b = (table.metric(quantity)[c] - offsets[p]) // self.w
                c, b = c[b <= R], b[b <= R]
            drf, cout = table.drf[c], table.cout[c]
            if lex:  # runs of consecutive choices (in choice order) with one (drf, cout, bucket)
                start = np.ones(len(c), bool)
                start[1:] = (drf[1:] != drf[:-1]) | (cout[1:] != cout[:-1]) | (b[1:] != b[:-1])
                members = c
            else:
                order = np.lexsort((c, b, cout, drf))
                c, b, drf, cout = c[order], b[order], drf[order], cout[order]
                start = np.ones(len(c), bool)
                start[1:] = (drf[1:] != drf[:-1]) | (cout[1:] != cout[:-1]) | (b[1:] != b[:-1])
                members = c
            first = np.nonzero(start)[0]
            bounds = np.append(first, len(c))
            return drf[first], cout[first], (b[first], np.diff(bounds), members, bounds)

        levels = []
        for p in range(P):
            tid, gt_off, ns_off, nxt, payloads = stage_graph.level_groups(graph, p, lambda t, p=p: groups_of(t, p))
            levels.append((tid, gt_off, ns_off, nxt, payloads))
        # flatten every level into global tables, groups and members
        tids, ns_offs, nxts, gt, gb, gmult, gm, mem = [], [], [], [0], [], [], [], []
        lvl_off = [0]
        t_base = m_base = nxt_base = 0
        for tid, _, ns_off, nxt, payloads in levels:
            tids.append(np.where(tid >= 0, tid + t_base, -1))
            ns_offs.append(ns_off[:-1] + nxt_base)
            nxts.append(nxt)
            for b, mult, members, bounds in payloads:
                gb.append(b)
                gmult.append(mult)
                mem.append(members)
                gm.append(np.asarray(bounds[1:], np.int64) + m_base)
                gt.append(gt[-1] + len(b))
                m_base += len(members)
            t_base += len(payloads)
            nxt_base += len(nxt)
            lvl_off.append(lvl_off[-1] + len(tid))

        def cat(parts, dtype=np.int64):
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        self.tids, self.ns_offs, self.nxts = cat(tids), cat(ns_offs), cat(nxts)
        self.gt_off, self.g_b, self.g_mult = np.array(gt, np.int64), cat(gb), cat(gmult)
        self.gm_off, self.members = cat([np.zeros(1, np.int64)] + gm), cat(mem)
        self.lvl_off = np.array(lvl_off, np.int64)
        # the counting programme, backwards from the final states (1 completion: the empty one)
        hi = [None] * (P + 1)
        lo = [None] * (P + 1)
        n_final = len(graph.rf[P])
        hi[P] = np.zeros((n_final, R + 1), np.uint64)
        lo[P] = np.where(graph.final_ok[:, None], np.uint64(1), np.uint64(0)) * np.ones((1, R + 1), np.uint64)
        for p in range(P - 1, -1, -1):
            _, _, ns_off, nxt, _ = levels[p]
            n = len(graph.rf[p])
            hi[p] = np.zeros((n, R + 1), np.uint64)
            lo[p] = np.zeros((n, R + 1), np.uint64)
            steer.call(
                K.count_level, self.tids[self.lvl_off[p] : self.lvl_off[p + 1]], self.gt_off, ns_off, nxt,
                self.g_b, self.g_mult, hi[p + 1], lo[p + 1], hi[p], lo[p], steer.control(), threads=threads,
            )  # fmt: skip
        self.c_off = np.array([0] + list(np.cumsum([h.size for h in hi])), np.int64)
        self.ch = np.concatenate([h.ravel() for h in hi])
        self.cl = np.concatenate([x.ravel() for x in lo])
        self.total = 0 if self.empty else (int(hi[0][0, R]) << 64) | int(lo[0][0, R])

    def unrank(self, ranks: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """The candidates (choice tuples) of ranks (hi, lo) in [0, total)."""
        from rfsweep.kernels import stages as K

        rh, rl = (np.ascontiguousarray(r, np.uint64) for r in ranks)
        out = np.zeros((len(rh), self.P), np.int64)
        done = steer.call(
            K.unrank, rh, rl, 0, self.R, self.P, self.tids, self.lvl_off, self.gt_off, self.ns_offs, self.nxts,
            self.g_b, self.g_mult, self.gm_off, self.members, self.ch, self.cl, self.c_off, self.R + 1, out,
            steer.control(),
        )  # fmt: skip
        if done != len(rh):
            raise RuntimeError("a rank beyond the count: rfsweep.engine.stage_sample is wrong here")
        return out


def _bucket_width(graph: Graph, slack: int) -> tuple[int, int]:
    """(w, R): the bucket width and the buckets a budget leaves. Exact (w = 1) when the slack is small;
    else as many buckets (64 to 256) as keep the counting programme within BUCKET_WORK cell updates."""
    if slack <= 0:
        return 1, 0
    pairs = 0  # (state, rf increment and output) pairs: the groups one bucket value has
    for p, per in enumerate(graph.tables):
        for c, t in per.items():
            k = len(np.unique(np.stack([t.drf[t.ok], t.cout[t.ok]], axis=1), axis=0)) if t.ok.any() else 0
            pairs += k * int(np.count_nonzero(graph.cin[p] == c))
    R = 64
    while R < 256 and pairs * (2 * R + 1) * (2 * R + 1) // 2 <= BUCKET_WORK:
        R *= 2
    if slack <= R:
        return 1, slack
    w = -(-slack // R)
    return w, slack // w


# ---------------------------------------------------------------- walking the survivors under a budget


class LexWalk:
    """The survivors under budgets walked in arch_id order on the state graph (stage_kernels.enumerate_lex):
    :meth:`take` copies out those of given ranks, chunk after chunk (the walk resumes where it stopped);
    :meth:`count` walks them all."""

    def __init__(self, graph: Graph):
        space = graph.space
        P = graph.positions
        self.P = P
        by_macs = space.max_macs is not None
        q = "macs" if by_macs else "params"
        bp = INF if space.max_params is None else np.int64(space.max_params)
        bm = INF if space.max_macs is None else np.int64(space.max_macs)
        tids, r_next_off, r_next, rt, rm, seq, seq_cost, perm, cost = [], [], [], [0], [0], [], [], [], []
        ch_p, ch_m, ch_off = [], [], [0]
        lvl_off, t_base, nxt_base = [0], 0, 0
        radix = 1
        for p in range(P):

            def runs_of(table):
                c = np.nonzero(table.ok)[0]
                drf, cout = table.drf[c], table.cout[c]
                start = np.ones(len(c), bool)
                start[1:] = (drf[1:] != drf[:-1]) | (cout[1:] != cout[:-1])
                first = np.nonzero(start)[0]
                return drf[first], cout[first], (c, np.append(first, len(c)), table)

            tid, gt_off, ns_off, nxt, payloads = stage_graph.level_groups(graph, p, runs_of)
            tids.append(np.where(tid >= 0, tid + t_base, -1))
            r_next_off.append(ns_off[:-1] + nxt_base)
            r_next.append(nxt)
            for c, bounds, table in payloads:
                qc = table.metric(q)
                for a, b in zip(bounds[:-1], bounds[1:]):
                    run = c[a:b]
                    seq.append(run)
                    seq_cost.append(qc[run])
                    order = np.argsort(qc[run], kind="stable")
                    perm.append(run[order])
                    cost.append(qc[run][order])
                    rm.append(rm[-1] + len(run))
                rt.append(rt[-1] + len(bounds) - 1)
                ch_p.append(table.params)
                ch_m.append(table.macs)
                ch_off.append(ch_off[-1] + len(table.params))
                radix = max(radix, len(table.params))
            t_base += len(payloads)
            nxt_base += len(nxt)
            lvl_off.append(lvl_off[-1] + len(tid))

        def cat(parts):
            return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

        least_p = cat(graph.least["params"])
        least_m = cat(graph.least["macs"])
        ls_off = np.array([0] + list(np.cumsum([len(x) for x in graph.least["params"]])), np.int64)
        self.args = (
            P, cat(tids), np.array(lvl_off, np.int64), np.array(rt, np.int64), cat(r_next_off), cat(r_next),
            np.array(rm, np.int64), cat(seq), cat(seq_cost), cat(perm), cat(cost), by_macs, cat(ch_p), cat(ch_m),
            np.array(ch_off, np.int64), least_p, least_m, ls_off, bp, bm,
        )  # fmt: skip
        self.walk = np.zeros(3, np.int64)  # [depth, rank, started]: where the walk stands
        self.work = (
            np.zeros(P + 1, np.int64), np.zeros(P + 1, np.int64), np.zeros(P + 1, np.int64), np.zeros(P, np.int64),
            np.zeros((P, radix), np.int64), np.zeros((P, radix), np.int64), np.zeros(P + 1, np.int64),
            np.zeros(P + 1, np.int64),
        )  # fmt: skip

    def _run(self, wanted: np.ndarray, stop_early: bool, out: np.ndarray) -> int:
        from rfsweep.kernels import stages as K

        return steer.call(K.enumerate_lex, *self.args, wanted, stop_early, out, self.walk, *self.work, steer.control())

    def take(self, wanted: np.ndarray) -> np.ndarray:
        """The survivors of sorted ranks ``wanted`` (each chunk after the previous one's), as choice tuples."""
        wanted = np.asarray(wanted, np.int64)
        out = np.zeros((len(wanted), self.P), np.int64)
        if len(wanted) == 0:
            return out
        if int(wanted[0]) < int(self.walk[1]):
            raise ValueError("ranks must come after those already taken")
        walked = self._run(wanted, True, out)
        if walked <= int(wanted[-1]):
            raise RuntimeError("fewer survivors than counted: rfsweep.engine.stage_sample is wrong here")
        return out

    def count(self) -> int:
        """Every survivor, walked (from the start)."""
        self.walk[:] = 0
        total = self._run(np.zeros(0, np.int64), False, np.zeros((0, self.P), np.int64))
        self.walk[:] = 0
        return total


# ---------------------------------------------------------------- rejection from the bucketed superset


def _by_rejection(space: Space, graph: Graph, quantity: str, n: int, rng, stats: Stats, **kw) -> Iterator[Batch]:
    """n distinct survivors: uniform proposals over the bucketed superset, kept when the kernels accept
    them, the first n distinct in the order drawn (module docstring)."""

    counts = counts_for(graph, quantity, lex=False, threads=kw.get("threads"))
    if n > DEDUP_MAX:
        raise field_error("sample", n, f"at most {DEDUP_MAX:,} by rejection; write the survivors and sample them")
    accepted = np.zeros((0, graph.positions), np.int16)  # choice indices are below 2^15
    rate = 0.5
    while True:
        want = n - len(accepted)
        size = int(min(1 << 18, max(1024, math.ceil(1.3 * want / max(rate, 1e-3)))))
        proposals = counts.unrank(uniform_ranks(rng, counts.total, size))
        _, mask = evaluate(space, proposals, stats=stats, strict=False, **kw)
        if space.max_latency is not None:  # the kernels accept by the rest; the budget on latency is checked here
            fits = space.latency.row_units(proposals.T, space.in_channels) <= space.max_latency
            stats.kept -= int((mask & ~fits).sum())
            mask &= fits
        rate = max(float(mask.mean()), 1e-6)
        accepted = np.concatenate([accepted, proposals[mask].astype(np.int16)])
        _, first = np.unique(accepted, axis=0, return_index=True)
        accepted = accepted[np.sort(first)]  # repeats dropped, the order drawn kept
        if len(accepted) >= n:
            break
        steer.check()
    chosen = accepted[:n].astype(np.int64)
    chosen = chosen[np.lexsort(chosen.T[::-1])]
    for start in range(0, len(chosen), CHUNK):  # rows of candidates counted above
        yield _evaluate(space, chosen[start : start + CHUNK], **kw)


__all__ = ["Counts", "LexWalk", "counts_for", "sample", "uniform_ranks"]
