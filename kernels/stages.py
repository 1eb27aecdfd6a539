"""Numba kernels of the exact selections and samples on spaces of stages (rfsweep.engine.stage_select,
rfsweep.engine.stage_sample): the k-best merge, dominance counts, Pareto pruning, exact 128-bit counts and
their unranking, and the lexicographic enumeration under a budget.

Plain loops over flat int64 arrays; every threshold is an argument. Counts of candidates pass 2^63
(Once-for-All's 2.2e19 subnets), so they are kept as unsigned 128-bit pairs (hi, lo) of uint64: every
count is at most the size of the space, below 10^38 < 2^127 (a search's ids fit 38 digits), so no sum
or product by a multiplicity (< 2^32) wraps.

Ctrl-C: the kernels run in rfsweep.engine.steer's kernel thread without the GIL (``nogil``: the main thread
keeps handling signals) and poll ``ctl[CTL_STOP]`` at their first step and every few thousand after.
Once the host raises it they return early (before writing anything when it was up from the start),
and the host discards what they wrote: rfsweep.engine.steer.call raises instead of returning.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rfsweep.kernels.layer_math import CTL_STOP

M32 = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)
ONE = np.uint64(1)
ZERO = np.uint64(0)


# ---------------------------------------------------------------- 128-bit unsigned arithmetic


@njit(cache=True, inline="always")
def add128(h1, l1, h2, l2):
    lo = l1 + l2
    carry = ONE if lo < l1 else ZERO
    return h1 + h2 + carry, lo


@njit(cache=True, inline="always")
def sub128(h1, l1, h2, l2):
    """(h1, l1) - (h2, l2), for (h1, l1) >= (h2, l2)."""
    borrow = ONE if l1 < l2 else ZERO
    return h1 - h2 - borrow, l1 - l2


@njit(cache=True, inline="always")
def mul128(h, lo_, m):
    """(h, lo_) x m for m < 2^32 (uint64)."""
    a = lo_ & M32
    b = lo_ >> S32
    pa = a * m
    pb = b * m
    lo = pa + ((pb & M32) << S32)
    carry = (pb >> S32) + (ONE if lo < pa else ZERO)
    return h * m + carry, lo


@njit(cache=True, inline="always")
def lt128(h1, l1, h2, l2):
    return h1 < h2 or (h1 == h2 and l1 < l2)


# ---------------------------------------------------------------- top k


@njit(cache=True, inline="always")
def within(a, i, b, j, suf, v, bud):
    """a[i] + b[j] plus the least completion suf[v] is within the budget ``bud`` in every column."""
    for d in range(bud.shape[0]):
        if a[i, d] + b[j, d] + suf[v, d] > bud[d]:
            return False
    return True


@njit(cache=True, nogil=True)
def topk_expand(
    fill, seg, it_key, it_o, it_d, it_lex, tid, gt_off, ns_off, nxt, gm_off, m_c, m_k, m_o, m_d, suf_k, suf_o, bk,
    bo, k, out_v, out_key, out_o, out_plex, out_c, out_parent, ctl,
):  # fmt: skip
    """Extend the kept prefixes of every state by every choice group (choices of one rf increment and one
    output: they lead to one state), keeping only pairs that can be among the k best there.

    Items of state s are it[seg[s]:seg[s + 1]], in their state's order (key, then lexicographic); a
    group's members are in (key, choice) order with ``m_d`` the members before them whose other costs
    (the columns of ``it_o`` / ``m_o``: the budgeted quantities that are not the key, none or more) are
    no larger. A pair (item i, member j) has at least (d_i + 1)(d_j + 1) - 1 pairs of the same state
    before it in (key, prefix) order with no larger other costs (each earlier-or-equal item with each
    earlier-or-equal member), so it is kept only when (d_i + 1)(d_j + 1) <= k. Pairs over a budget (bk,
    bo[q]) with the least completion cost added (suf_k, suf_o[:, q] at the next state) are dropped.
    Returns the number of pairs (written when ``fill``); -1 when stopped.
    """
    m = it_o.shape[1]
    room = np.empty(m, np.int64)  # per item: what its other costs leave of each budget after the least completion
    n = 0
    steps = 0
    for s in range(seg.shape[0] - 1):
        a0, a1 = seg[s], seg[s + 1]
        if a0 == a1:
            continue
        t = tid[s]
        for g in range(gt_off[t], gt_off[t + 1]):
            v = nxt[ns_off[s] + g - gt_off[t]]
            if v < 0:
                continue
            sk = suf_k[v]
            for i in range(a0, a1):
                if (steps & 4095) == 0 and ctl[CTL_STOP] != 0:
                    return -1
                steps += 1
                lim = k // (it_d[i] + 1)
                if lim == 0:
                    continue
                ki = it_key[i]
                for q in range(m):
                    room[q] = bo[q] - suf_o[v, q] - it_o[i, q]
                for j in range(gm_off[g], gm_off[g + 1]):
                    if m_d[j] >= lim:
                        continue
                    key = ki + m_k[j]
                    if key + sk > bk:
                        break  # members are in key order
                    fits = True
                    for q in range(m):
                        if m_o[j, q] > room[q]:
                            fits = False
                            break
                    if not fits:
                        continue
                    if fill:
                        out_v[n] = v
                        out_key[n] = key
                        for q in range(m):
                            out_o[n, q] = it_o[i, q] + m_o[j, q]
                        out_plex[n] = it_lex[i]
                        out_c[n] = m_c[j]
                        out_parent[n] = i
                    n += 1
    return n


@njit(cache=True, nogil=True)
def dominators(starts, rank, out, ctl):
    """out[i]: the items before i in its segment (items in order, segments at ``starts``) whose rank is
    <= rank[i] (a Fenwick tree over the ranks, one segment at a time; ranks are dense within a segment)."""
    size = 1
    for s in range(starts.shape[0] - 1):
        size = max(size, starts[s + 1] - starts[s] + 1)
    tree = np.zeros(size + 1, np.int64)
    for s in range(starts.shape[0] - 1):
        a, b = starts[s], starts[s + 1]
        for x in range(b - a + 2):
            tree[x] = 0
        for i in range(a, b):
            if (i & 4095) == 0 and ctl[CTL_STOP] != 0:
                return
            r = rank[i] + 1
            c = 0
            x = r
            while x > 0:
                c += tree[x]
                x -= x & (-x)
            out[i] = c
            x = r
            while x <= b - a:
                tree[x] += 1
                x += x & (-x)


@njit(cache=True, nogil=True)
def dominators_n(starts, o, k, out, ctl):
    """out[i]: the items before i in its segment with every column of ``o`` no larger, counted up to k
    among the items kept so far (those with fewer than k): an item with k such items before it has k
    among the kept ones (the first of them not kept has k before it, all kept and all before i), so the
    count decides alike. Items are in order within segments at ``starts``; two or three columns (one:
    :func:`dominators`)."""
    m = o.shape[1]
    size = 1
    for s in range(starts.shape[0] - 1):
        size = max(size, starts[s + 1] - starts[s])
    kept = np.empty(size, np.int64)
    for s in range(starts.shape[0] - 1):
        nk = 0
        for i in range(starts[s], starts[s + 1]):
            if ctl[CTL_STOP] != 0:  # one load an item: each scans up to the segment's kept items
                return
            c = 0
            a0, a1, a2 = o[i, 0], o[i, 1], o[i, m - 1]  # two or three columns (m - 1 = 1: the second again)
            for q in range(nk):
                y = kept[q]
                if o[y, 0] <= a0 and o[y, 1] <= a1 and o[y, m - 1] <= a2:
                    c += 1
                    if c >= k:
                        break
            out[i] = c
            if c < k:
                kept[nk] = i
                nk += 1


# ---------------------------------------------------------------- Pareto


@njit(cache=True, nogil=True)
def front_keep(starts, vec, nobj, keep, ctl):
    """Within each segment (rows of ``vec`` in lexicographic order), keep[i] = no kept row y of the
    segment has y <= vec[i] in every column and differs from it in one of the first ``nobj`` columns
    (the objectives; the later columns are budgets, which only make a row no better). A row dominated
    by a dropped row is dominated by the row that dropped it, so comparing with kept rows suffices."""
    dims = vec.shape[1]
    for s in range(starts.shape[0] - 1):
        a, b = starts[s], starts[s + 1]
        nk = 0
        kept = np.empty(b - a, np.int64)
        for i in range(a, b):
            if ctl[CTL_STOP] != 0:  # one load an item: each scans up to the segment's kept rows
                return
            dominated = False
            for q in range(nk):
                y = kept[q]
                le = True
                for d in range(dims):
                    if vec[y, d] > vec[i, d]:
                        le = False
                        break
                if not le:
                    continue
                for d in range(nobj):
                    if vec[y, d] != vec[i, d]:
                        dominated = True
                        break
                if dominated:
                    break
            keep[i] = not dominated
            if not dominated:
                kept[nk] = i
                nk += 1


@njit(cache=True, nogil=True)
def front_expand(fill, seg, vec, tid, gt_off, ns_off, nxt, gv_off, gvec, suf, bud, out_v, out_vec, out_u, out_f, ctl):
    """Every kept vector of every state plus every group vector (a group: choices of one rf increment and
    output), dropping sums that a budget rules out with the least completion cost added (``suf[v, d]``
    per column, INF-free budgets ``bud[d]``). Returns the number of sums (written when ``fill``); -1
    when stopped."""
    dims = vec.shape[1]
    n = 0
    steps = 0
    for s in range(seg.shape[0] - 1):
        a0, a1 = seg[s], seg[s + 1]
        if a0 == a1:
            continue
        t = tid[s]
        for g in range(gt_off[t], gt_off[t + 1]):
            v = nxt[ns_off[s] + g - gt_off[t]]
            if v < 0:
                continue
            for u in range(a0, a1):
                if (steps & 4095) == 0 and ctl[CTL_STOP] != 0:
                    return -1
                steps += 1
                for f in range(gv_off[g], gv_off[g + 1]):
                    if not within(vec, u, gvec, f, suf, v, bud):
                        continue
                    if fill:
                        out_v[n] = v
                        for d in range(dims):
                            out_vec[n, d] = vec[u, d] + gvec[f, d]
                        out_u[n] = u
                        out_f[n] = f
                    n += 1
    return n


# ---------------------------------------------------------------- exact counts and unranking


@njit(cache=True, nogil=True)
def count_level(tid, gt_off, ns_off, nxt, g_b, g_mult, nh, nl, oh, ol, ctl):
    """One level of the counting programme: (oh, ol)[s, r] = sum over groups g of state s's table of
    mult_g x (nh, nl)[next state, r - b_g] (r >= b_g): completions of s with at most r buckets left."""
    R1 = oh.shape[1]
    for s in range(oh.shape[0]):
        if (s & 255) == 0 and ctl[CTL_STOP] != 0:
            return
        t = tid[s]
        if t < 0:
            continue
        for g in range(gt_off[t], gt_off[t + 1]):
            v = nxt[ns_off[s] + g - gt_off[t]]
            if v < 0:
                continue
            b = g_b[g]
            m = np.uint64(g_mult[g])
            for r in range(b, R1):
                h, lo = mul128(nh[v, r - b], nl[v, r - b], m)
                oh[s, r], ol[s, r] = add128(oh[s, r], ol[s, r], h, lo)


@njit(cache=True, nogil=True)
def unrank(rh, rl, root, R, P, tids, lvl_off, gt_off, ns_offs, nxts, g_b, g_mult, gm_off, members, ch, cl, c_off,
           c_width, out, ctl):  # fmt: skip
    """The candidate of each rank (rh, rl) in [0, count of the root): at every level the groups of the
    state's table are taken in order, each holding mult x (completions after it) ranks; inside the group
    that holds the rank, member m = rank // completions (found by bisection: m < 2^15) and the rest of the
    rank goes on to the next level. A bijection from ranks to candidates; with groups that are runs of
    consecutive choices, in choice order, it is the lexicographic (arch_id) order.

    Per level p the tables are flattened: ``tids[lvl_off[p] + s]``, ``ns_offs``/``nxts`` likewise, counts
    (ch, cl) of level p + 1 at ``c_off[p + 1]`` with rows of ``c_width`` columns (R + 1). Returns the
    number of ranks unranked: fewer than given for a rank beyond the count, or when stopped (-1)."""
    for i in range(rh.shape[0]):
        if (i & 1023) == 0 and ctl[CTL_STOP] != 0:
            return -1
        h, lo = rh[i], rl[i]
        s = root
        rem = R
        for p in range(P):
            t = tids[lvl_off[p] + s]
            found = False
            for g in range(gt_off[t], gt_off[t + 1]):
                v = nxts[ns_offs[lvl_off[p] + s] + g - gt_off[t]]
                b = g_b[g]
                if v < 0 or b > rem:
                    continue
                at = c_off[p + 1] + v * c_width + rem - b
                gh, gl = ch[at], cl[at]
                if gh == ZERO and gl == ZERO:
                    continue
                wh, wl = mul128(gh, gl, np.uint64(g_mult[g]))
                if lt128(h, lo, wh, wl):
                    a, z = 0, g_mult[g]  # the member: largest m with m x G <= rank
                    while z - a > 1:
                        mid = (a + z) // 2
                        xh, xl = mul128(gh, gl, np.uint64(mid))
                        if lt128(h, lo, xh, xl):
                            z = mid
                        else:
                            a = mid
                    xh, xl = mul128(gh, gl, np.uint64(a))
                    h, lo = sub128(h, lo, xh, xl)
                    out[i, p] = members[gm_off[g] + a]
                    s = v
                    rem -= b
                    found = True
                    break
                h, lo = sub128(h, lo, wh, wl)
            if not found:
                return i  # a rank beyond the count: the caller's error
    return rh.shape[0]


# ---------------------------------------------------------------- lexicographic enumeration under budgets


@njit(cache=True, nogil=True)
def enumerate_lex(P, tids, lvl_off, rt_off, r_next_off, r_next, rm_off, r_seq, r_seq_cost, r_perm, r_cost, by_macs,
                  ch_params, ch_macs, ch_off, least_p, least_m, ls_off, bp, bm, wanted, stop_early, out, walk, state,
                  cost_p, cost_m, path, buf, bufv, cnt, cur, ctl):  # fmt: skip
    """Walk the survivors in lexicographic (arch_id) order and copy those whose rank is in ``wanted``
    (sorted) into ``out``. Returns the number of survivors walked so far (all of them, or with
    ``stop_early`` up to the last wanted one). The walk's whole state is in the arrays passed
    (``walk`` = [depth, rank, started]), so a later call with the next wanted ranks goes on from there.

    At each node a table's runs (choices of one rf increment and output, so one next state; runs follow
    each other in choice order) are taken in order. Within a run the budgeted cost (MACs if ``by_macs``,
    else params) of the members that fit with the least completion cost added is a prefix of the run
    sorted by that cost (``r_perm``, ``r_cost``), found by bisection; a short prefix is put back in choice
    order, a long one read in choice order (``r_seq``). Every node walked has a survivor below it (its
    least completion fits both budgets and ends in the window), so the work is about the survivors times
    the positions, plus the runs of the nodes walked. A raised ``ctl[CTL_STOP]`` stops the walk within
    4096 steps, where it stands (the caller discards it).
    """
    n_wanted = wanted.shape[0]
    w = 0
    if walk[2] == 0:
        walk[0] = walk[1] = 0
        walk[2] = 1
        cnt[0] = -1  # the children of the node at depth d: buf[d, :cnt[d]] (choices), bufv[d, :] (next states)
    depth, rank = walk[0], walk[1]
    steps = 0
    while depth >= 0:
        if (steps & 4095) == 0 and ctl[CTL_STOP] != 0:
            break
        steps += 1
        p = depth
        if cnt[p] < 0:
            s = state[p]
            t = tids[lvl_off[p] + s]
            k = 0
            for r in range(rt_off[t], rt_off[t + 1]):
                v = r_next[r_next_off[lvl_off[p] + s] + r - rt_off[t]]
                if v < 0:
                    continue
                lp = least_p[ls_off[p + 1] + v]
                lmc = least_m[ls_off[p + 1] + v]
                room = bm - cost_m[p] - lmc if by_macs else bp - cost_p[p] - lp
                lo, hi = rm_off[r], rm_off[r + 1]
                a, z = lo, hi
                while a < z:
                    mid = (a + z) // 2
                    if r_cost[mid] <= room:
                        a = mid + 1
                    else:
                        z = mid
                m = a - lo
                if m == 0:
                    continue
                k0 = k
                if 8 * m >= hi - lo:  # most of the run fits: read it in choice order
                    for j in range(lo, hi):
                        if r_seq_cost[j] > room:
                            continue
                        c = r_seq[j]
                        if cost_p[p] + ch_params[ch_off[t] + c] + lp > bp:
                            continue
                        if cost_m[p] + ch_macs[ch_off[t] + c] + lmc > bm:
                            continue
                        buf[p, k] = c
                        bufv[p, k] = v
                        k += 1
                else:  # a few fit: take them, then insertion-sort them into choice order
                    for j in range(lo, a):
                        c = r_perm[j]
                        if cost_p[p] + ch_params[ch_off[t] + c] + lp > bp:
                            continue
                        if cost_m[p] + ch_macs[ch_off[t] + c] + lmc > bm:
                            continue
                        x = k
                        while x > k0 and buf[p, x - 1] > c:
                            buf[p, x] = buf[p, x - 1]
                            x -= 1
                        buf[p, x] = c
                        bufv[p, x] = v
                        k += 1
            cnt[p] = k
            cur[p] = 0
        if cur[p] >= cnt[p]:
            cnt[p] = -1
            depth -= 1
            continue
        x = cur[p]
        cur[p] += 1
        c = buf[p, x]
        t = tids[lvl_off[p] + state[p]]
        path[p] = c
        state[p + 1] = bufv[p, x]
        cost_p[p + 1] = cost_p[p] + ch_params[ch_off[t] + c]
        cost_m[p + 1] = cost_m[p] + ch_macs[ch_off[t] + c]
        if p + 1 == P:
            while w < n_wanted and wanted[w] == rank:
                for q in range(P):
                    out[w, q] = path[q]
                w += 1
            rank += 1
            if stop_early and w == n_wanted:
                walk[0], walk[1] = depth, rank
                return rank
            continue
        depth += 1
        cnt[depth] = -1
    walk[0], walk[1] = depth, rank
    return rank


__all__ = [
    "add128",
    "count_level",
    "dominators",
    "dominators_n",
    "enumerate_lex",
    "front_expand",
    "front_keep",
    "lt128",
    "mul128",
    "sub128",
    "topk_expand",
    "unrank",
    "within",
]
