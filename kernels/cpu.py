"""CPU kernels: parallel depth-first enumeration of candidate stacks, and exact counting by dynamic programming.

Both take every threshold as an argument (module globals are frozen into cached kernels) and int64,
C-contiguous arrays, so one compiled signature serves every call.
"""

import numpy as np
from numba import njit, prange

from rfsweep.kernels.layer_math import (
    C_CIN,
    C_DMAX,
    C_DMIN,
    C_MAX_WIDTH,
    C_MIN_CONVS,
    C_MIN_OUT,
    C_N,
    C_PAD,
    C_RF_MAX,
    C_RF_MIN,
    C_WIDTH,
    CTL_STOP,
    F_CONVS,
    F_ROLE,
    NS,
    PAD_VALID,
    ROLE_BODY,
    ROLE_HEAD,
    S_IDX,
    S_JUMP,
    S_NCONV,
    S_RF,
    any_child,
    choice_step,
    layer_channels,
    walk_below,
    walk_prefix,
)


# One thread's kernel, not a parallel one: the engine spreads the tasks over threads itself
# (rfsweep.engine.threads), calling this on spans of them (it releases the GIL). A parallel kernel (prange)
# cost ~2 s more of a first run's compile on 2 cores (parfor lowering and the gufunc around its body,
# measured with bench_cold.py --compiles) for the same walk; the spans keep dynamic scheduling.
@njit(cache=True, nogil=True)
def run_tasks(mode, tasks, plens, rows0, K, ctl, counts, evals, out, out_ch, jump_values, rf_cap, table):
    """Walk every task's subtree, in order; mode 0 counts the survivors of each task, mode 1 also writes them,
    mode 2 counts them by a walk of the task's prefix and one lookup in :func:`suffix_table`'s ``table``
    (``jump_values`` and ``rf_cap`` as given to it; spaces whose constraints the counting programme
    tracks, see rfsweep.engine.run). Modes 0 and 1 take any ``table`` (one of shape (1, 1, 1, 1)):
    one kernel and one compiled signature serve the walk and the lookup, whose prefix walk is the
    walk's own first steps.

    Task ``i`` stores its survivors in ``counts[i]`` and the candidates it evaluated (its pruned
    subtrees are never visited; mode 2: its prefix nodes) in ``evals[i]`` when it ends: the host sets
    ``evals`` to -1 first and reads both while the kernel runs, for progress. In mode 1 task ``i``
    writes rows ``rows0[i] .. rows0[i] + count - 1``: the caller sets ``rows0`` from the counts of a
    count pass (count-then-fill), so the rows come out in depth-first order whatever the number of
    threads, and no two threads (each given other tasks) write the same row. The walk state is one
    (dmax+1) x NS array, allocated outside the per-candidate loop. Once the host raises
    ``ctl[CTL_STOP]`` every task returns within a few thousand nodes, with partial results the host
    discards.
    """
    cons = K.cons
    dmax = cons[C_DMAX]
    min_convs = cons[C_MIN_CONVS]
    st = np.empty((dmax + 1, NS), np.int64)
    walk = mode if mode < 2 else 0  # mode 2 walks the prefix as a count does
    for i in range(tasks.shape[0]):
        # layer_math.walk_task, with the lookup in place of the subtree's walk in mode 2 (one prefix walk
        # compiled for both)
        st[0, S_IDX] = 0
        count = 0
        if ctl[CTL_STOP] == 0:
            count, below = walk_prefix(walk, tasks[i], plens[i], rows0[i], K, st, out, out_ch)
            if below and mode == 2:
                t = plens[i]
                j = np.searchsorted(jump_values, st[t, S_JUMP])
                count += table[t, j, min(st[t, S_RF], rf_cap), min(st[t, S_NCONV], min_convs)]
            elif below:
                count = walk_below(walk, plens[i], rows0[i], count, K, ctl, st, out, out_ch)
        counts[i] = count
        evals[i] = st[0, S_IDX]


@njit(cache=True, nogil=True)
def count_dp(K, jump_values, jump_next, final_ok, rf_cap, primes, ctl, hist):
    """Exact number of candidates meeting the rf/jump/out-size/min-convs constraints, per final rf.

    A dynamic programme over states (jump, rf, convs so far): every rf increment depends only on the
    jump, so candidates sharing a state share their futures. The out size is a function of the state
    too: ceil(N / jump) with 'same' and TF 'SAME' padding, and floor((N - rf) / jump) + 1 with 'valid'
    padding (a unit exists exactly when its receptive field lies inside the input), so no out-size
    dimension is needed however large the input. rf above ``rf_cap`` saturates into the last bucket
    (``rf_cap`` is the upper bound when there is one, else the lower bound). Convs are counted up to
    the minimum asked for (more changes nothing).

    Counts are kept modulo each of ``primes`` (each < 2^62, so a sum of two never wraps); the caller
    rebuilds the exact integer by the Chinese remainder theorem, with enough primes that their
    product exceeds the size of the space. ``hist[rf, q]`` receives the count modulo ``primes[q]``.
    A raised ``ctl[0]`` stops the programme early (the host then discards ``hist``).

    ``jump_next[j, pos, c]`` is the index of jump_values[j] * stride(choice c at pos) in
    ``jump_values``, or -1 when no allowed final jump is a multiple of it; ``final_ok[j]`` is 1 when
    jump_values[j] is an allowed final jump.
    """
    choices = K.choices
    nch = K.nch
    cons = K.cons
    nj = jump_values.shape[0]
    nq = primes.shape[0]
    big_n = cons[C_N]
    mode = cons[C_PAD]
    valid = mode == PAD_VALID
    min_convs = cons[C_MIN_CONVS]
    nm = min_convs + 1
    rf_min = cons[C_RF_MIN]
    rf_max = cons[C_RF_MAX]
    min_out = cons[C_MIN_OUT]
    cur = np.zeros((nj, rf_cap + 1, nm, nq), np.int64)
    for q in range(nq):
        cur[0, 1, 0, q] = 1
    for pos in range(cons[C_DMAX]):
        if ctl[0] != 0:
            return
        nxt = np.zeros_like(cur)
        final = pos + 1 >= cons[C_DMIN]
        for j in range(nj):
            jump = jump_values[j]
            for rf in range(1, rf_cap + 1):
                if valid:
                    n = (big_n - rf) // jump + 1  # exact only below the cap; valid caps rf at N
                else:
                    n = (big_n + jump - 1) // jump
                for m in range(nm):
                    if cur[j, rf, m, 0] == 0:
                        empty = True
                        for q in range(1, nq):
                            if cur[j, rf, m, q] != 0:
                                empty = False
                        if empty:
                            continue
                    for c in range(nch[pos]):
                        jo = jump_next[j, pos, c]
                        if jo < 0:
                            continue
                        n_out, rfv, _ = choice_step(choices, pos, c, n, mode)
                        if n_out < min_out:
                            continue
                        rf_out = rf + rfv * jump
                        if rf_out > rf_max:
                            continue
                        if rf_out > rf_cap:
                            rf_out = rf_cap
                        mo = min(m + choices[pos, c, F_CONVS], min_convs)
                        role = choices[pos, c, F_ROLE]
                        if role & ROLE_BODY:
                            for q in range(nq):
                                v = nxt[jo, rf_out, mo, q] + cur[j, rf, m, q]
                                if v >= primes[q]:
                                    v -= primes[q]
                                nxt[jo, rf_out, mo, q] = v
                        if role & ROLE_HEAD and final and final_ok[jo] and rf_out >= rf_min and mo == min_convs:
                            for q in range(nq):
                                v = hist[rf_out, q] + cur[j, rf, m, q]
                                if v >= primes[q]:
                                    v -= primes[q]
                                hist[rf_out, q] = v
        cur = nxt


@njit(cache=True, nogil=True)
def flatten_layers(choice, depth, t_op, t_k, t_s, t_d, t_c, cons):
    """The per-layer list columns of a batch as flat arrays plus list offsets, in one pass.

    ``t_*[pos, c]`` are the choice tables; channels follow the walk's own rule (``layer_channels``).
    """
    rows = depth.shape[0]
    total = 0
    for r in range(rows):
        total += depth[r]
    offsets = np.empty(rows + 1, np.int32)
    op = np.empty(total, np.int8)
    kernel = np.empty(total, np.uint8)
    stride = np.empty(total, np.uint8)
    dilation = np.empty(total, np.uint8)
    channels = np.empty(total, np.int32)
    i = 0
    for r in range(rows):
        offsets[r] = i
        cin = cons[C_CIN]
        ndown = 0
        for p in range(depth[r]):
            c = choice[p, r]
            s = t_s[p, c]
            if s > 1:
                ndown += 1
            cin = layer_channels(t_op[p, c], t_c[p, c], cin, cons[C_WIDTH], cons[C_MAX_WIDTH], ndown)
            op[i] = t_op[p, c]
            kernel[i] = t_k[p, c]
            stride[i] = s
            dilation[i] = t_d[p, c]
            channels[i] = cin
            i += 1
    offsets[rows] = i
    return offsets, op, kernel, stride, dilation, channels


@njit(cache=True, nogil=True)
def pareto_sorted(b, c, keep):
    """keep[i]: no earlier vector i' (the vectors are distinct, in lexicographic order of (a, b, c), so
    a[i'] <= a[i]) has b[i'] <= b[i] and c[i'] <= c[i]. A Fenwick tree over b's ranks keeps the least c
    seen so far among each prefix of b values; ``b`` and ``c`` are dense ranks (0..n-1)."""
    n = b.shape[0]
    size = 1
    for i in range(n):
        if b[i] + 1 > size:
            size = b[i] + 1
    tree = np.full(size + 1, np.iinfo(np.int64).max, np.int64)
    for i in range(n):
        # least c among earlier vectors with b' <= b[i]
        best = np.iinfo(np.int64).max
        j = b[i] + 1
        while j > 0:
            if tree[j] < best:
                best = tree[j]
            j -= j & -j
        keep[i] = best > c[i]
        j = b[i] + 1
        while j <= size:
            if c[i] < tree[j]:
                tree[j] = c[i]
            j += j & -j


@njit(parallel=True, cache=True, nogil=True)
def wide_layers(choice, depth, t_op, t_k, t_s, t_d, t_c, cons):
    """The per-position columns of a batch: (op, kernel, stride, dilation, channels), each (positions x
    rows) so that every position's column is contiguous; zero beyond a row's depth (the caller marks
    those null). Channels follow the walk's own rule (``layer_channels``)."""
    npos, rows = choice.shape
    op = np.zeros((npos, rows), np.int8)
    kernel = np.zeros((npos, rows), np.uint8)
    stride = np.zeros((npos, rows), np.uint8)
    dilation = np.zeros((npos, rows), np.uint8)
    channels = np.zeros((npos, rows), np.int32)
    for r in prange(rows):
        cin = cons[C_CIN]
        ndown = 0
        for p in range(depth[r]):
            c = choice[p, r]
            s = t_s[p, c]
            if s > 1:
                ndown += 1
            cin = layer_channels(t_op[p, c], t_c[p, c], cin, cons[C_WIDTH], cons[C_MAX_WIDTH], ndown)
            op[p, r] = t_op[p, c]
            kernel[p, r] = t_k[p, c]
            stride[p, r] = s
            dilation[p, r] = t_d[p, c]
            channels[p, r] = cin
    return op, kernel, stride, dilation, channels


@njit(cache=True, nogil=True)
def suffix_table(K, jump_values, jump_next, final_ok, rf_cap, table):
    """table[t, j, rf, m]: survivors strictly below a node at depth t whose last choice may continue, in
    state (jump_values[j], rf, convs m): the counting programme run backwards, so that a task's count is
    its prefix walk plus one lookup (:func:`run_tasks`' mode 2) instead of a walk of its subtree.

    The same states and rules as :func:`count_dp` (rf above ``rf_cap`` saturates; the out size is a
    function of the state). ``table[dmax]`` is 0.
    """
    choices = K.choices
    nch = K.nch
    cons = K.cons
    nj = jump_values.shape[0]
    big_n = cons[C_N]
    mode = cons[C_PAD]
    valid = mode == PAD_VALID
    min_convs = cons[C_MIN_CONVS]
    nm = min_convs + 1
    rf_min = cons[C_RF_MIN]
    rf_max = cons[C_RF_MAX]
    min_out = cons[C_MIN_OUT]
    dmax = cons[C_DMAX]
    dmin = cons[C_DMIN]
    table[dmax, :, :, :] = 0
    for t in range(dmax - 1, -1, -1):
        final = t + 1 >= dmin
        for j in range(nj):
            jump = jump_values[j]
            for rf in range(1, rf_cap + 1):
                if valid:
                    n = (big_n - rf) // jump + 1
                else:
                    n = (big_n + jump - 1) // jump
                for m in range(nm):
                    total = 0
                    for c in range(nch[t]):
                        jo = jump_next[j, t, c]
                        if jo < 0:
                            continue
                        n_out, rfv, _ = choice_step(choices, t, c, n, mode)
                        if n_out < min_out:
                            continue
                        rf_out = rf + rfv * jump
                        if rf_out > rf_max:
                            continue
                        if rf_out > rf_cap:
                            rf_out = rf_cap
                        mo = min(m + choices[t, c, F_CONVS], min_convs)
                        role = choices[t, c, F_ROLE]
                        if role & ROLE_HEAD and final and final_ok[jo] and rf_out >= rf_min and mo == min_convs:
                            total += 1
                        if role & ROLE_BODY:
                            total += table[t + 1, jo, rf_out, mo]
                    table[t, j, rf, m] = total


@njit(cache=True, nogil=True)
def step_all(choices, nch, cons, pos, states, out, blocks):
    """For every state row (fields S_*) and every choice at ``pos``: the child's row, in out[i, c, S_*];
    out[i, c, S_N] = 0 where the choice does not fit. (The bounds and floors of rfsweep.space.packing, on spaces
    whose crude bound shows no int64 can wrap.) ``blocks``: as ``KernelArrays.blocks``."""
    st = np.zeros((2, NS), np.int64)
    for i in range(states.shape[0]):
        for c in range(nch[pos]):
            for f in range(NS):
                st[0, f] = states[i, f]
                st[1, f] = 0
            any_child(st, 0, choices, cons, pos, c, blocks)
            for f in range(NS):
                out[i, c, f] = st[1, f]


@njit(parallel=True, cache=True, nogil=True)
def stage_buckets(y_rfv, y_start, y_left, y_q, y_r, y_w, xr_vals, x_start, x_cost, x_q, x_r, x_w, x_wsum, r2, g, vmin,
                  vmax, hist, ctl, done):  # fmt: skip
    """hist[r, min(q, vmax) - vmin + 1] += y_w * x_w (column 0 when q < vmin) for every pair (y, x) with rf
    r2[r] = y_rf + x_rf and cost y_cost + x_cost <= room, q = (room - y_cost - x_cost) // g: the G2 sums of
    rfsweep.engine.stage_count, bucketed by the G1 units they leave. No division per pair: with
    ``y_left = room - y_cost = g * y_q + y_r`` and ``x_cost = g * x_q + x_r`` (0 <= remainders < g),
    q = y_q - x_q - (1 if x_r > y_r else 0); the x whose q is at least vmax (one cell) or below vmin
    (column 0) are found by binary search and added from ``x_wsum`` (x_w's running sums, x_wsum[0] = 0).
    ``y`` is grouped by rf (values ``y_rfv``, group m at y_start[m]:y_start[m + 1]; only y_left >= 0), ``x``
    by rf (``xr_vals``, x_start) and by cost within a group, so each (y, x) pair is visited once, in the row
    of its rf, one lookup of the x group per y group, and a y's scan stops at the first x over its room.
    Rows of ``hist`` belong to one rf each: the parallel loop runs over them; ``done[r]`` is set when row r
    is complete (progress), and a raised ``ctl[CTL_STOP]`` stops every row within 4096 y values."""
    nr = r2.shape[0]
    nk = xr_vals.shape[0]
    for r in prange(nr):
        target = r2[r]
        row = hist[r]
        stop = False
        for m in range(y_rfv.shape[0]):
            need = target - y_rfv[m]
            k = np.searchsorted(xr_vals, need)
            if k >= nk or xr_vals[k] != need:
                continue
            xa = x_start[k]
            xb = x_start[k + 1]
            for i in range(y_start[m], y_start[m + 1]):
                if (i & 4095) == 0 and ctl[CTL_STOP] != 0:
                    stop = True
                    break
                left = y_left[i]
                qy = y_q[i]
                ry = y_r[i]
                wy = y_w[i]
                # q falls as the cost rises: x[xa:j1] leave >= vmax units (one cell), x[j1:j2] a unit each,
                # x[j2:j3] fewer than vmin (column 0), and x[j3:] more than the room (none)
                j3 = xa + np.searchsorted(x_cost[xa:xb], left, side="right")
                j1 = xa + np.searchsorted(x_cost[xa:j3], left - vmax * g, side="right")
                j2 = j1 + np.searchsorted(x_cost[j1:j3], left - vmin * g, side="right")
                if j1 > xa:
                    row[vmax - vmin + 1] += wy * (x_wsum[j1] - x_wsum[xa])
                if j3 > j2:
                    row[0] += wy * (x_wsum[j3] - x_wsum[j2])
                base = qy - vmin + 1
                for j in range(j1, j2):  # no branch: the cell of q = qy - x_q - (x_r > ry)
                    row[base - x_q[j] - (x_r[j] > ry)] += wy * x_w[j]
            if stop:
                break
        done[r] = 1
