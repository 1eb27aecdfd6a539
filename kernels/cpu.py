"""CPU kernels: parallel depth-first enumeration of candidate stacks, and exact counting by dynamic programming.

Both take every threshold as an argument (module globals are frozen into cached kernels) and int64,
C-contiguous arrays, so one compiled signature serves every call.
"""

import numpy as np
from numba import njit, prange

from rfsweep.kernels.layer_math import (
    C_DMAX,
    C_DMIN,
    C_MIN_OUT,
    C_N,
    C_PAD,
    C_RF_MAX,
    C_RF_MIN,
    CH_PASS,
    CH_WIDTH,
    F_D,
    F_K,
    F_S,
    NS,
    PAD_VALID,
    S_IDX,
    pad_left,
    walk_task,
    width_channels,
)


@njit(parallel=True, cache=True, nogil=True)
def run_tasks(mode, tasks, plens, rows0, choices, nch, cons, jumps, anchors, growth, dep_off, out, out_ch):
    """Walk every task's subtree; mode 0 returns survivor counts per task, mode 1 also writes them.

    In mode 1 task ``i`` writes rows ``rows0[i] .. rows0[i] + count - 1``: the caller sets ``rows0``
    from the counts of a mode-0 pass (count-then-fill), so the rows come out in depth-first order
    whatever the number of threads, and no two threads write the same row. The walk state is one
    (dmax+1) x NS array per task, allocated outside the per-candidate loop. In mode 0 ``rows0[i]``
    receives the number of candidates task ``i`` evaluated (its pruned subtrees are never visited).
    """
    ntask = tasks.shape[0]
    counts = np.zeros(ntask, np.int64)
    dmax = cons[C_DMAX]
    for i in prange(ntask):
        st = np.empty((dmax + 1, NS), np.int64)
        counts[i] = walk_task(
            mode, tasks[i], plens[i], rows0[i], choices, nch, cons, jumps, anchors, growth, dep_off, st, out, out_ch
        )
        if mode == 0:
            rows0[i] = st[0, S_IDX]
    return counts


@njit(cache=True)
def count_dp(choices, nch, cons, jump_values, jump_next, final_ok, rf_cap, hist_u, hist_f):
    """Histogram over final rf of the candidates meeting the rf/jump/out-size constraints.

    The walk is a dynamic programme over states (jump, rf, out size): every rf increment depends only
    on the jump, so candidates sharing a state share their futures. Out size is a state only with
    'valid' padding; with 'same' and TF 'SAME' it is ceil(N / jump). rf above ``rf_cap`` saturates
    into the last bucket (``rf_cap`` is the upper bound when there is one, else the lower bound).
    Counts are kept modulo 2^64 (uint64 wraps) and, in parallel, as float64: the caller recovers the
    exact integer from the pair.

    ``jump_next[j, pos, c]`` is the index of jump_values[j] * stride(choice c at pos) in
    ``jump_values``, or -1 when no allowed final jump is a multiple of it; ``final_ok[j]`` is 1 when
    jump_values[j] is an allowed final jump.
    """
    nj = jump_values.shape[0]
    big_n = cons[C_N]
    valid = cons[C_PAD] == PAD_VALID
    nd = big_n + 1 if valid else 1
    cur_u = np.zeros((nj, rf_cap + 1, nd), np.uint64)
    cur_f = np.zeros((nj, rf_cap + 1, nd), np.float64)
    cur_u[0, 1, big_n if valid else 0] = 1
    cur_f[0, 1, big_n if valid else 0] = 1.0
    rf_min = cons[C_RF_MIN]
    rf_max = cons[C_RF_MAX]
    min_out = cons[C_MIN_OUT]
    for pos in range(cons[C_DMAX]):
        nxt_u = np.zeros_like(cur_u)
        nxt_f = np.zeros_like(cur_f)
        for j in range(nj):
            jump = jump_values[j]
            for rf in range(1, rf_cap + 1):
                for ni in range(nd):
                    cu = cur_u[j, rf, ni]
                    if cu == 0 and cur_f[j, rf, ni] == 0.0:
                        continue
                    cf = cur_f[j, rf, ni]
                    n = ni if valid else (big_n + jump - 1) // jump
                    for c in range(nch[pos]):
                        jo = jump_next[j, pos, c]
                        if jo < 0:
                            continue
                        k = choices[pos, c, F_K]
                        s = choices[pos, c, F_S]
                        keff = choices[pos, c, F_D] * (k - 1) + 1
                        pl, pr = pad_left(n, keff, s, cons[C_PAD])
                        span = n + pl + pr - keff
                        if span < 0:
                            continue
                        n_out = span // s + 1
                        if n_out < min_out:
                            continue
                        rf_out = rf + (keff - 1) * jump
                        if rf_out > rf_max:
                            continue
                        if rf_out > rf_cap:
                            rf_out = rf_cap
                        no = n_out if valid else 0
                        nxt_u[jo, rf_out, no] += cu
                        nxt_f[jo, rf_out, no] += cf
        cur_u = nxt_u
        cur_f = nxt_f
        if pos + 1 >= cons[C_DMIN]:
            for j in range(nj):
                if final_ok[j] == 0:
                    continue
                for rf in range(rf_min, rf_cap + 1):
                    for ni in range(nd):
                        hist_u[rf] += cur_u[j, rf, ni]
                        hist_f[rf] += cur_f[j, rf, ni]


@njit(cache=True, nogil=True)
def flatten_layers(choice, depth, t_op, t_k, t_s, t_d, t_c, cin0, width, max_width):
    """The per-layer list columns of a batch as flat arrays plus list offsets, in one pass.

    ``t_*[pos, c]`` are the choice tables; channels follow the pools' pass-through and the width
    rule exactly as the walk computes them (``width_channels``).
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
        cin = cin0
        ndown = 0
        for p in range(depth[r]):
            c = choice[r, p]
            s = t_s[p, c]
            if s > 1:
                ndown += 1
            cc = t_c[p, c]
            if cc == CH_WIDTH:
                cin = width_channels(width, max_width, ndown)
            elif cc != CH_PASS:
                cin = cc
            op[i] = t_op[p, c]
            kernel[i] = t_k[p, c]
            stride[i] = s
            dilation[i] = t_d[p, c]
            channels[i] = cin
            i += 1
    offsets[rows] = i
    return offsets, op, kernel, stride, dilation, channels
