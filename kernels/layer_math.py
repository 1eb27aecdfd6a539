"""The per-layer update and the depth-first subtree walk, written once for the CPU and CUDA kernels.

Every function here is ``register_jitable``: callable from ``@njit`` CPU kernels, from ``@cuda.jit``
kernels and from plain Python alike, so both backends (and the Python side: numbering, the list
columns) run the same arithmetic. It must match ``rfsweep.network.arithmetic`` (the tests compare them on
random spaces through ``tests/naive.py``, which derives everything again in plain Python).

The arrays a kernel needs travel together as one :class:`KernelArrays` (a named tuple of int64,
C-contiguous arrays, built once per space by ``rfsweep.space.packing.kernel_arrays``):

* ``choices[pos, c, F_*]``: the choice table, one row per choice at each position.
* ``nch[pos]``: the number of choices at each position.
* ``cons[C_*]``: the constraints and space scalars (an argument, never a global, so cached kernels
  see new thresholds).
* ``jumps``: the allowed final jumps; ``anchors[i, A_*]``: the detector levels.
* ``growth``: what the remaining positions can add to the rf (see :func:`feasible`).
* ``dep_off[depth]``: the arch_id of the first candidate of each depth.
* ``blocks``: None when no choice is made of blocks (a chain), else True. Not an array: its *type*
  picks the code. numba prunes ``if blocks is not None`` branches of a function whose argument is
  None before typing, so a chain's kernels are compiled without the blocks path (blocks_child and
  kernels/costs.py: ~3.4 s of a first run's compile on 2 cores, bench_cold.py --compiles), and a
  space of stages gets its own signature with both paths.

Per call: ``ctl[CTL_STOP]`` is raised by the host to stop every walk within a few thousand nodes
(Ctrl-C); ``st[depth, S_*]`` is the walk's state after ``depth`` layers (one row per depth, reused);
``out[O_*, row]`` the survivors, one column per survivor (column-major: each field is contiguous, as
the Parquet columns want it), and ``out_ch[pos, row]`` their choice indices.
"""

from collections import namedtuple

from numba.extending import register_jitable

from rfsweep.kernels.costs import (
    B_AVGPOOL,
    B_BASIC,
    B_GLOBAL_POOL,
    B_MAXPOOL,
    block_costs,
    block_peak,
    residual,
)

KernelArrays = namedtuple("KernelArrays", ["choices", "nch", "cons", "jumps", "anchors", "growth", "dep_off", "blocks"])

# Every helper is compiled with _nrt=False: none allocates, and without the runtime no reference
# counts are taken on the arrays passed at each call (atomic operations two threads contend on).
# Measured on R7 (2 cores): rf [223, 225] count 1.02 s -> 0.57 s, [200, 250] 6.7 s -> 3.9 s, the
# search's kernels 2.33 s -> 1.34 s. Inlining them at numba-IR level (inline="always") was faster
# still (0.27 s, 2.1 s, 0.88 s) but made the first compile take 49 s instead of 7 s: not taken.

# choice fields. F_S is the choice's whole stride (the jump factor), F_RFV the rf it adds per unit of the
# jump before it (d(k-1) for a layer), F_NB its number of blocks (0: the choice is one layer, described
# by F_OP..F_C; > 0: a stage or a fixed stem/head, whose blocks follow at NF + b * BF + BF_*)
F_OP, F_K, F_S, F_D, F_C, F_ROLE, F_NB, F_RFV, F_CONVS = range(9)
NF = 9  # F_CONVS: the convs a choice adds (towards --min-convs)
# block fields (kernels/costs.py B_* ops; expansion ratio e_num / e_den; se, bn, bias flags)
BF_OP, BF_K, BF_S, BF_D, BF_EN, BF_ED, BF_SE, BF_BN, BF_BIAS, BF_C = range(10)
BF = 10
# F_ROLE bits: the choice may be followed by more layers (body), may be a candidate's last layer (head)
ROLE_BODY, ROLE_HEAD = 1, 2
OP_CONV, OP_MAXPOOL, OP_AVGPOOL, OP_BLOCKS = 0, 1, 2, 3
CH_PASS = -1  # pools: channels pass through
CH_WIDTH = -2  # conv channels from the width rule

# constraint / space scalars
(
    C_RF_MIN,
    C_RF_MAX,
    C_MIN_OUT,
    C_MAX_PARAMS,
    C_MAX_MACS,
    C_NO_UNPROD,
    C_N,
    C_CIN,
    C_PAD,
    C_BIAS,
    C_WIDTH,
    C_MAX_WIDTH,
    C_DMIN,
    C_DMAX,
    C_NJUMPS,
    C_NLEVELS,
    C_MIN_CONVS,
    C_MAX_PEAK,
    C_ACT_BYTES,
) = range(19)
# C_MAX_PEAK: the peak-activation budget (elements); C_ACT_BYTES: the bytes an activation element takes
NC = 19  # then, per depth t, the least params (cons[NC + 2t]) and MACs (cons[NC + 2t + 1]) positions t.. add

# detector levels (anchors[i, A_*]): a level is met by the last layer at jump A_STRIDE (its tap) when
# A_RF_LO <= rf <= A_RF_HI and 12 x erf variance >= A_ERF12 (so 2 x erf_sigma >= the ERF minimum)
A_STRIDE, A_RF_LO, A_RF_HI, A_ERF12 = range(4)
NA = 4
MAX_LEVELS = 8
PAD_VALID, PAD_SAME, PAD_TF_SAME = 0, 1, 2

# walk state fields
(S_N, S_RF, S_JUMP, S_PAD, S_CIN, S_PARAMS, S_MACS, S_ERF, S_NDOWN, S_PID, S_IDX, S_JLOG, S_NCONV, S_PEAK) = range(14)
NS = 14  # S_JLOG: log2(jump) when the jump is a power of two, else -1 (shifts instead of divisions);
# S_PEAK: the peak activation memory so far, in elements (kernels.costs.layer_peak / block_peak)

# output fields
(O_ARCH, O_DEPTH, O_RF, O_JUMP, O_PAD, O_N, O_PARAMS, O_MACS, O_ERF, O_PEAK, O_PEAK_BYTES) = range(11)
NO = 11  # then 3 per detector level: tap (layer index), tap rf, tap 12 x erf variance

MAX_DEPTH = 32  # the CUDA kernels size their local state with it
CTL_STOP = 0  # ctl[CTL_STOP] != 0: the host asks every walk to stop (Ctrl-C)
CTL_CAP = 1  # ctl[CTL_CAP] > 0: a task stops at that many survivors (a --limit needs no more from one task)
NCTL = 2
STOP_EVERY = 1 << 12  # walk iterations between two looks at the stop flag (~10 us on a CPU core)


@register_jitable(_nrt=False)
def pad_left(n, keff, s, mode):
    """(left, right) padding of one layer (valid, same or TensorFlow SAME), as rfsweep.network.arithmetic."""
    if mode == PAD_VALID:
        return 0, 0
    if mode == PAD_SAME:
        left = (keff - 1) // 2
        return left, keff - 1 - left
    if n % s == 0:
        total = keff - s
    else:
        total = keff - n % s
    if total < 0:
        total = 0
    return total // 2, total - total // 2


@register_jitable(_nrt=False)
def conv_out(n, keff, s, mode):
    """The geometry step of a conv or pool: (out size, left padding); out size 0 when the layer does not fit.

    ``n_out = floor((n + pL + pR - k')/s) + 1``. Integer division is most of a node's cost in the walk,
    so strides 1 and 2 (the common case) take a subtraction or a shift.
    """
    pl, pr = pad_left(n, keff, s, mode)
    span = n + pl + pr - keff
    if span < 0:
        return 0, pl
    if s == 1:
        return span + 1, pl
    if s == 2:
        return (span >> 1) + 1, pl
    return span // s + 1, pl


@register_jitable(_nrt=False)
def width_channels(width, max_width, ndown):
    """The width rule: ``min(width x 2^ndown, max_width)`` without overflowing."""
    cout = width
    for _ in range(ndown):
        if cout >= max_width:
            break
        cout *= 2
    if cout > max_width:
        cout = max_width
    return cout


@register_jitable(_nrt=False)
def layer_channels(op, cc, cin, width, max_width, ndown):
    """Output channels of a layer: pools pass ``cin`` through; a conv takes its own ``cc``, or with
    CH_WIDTH the width rule after ``ndown`` strided layers (this one included)."""
    if op != OP_CONV:
        return cin
    if cc == CH_WIDTH:
        return width_channels(width, max_width, ndown)
    return cc


@register_jitable(_nrt=False)
def child(st, t, choices, cons, pos, c):
    """State after adding choice ``c`` at position ``pos`` to the state at depth ``t``; writes row t+1.

    Returns False when the child is not a candidate and neither is anything below it: out size below
    1 or below the minimum, rf or params or MACs over their maxima, a jump no allowed final jump is a
    multiple of (checked by the caller), or (with no_unproductive) a spatial layer whose every input
    unit already sees the whole input.
    """
    op = choices[pos, c, F_OP]
    k = choices[pos, c, F_K]
    s = choices[pos, c, F_S]
    d = choices[pos, c, F_D]
    n = st[t, S_N]
    rf = st[t, S_RF]
    jump = st[t, S_JUMP]
    pad = st[t, S_PAD]
    keff = d * (k - 1) + 1
    if cons[C_NO_UNPROD] != 0 and keff > 1:
        # Richter et al.: every input unit already sees pixels 0..N-1 (see analyze.sees_whole_input)
        if rf - pad >= cons[C_N] and (n - 1) * jump <= pad:
            return False
    n_out, pl = conv_out(n, keff, s, cons[C_PAD])
    if n_out < cons[C_MIN_OUT]:  # C_MIN_OUT >= 1: a layer that does not fit is refused here too
        return False
    rf_out = rf + (keff - 1) * jump
    if rf_out > cons[C_RF_MAX]:
        return False
    # log2(jump) while the jump is a power of two: feasible() shifts instead of dividing
    jlog = st[t, S_JLOG]
    if jlog >= 0 and s > 1:
        if s == 2:
            jlog += 1
        elif s & (s - 1) == 0:
            while s > 1 << (jlog - st[t, S_JLOG]):
                jlog += 1
        else:
            jlog = -1
    ndown = st[t, S_NDOWN]
    if s > 1:
        ndown += 1
    cin = st[t, S_CIN]
    params = st[t, S_PARAMS]
    macs = st[t, S_MACS]
    nconv = st[t, S_NCONV]
    cout = layer_channels(op, choices[pos, c, F_C], cin, cons[C_WIDTH], cons[C_MAX_WIDTH], ndown)
    # peak activation memory (MCUNet): the layer's input and output are alive together; a max over layers
    peak = n * n * cin + n_out * n_out * cout
    if peak < st[t, S_PEAK]:
        peak = st[t, S_PEAK]
    if peak > cons[C_MAX_PEAK]:
        return False
    if op == OP_CONV:
        nconv += 1
        w = k * k * cin * cout
        params += w + cons[C_BIAS] * cout
        macs += w * n_out * n_out
        # a budget prunes with what the rest of the candidate must still add (0 where it may stop)
        if params + cons[NC + 2 * t + 2] > cons[C_MAX_PARAMS] or macs + cons[NC + 2 * t + 3] > cons[C_MAX_MACS]:
            return False
    st[t + 1, S_N] = n_out
    st[t + 1, S_RF] = rf_out
    st[t + 1, S_JUMP] = jump * s
    st[t + 1, S_PAD] = pad + pl * jump
    st[t + 1, S_CIN] = cout
    st[t + 1, S_PARAMS] = params
    st[t + 1, S_MACS] = macs
    st[t + 1, S_ERF] = st[t, S_ERF] + (jump * d) * (jump * d) * (k * k - 1)
    st[t + 1, S_NDOWN] = ndown
    st[t + 1, S_JLOG] = jlog
    st[t + 1, S_NCONV] = nconv
    st[t + 1, S_PEAK] = peak
    # too few positions left to reach the minimum number of convs
    return nconv + cons[C_DMAX] - (t + 1) >= cons[C_MIN_CONVS]


@register_jitable(_nrt=False)
def blocks_child(st, t, choices, cons, pos, c):
    """child() for a choice made of blocks (a stage of a NAS space, or a fixed stem or head): each block's
    spatial convs update the geometry as layers do, a residual block adds half its ERF increment (its
    output mixes the input and the branch equally, as the analyzer's add does), and each block's params
    and MACs are kernels.costs.block_costs. Blocks after a global pool cost their weights and leave the
    geometry (the candidate's map) as it was."""
    nb = choices[pos, c, F_NB]
    n = st[t, S_N]
    rf = st[t, S_RF]
    jump = st[t, S_JUMP]
    pad = st[t, S_PAD]
    cin = st[t, S_CIN]
    params = st[t, S_PARAMS]
    macs = st[t, S_MACS]
    erf = st[t, S_ERF]
    ndown = st[t, S_NDOWN]
    nconv = st[t, S_NCONV]
    peak = st[t, S_PEAK]
    pooled = False
    for b in range(nb):
        base = NF + b * BF
        op = choices[pos, c, base + BF_OP]
        k = choices[pos, c, base + BF_K]
        s = choices[pos, c, base + BF_S]
        d = choices[pos, c, base + BF_D]
        cout = choices[pos, c, base + BF_C]
        if op == B_GLOBAL_POOL:
            if not pooled:  # the map in, its channel means out
                local = block_peak(op, 1, 1, 1, 1, 0, cin, cin, n, 1, False)
                if local > peak:
                    peak = local
            pooled = True
            continue
        if op == B_MAXPOOL or op == B_AVGPOOL:
            cout = cin
        else:
            nconv += 1
        n_in = n
        if pooled:  # 1x1 convs and linear layers on the pooled vector
            p, m = block_costs(op, k, s, 1, 1, 0, choices[pos, c, base + BF_BN], choices[pos, c, base + BF_BIAS],
                               cin, cout, 1, 1)  # fmt: skip
        else:
            keff = d * (k - 1) + 1
            de = 0
            for layer in range(2 if op == B_BASIC else 1):  # a basic block's second conv has stride 1
                stride = s if layer == 0 else 1
                if cons[C_NO_UNPROD] != 0 and keff > 1:
                    if rf - pad >= cons[C_N] and (n - 1) * jump <= pad:
                        return False
                n_out, pl = conv_out(n, keff, stride, cons[C_PAD])
                if n_out < cons[C_MIN_OUT]:
                    return False
                rf += (keff - 1) * jump
                pad += pl * jump
                de += (jump * d) * (jump * d) * (k * k - 1)
                jump *= stride
                n = n_out
            if residual(op, s, cin, cout):
                de //= 2  # even: odd kernels only in residual blocks (k^2 - 1 is a multiple of 8)
            erf += de
            if s > 1:
                ndown += 1
            p, m = block_costs(op, k, s, choices[pos, c, base + BF_EN], choices[pos, c, base + BF_ED],
                               choices[pos, c, base + BF_SE], choices[pos, c, base + BF_BN],
                               choices[pos, c, base + BF_BIAS], cin, cout, n_in, n)  # fmt: skip
        local = block_peak(op, k, s, choices[pos, c, base + BF_EN], choices[pos, c, base + BF_ED],
                           choices[pos, c, base + BF_SE], cin, cout, n_in, n, pooled)  # fmt: skip
        if local > peak:
            peak = local
        params += p
        macs += m
        if rf > cons[C_RF_MAX] or params > cons[C_MAX_PARAMS] or macs > cons[C_MAX_MACS] or peak > cons[C_MAX_PEAK]:
            return False
        cin = cout
    if params + cons[NC + 2 * t + 2] > cons[C_MAX_PARAMS] or macs + cons[NC + 2 * t + 3] > cons[C_MAX_MACS]:
        return False
    jlog = 0
    while (1 << jlog) < jump:
        jlog += 1
    if (1 << jlog) != jump:
        jlog = -1
    st[t + 1, S_N] = n
    st[t + 1, S_RF] = rf
    st[t + 1, S_JUMP] = jump
    st[t + 1, S_PAD] = pad
    st[t + 1, S_CIN] = cin
    st[t + 1, S_PARAMS] = params
    st[t + 1, S_MACS] = macs
    st[t + 1, S_ERF] = erf
    st[t + 1, S_NDOWN] = ndown
    st[t + 1, S_JLOG] = jlog
    st[t + 1, S_NCONV] = nconv
    st[t + 1, S_PEAK] = peak
    return nconv + cons[C_DMAX] - (t + 1) >= cons[C_MIN_CONVS]


@register_jitable(_nrt=False)
def any_child(st, t, choices, cons, pos, c, blocks):
    """child() or blocks_child(), by the choice's kind (kept apart so that the layer path stays small).
    ``blocks`` None (a chain: see KernelArrays) compiles child() alone."""
    if blocks is not None and choices[pos, c, F_NB] > 0:
        return blocks_child(st, t, choices, cons, pos, c)
    return child(st, t, choices, cons, pos, c)


@register_jitable(_nrt=False)
def choice_step(choices, pos, c, n, mode):
    """(out size, rf per unit of jump, whole stride) of a choice on an input of size n, for the counting
    programme. A choice of blocks is in a 'same'-padded space (rfsweep.space.stages requires it), where the
    out size is ceil(n / stride) whatever the kernels; n_out 0 when it does not fit."""
    s = choices[pos, c, F_S]
    if choices[pos, c, F_NB] > 0:
        return (n + s - 1) // s, choices[pos, c, F_RFV], s
    k = choices[pos, c, F_K]
    keff = choices[pos, c, F_D] * (k - 1) + 1
    n_out, _ = conv_out(n, keff, s, mode)
    return n_out, keff - 1, s


@register_jitable(_nrt=False)
def jump_ok(jump, jumps, cons):
    """Some allowed final jump is a multiple of ``jump`` (strides only multiply it)."""
    nj = cons[C_NJUMPS]
    if nj == 0:
        return True
    for i in range(nj):
        if jumps[i] % jump == 0:
            return True
    return False


@register_jitable(_nrt=False)
def tap_ok(st, t, anchors, i):
    """The layer at depth ``t`` meets level ``i``'s rf window and ERF minimum."""
    rf = st[t, S_RF]
    return anchors[i, A_RF_LO] <= rf <= anchors[i, A_RF_HI] and st[t, S_ERF] >= anchors[i, A_ERF12]


@register_jitable(_nrt=False)
def levels_step(st, t, anchors, cons):
    """False when the child at depth t+1 (just built from node t) can no longer meet every level.

    Jumps only grow, so the layers at one jump form a run and the level's tap is the run's last layer:
    a child that leaves jump s for a larger one fixes node t as the tap of level s; a child that
    jumps over s leaves that level without a tap; and while at jump s the rf only grows.
    """
    j0 = st[t, S_JUMP]
    j1 = st[t + 1, S_JUMP]
    for i in range(cons[C_NLEVELS]):
        s = anchors[i, A_STRIDE]
        if j1 == s:
            if st[t + 1, S_RF] > anchors[i, A_RF_HI]:
                return False
        elif j0 < s < j1:
            return False
        elif j0 == s < j1:
            if t == 0 or not tap_ok(st, t, anchors, i):
                return False
    return True


@register_jitable(_nrt=False)
def survives(st, t, choices, jumps, anchors, cons):
    """The node at depth ``t`` is a candidate that meets every constraint (bounds already checked)."""
    if t < cons[C_DMIN]:
        return False
    if choices[t - 1, st[t, S_IDX], F_ROLE] & ROLE_HEAD == 0:
        return False
    if st[t, S_RF] < cons[C_RF_MIN] or st[t, S_NCONV] < cons[C_MIN_CONVS]:
        return False
    jump = st[t, S_JUMP]
    for i in range(cons[C_NLEVELS]):
        s = anchors[i, A_STRIDE]
        if s > jump or (s == jump and not tap_ok(st, t, anchors, i)):
            return False
    nj = cons[C_NJUMPS]
    if nj == 0:
        return True
    for i in range(nj):
        if jumps[i] == jump:
            return True
    return False


@register_jitable(_nrt=False)
def feasible(st, t, growth, cons):
    """Some completion of the node at depth ``t`` (itself included) can end inside the RF window.

    The layers after position ``t`` add ``jump_t x v`` to the rf, where ``v`` is one of the relative
    increments the remaining positions can produce. ``growth[t, 0]`` is the largest such ``v``;
    when ``growth`` has more columns, ``growth[t, 1 + x]`` counts the achievable ``v <= x`` (the node
    itself counts as v = 0 when t >= depth_min), which makes the test exact for the rf window.
    """
    rf = st[t, S_RF]
    jump = st[t, S_JUMP]
    if rf + jump * growth[t, 0] < cons[C_RF_MIN]:
        return False
    width = growth.shape[1]
    if width == 1:
        return True
    lo = cons[C_RF_MIN] - rf
    hi = cons[C_RF_MAX] - rf  # >= 0: child() refused rf above the maximum
    jlog = st[t, S_JLOG]
    if lo <= 0:
        lo = 0
    elif jlog >= 0:
        lo = (lo + jump - 1) >> jlog
    else:
        lo = (lo + jump - 1) // jump
    if jlog >= 0:
        hi = hi >> jlog
    else:
        hi = hi // jump
    if hi > width - 2:
        hi = width - 2
    if lo > hi:
        return False
    below = 0
    if lo > 0:
        below = growth[t, lo]
    return growth[t, 1 + hi] > below


@register_jitable(_nrt=False)
def emit(mode, st, t, out, out_ch, row, dep_off, anchors, cons):
    """Write the node at depth ``t`` as row ``row`` (fill mode only), with each level's tap."""
    if mode == 0:
        return
    for i in range(cons[C_NLEVELS]):
        u = t
        while st[u, S_JUMP] != anchors[i, A_STRIDE]:
            u -= 1
        out[NO + 3 * i, row] = u - 1
        out[NO + 3 * i + 1, row] = st[u, S_RF]
        out[NO + 3 * i + 2, row] = st[u, S_ERF]
    out[O_ARCH, row] = dep_off[t] + st[t, S_PID]
    out[O_DEPTH, row] = t
    out[O_RF, row] = st[t, S_RF]
    out[O_JUMP, row] = st[t, S_JUMP]
    out[O_PAD, row] = st[t, S_PAD]
    out[O_N, row] = st[t, S_N]
    out[O_PARAMS, row] = st[t, S_PARAMS]
    out[O_MACS, row] = st[t, S_MACS]
    out[O_ERF, row] = st[t, S_ERF]
    out[O_PEAK, row] = st[t, S_PEAK]
    out[O_PEAK_BYTES, row] = st[t, S_PEAK] * cons[C_ACT_BYTES]
    for p in range(t):
        out_ch[p, row] = st[p + 1, S_IDX]


@register_jitable(_nrt=False)
def walk_prefix(mode, prefix, plen, row0, K, st, out, out_ch):
    """Build the state of the node ``prefix[:plen]`` (rows 0..plen of ``st``) and count (mode 0) or write
    (mode 1) its owned ancestors and the node itself when they survive. Returns (survivors, whether
    anything below the node can survive). A task owns the ancestors whose remaining prefix choices are
    all 0: in depth-first order an ancestor comes just before its first child's subtree, so exactly one
    task (the leftmost below it) owns it. ``st[0, S_IDX]`` counts the candidates evaluated.
    """
    choices, nch, cons, jumps, anchors, growth, dep_off, blocks = K
    st[0, S_N] = cons[C_N]
    st[0, S_RF] = 1
    st[0, S_JUMP] = 1
    st[0, S_PAD] = 0
    st[0, S_CIN] = cons[C_CIN]
    st[0, S_PARAMS] = 0
    st[0, S_MACS] = 0
    st[0, S_ERF] = 0
    st[0, S_NDOWN] = 0
    st[0, S_PID] = 0
    st[0, S_JLOG] = 0
    st[0, S_NCONV] = 0
    st[0, S_PEAK] = 0
    count = 0
    dmin = cons[C_DMIN]
    for t in range(plen):
        c = prefix[t]
        owned = True
        for u in range(t + 1, plen):
            if prefix[u] != 0:
                owned = False
        if (owned or t + 1 == plen) and t + 1 >= dmin and choices[t, c, F_ROLE] & ROLE_HEAD:
            st[0, S_IDX] += 1
        if not any_child(st, t, choices, cons, t, c, blocks):
            return count, False
        st[t + 1, S_PID] = st[t, S_PID] * nch[t] + c
        st[t + 1, S_IDX] = c
        if not jump_ok(st[t + 1, S_JUMP], jumps, cons) or not levels_step(st, t, anchors, cons):
            return count, False
        if not feasible(st, t + 1, growth, cons):
            return count, False
        if t + 1 < plen and owned and survives(st, t + 1, choices, jumps, anchors, cons):
            emit(mode, st, t + 1, out, out_ch, row0 + count, dep_off, anchors, cons)
            count += 1
        if t + 1 < plen and choices[t, c, F_ROLE] & ROLE_BODY == 0:
            return count, False  # a head-only layer ends every candidate through it
    if survives(st, plen, choices, jumps, anchors, cons):
        emit(mode, st, plen, out, out_ch, row0 + count, dep_off, anchors, cons)
        count += 1
    below = plen < cons[C_DMAX] and (plen == 0 or choices[plen - 1, prefix[plen - 1], F_ROLE] & ROLE_BODY != 0)
    return count, below


@register_jitable(_nrt=False)
def walk_task(mode, prefix, plen, row0, K, ctl, st, out, out_ch):
    """Count (mode 0) or write (mode 1) the survivors of one task, in depth-first order.

    A task is the subtree under the node ``prefix[:plen]``, with the ancestors it owns (walk_prefix).
    Returns the number of survivors; ``row0`` is where the task's first row goes. On return
    ``st[0, S_IDX]`` holds the number of candidates the task evaluated (pruned subtrees are skipped).
    The walk gives up, returning what it has, once the host raises ``ctl[CTL_STOP]``, and stops at
    ``ctl[CTL_CAP]`` survivors when that is positive (the count is then a lower bound, the rows the first
    ones in depth-first order).
    """
    st[0, S_IDX] = 0  # row 0 has no choice: it counts the candidates this task evaluates
    if ctl[CTL_STOP] != 0:  # the tasks not yet started when the host stops: nothing to do
        return 0
    count, below = walk_prefix(mode, prefix, plen, row0, K, st, out, out_ch)
    if not below:
        return count
    return walk_below(mode, plen, row0, count, K, ctl, st, out, out_ch)


@register_jitable(_nrt=False)
def walk_below(mode, plen, row0, count, K, ctl, st, out, out_ch):
    """The second half of :func:`walk_task`: the subtree below the node whose state :func:`walk_prefix` left
    in rows 0..plen of ``st`` (which found ``count`` survivors and something below), from row
    ``row0 + count`` on. Returns the task's survivors; ``st[0, S_IDX]`` keeps counting the evaluated.
    (Apart so that kernels.cpu.run_tasks, which also counts by prefix and table lookup, compiles the
    prefix walk once.)"""
    cap = ctl[CTL_CAP]
    if cap > 0 and count >= cap:
        return count
    # the arrays as locals: the helpers take only those they read (a KernelArrays argument is a struct
    # of seven arrays passed by value to every call that LLVM does not inline; measured 2.5x slower)
    choices, nch, cons, jumps, anchors, growth, dep_off, blocks = K
    dmax = cons[C_DMAX]
    dmin = cons[C_DMIN]
    # depth-first walk below the prefix. The cursor ``cur`` is the next choice to try at ``depth``;
    # on the way back up it is recovered from the choice stored in the child's row (S_IDX).
    # (the child's steps are written out here, not in a helper taking six arrays: an array argument is
    # a struct passed by value, and the call cost 40% of the walk)
    depth = plen
    cur = 0
    tick = 0
    while True:
        tick += 1
        if tick == STOP_EVERY:
            tick = 0
            if ctl[CTL_STOP] != 0:
                return count
        if depth < dmax and cur < nch[depth]:
            c = cur
            cur += 1
            # choices are sorted by d(k-1): past the rf maximum, so is every later choice; at the last
            # position a choice below the minimum cannot be a survivor either
            rf_next = st[depth, S_RF] + choices[depth, c, F_RFV] * st[depth, S_JUMP]
            if rf_next > cons[C_RF_MAX]:
                cur = nch[depth]
                continue
            if depth + 1 == dmax and rf_next < cons[C_RF_MIN]:
                continue
            role = choices[depth, c, F_ROLE]
            if depth + 1 >= dmin and role & ROLE_HEAD:
                st[0, S_IDX] += 1
            if any_child(st, depth, choices, cons, depth, c, blocks):
                st[depth + 1, S_PID] = st[depth, S_PID] * nch[depth] + c
                st[depth + 1, S_IDX] = c
                if (
                    jump_ok(st[depth + 1, S_JUMP], jumps, cons)
                    and feasible(st, depth + 1, growth, cons)
                    and levels_step(st, depth, anchors, cons)
                ):
                    if survives(st, depth + 1, choices, jumps, anchors, cons):
                        emit(mode, st, depth + 1, out, out_ch, row0 + count, dep_off, anchors, cons)
                        count += 1
                        if count == cap:
                            return count
                    if role & ROLE_BODY:
                        depth += 1
                        cur = 0
        else:
            if depth == plen:
                break
            cur = st[depth, S_IDX] + 1
            depth -= 1
    return count
