"""CUDA kernels (numba.cuda): the same depth-first task walk as kernels/cpu.py, one GPU thread per subtask;
and the anchor search's configuration scoring (kernels/anchor_match.py's score_configs), one thread a
configuration.

This is the only module that imports ``numba.cuda``; it is imported only when the CUDA backend is
picked (``rfsweep.engine.device.backend``), never on the CPU path.

``run_tasks`` has the signature and the results of ``kernels.cpu.run_tasks``. The engine hands it a few
thousand tasks (prefixes of the depth-first tree), far too few threads for a GPU, so each task is cut
here, on the device, into its descendants ``lev`` levels further down (``lev`` chosen per call so that
there are about ``SUB_TARGET`` subtasks). Cutting a task into its children in order yields exactly the
task's rows in the same order (a child-0 subtask owns the ancestors the task owned, see
``layer_math.walk_task``), so:

* mode 0: every subtask walks its subtree with ``walk_task`` and adds its survivors (and candidates
  evaluated, ``st[0, S_IDX]``) to its task's totals with an atomic add; the totals come back as the
  counts, the evaluated numbers into ``rows0`` as the CPU kernel does.
* mode 1: count-then-fill inside the call: count every subtask, turn the counts into row offsets
  (one thread per task scans its subtasks, starting at the task's ``rows0``), and fill. The rows are
  those of the CPU kernel, row for row.

Device memory is bounded: subtasks run in batches of at most ``SUB_BATCH``; the largest buffers are the
slab the engine asks for (``out``/``out_ch``, <= ~1M rows) and the task list.
The per-layer arithmetic is the ``register_jitable`` code of layer_math, compiled for the GPU; no
formula is repeated here. Compiled kernels are kept per process by their dispatchers (a second or two
to compile, once). Not on disk: numba's cache checks only this file, so an edit of layer_math.py would
leave a stale kernel behind.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda, int64
from numba.extending import register_jitable

from rfsweep.kernels.layer_math import C_DMAX, CTL_STOP, MAX_DEPTH, NS, S_IDX, KernelArrays, walk_task

SIMULATED = bool(config.ENABLE_CUDASIM)
# Host-side tuning only (never read inside a kernel, so changing them needs no recompilation).
# Under the simulator (~6,000 threads/s) the same code paths run with tiny numbers.
SUB_TARGET = 64 if SIMULATED else 1 << 21  # cut tasks until a call has about this many subtasks
SUB_BATCH = 256 if SIMULATED else 1 << 22  # most subtasks per launch (bounds the per-subtask buffers)
THREADS_PER_BLOCK = 32 if SIMULATED else 128
ST_ROWS = MAX_DEPTH + 1  # local array shapes must be literal globals: an expression in the call does not type


@register_jitable
def _parent(sub_off, nparent, gid):
    """Largest p < nparent with sub_off[p] <= gid (sub_off is non-decreasing, sub_off[0] = 0)."""
    lo = 0
    hi = nparent - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sub_off[mid] <= gid:
            lo = mid
        else:
            hi = mid - 1
    return lo


@register_jitable
def _subtask(tasks, plens, nch, p, lev, dmax, k, pre):
    """Writes subtask ``k`` of task ``p`` (``lev`` more levels, mixed radix) into ``pre``; returns its length."""
    plen = plens[p]
    e = lev
    if plen + e > dmax:
        e = dmax - plen
    for t in range(plen):
        pre[t] = tasks[p, t]
    j = plen + e - 1
    while j >= plen:
        r = nch[j]
        pre[j] = k % r
        k //= r
        j -= 1
    return plen + e


@cuda.jit
def _count_kernel(
    tasks,
    plens,
    p0,
    nparent,
    sub_off,
    lev,
    nsub,
    counts,
    evals,
    sub_counts,
    choices,
    nch,
    cons,
    jumps,
    anchors,
    growth,
    dep_off,
    ctl,
    out,
    out_ch,
):
    gid = cuda.grid(1)
    if gid >= nsub:
        return
    K = KernelArrays(choices, nch, cons, jumps, anchors, growth, dep_off, True)  # both paths: see run_tasks
    p = _parent(sub_off, nparent, gid)
    pre = cuda.local.array(MAX_DEPTH, int64)
    st = cuda.local.array((ST_ROWS, NS), int64)
    plen = _subtask(tasks, plens, nch, p0 + p, lev, cons[C_DMAX], gid - sub_off[p], pre)
    c = walk_task(0, pre, plen, 0, K, ctl, st, out, out_ch)
    sub_counts[gid] = c
    cuda.atomic.add(counts, p0 + p, c)
    cuda.atomic.add(evals, p0 + p, st[0, S_IDX])


@cuda.jit
def _offsets_kernel(rows0, p0, nparent, sub_off, sub_counts, sub_rows):
    """One thread per task: its subtasks' first rows, from the task's first row and their counts."""
    p = cuda.grid(1)
    if p >= nparent:
        return
    r = rows0[p0 + p]
    for g in range(sub_off[p], sub_off[p + 1]):
        sub_rows[g] = r
        r += sub_counts[g]


@cuda.jit
def _fill_kernel(
    tasks,
    plens,
    p0,
    nparent,
    sub_off,
    lev,
    nsub,
    sub_rows,
    sub_counts,
    choices,
    nch,
    cons,
    jumps,
    anchors,
    growth,
    dep_off,
    ctl,
    out,
    out_ch,
):
    gid = cuda.grid(1)
    if gid >= nsub:
        return
    if sub_counts[gid] == 0:
        return
    K = KernelArrays(choices, nch, cons, jumps, anchors, growth, dep_off, True)  # both paths: see run_tasks
    p = _parent(sub_off, nparent, gid)
    pre = cuda.local.array(MAX_DEPTH, int64)
    st = cuda.local.array((ST_ROWS, NS), int64)
    plen = _subtask(tasks, plens, nch, p0 + p, lev, cons[C_DMAX], gid - sub_off[p], pre)
    walk_task(1, pre, plen, sub_rows[gid], K, ctl, st, out, out_ch)


def _fans(plens: np.ndarray, nch: np.ndarray, dmax: int, lev: int) -> np.ndarray:
    """Subtasks per task when cut ``lev`` levels further (fewer where the tree ends)."""
    fans = np.ones(len(plens), np.int64)
    for p in np.unique(plens):
        p = int(p)
        fans[plens == p] = math.prod(int(r) for r in nch[p : min(p + lev, dmax)])
    return fans


def plan(
    plens: np.ndarray, nch: np.ndarray, dmax: int, target: int | None = None, batch: int | None = None
) -> tuple[int, np.ndarray]:
    """(lev, fans): cut every task ``lev`` levels deeper, until at least about ``target`` subtasks
    in all (not many times more), no task with more than ``batch`` subtasks (one task fits a launch)."""
    target = SUB_TARGET if target is None else target
    batch = SUB_BATCH if batch is None else batch
    lev = 0
    fans = np.ones(len(plens), np.int64)
    deepest = dmax - int(plens.min()) if len(plens) else 0
    while lev < deepest and int(fans.sum()) < target:
        nxt = _fans(plens, nch, dmax, lev + 1)
        if int(nxt.max()) > batch:
            break
        if int(nxt.sum()) > 8 * target and int(fans.sum()) >= target // 16:
            break  # close enough: a further cut would mostly replay prefixes
        lev, fans = lev + 1, nxt
    return lev, fans


def _groups(fans: np.ndarray, batch: int):
    """Consecutive task ranges [p0, p1) of at most ``batch`` subtasks (at least one task each)."""
    cum = np.concatenate(([0], np.cumsum(fans)))
    n = len(fans)
    p0 = 0
    while p0 < n:
        p1 = int(np.searchsorted(cum, cum[p0] + batch, side="right")) - 1
        p1 = min(max(p1, p0 + 1), n)
        yield p0, p1, cum[p0 : p1 + 1] - cum[p0]
        p0 = p1


def _blocks(n: int) -> int:
    return (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK


def _rows(a: np.ndarray, mode: int) -> np.ndarray:
    """The (fields x rows) slab to copy to the device: all of it in mode 1, one column in mode 0."""
    if mode == 1 and a.shape[1] > 0:
        return a
    return a[:, :1] if a.shape[1] > 0 else np.zeros(a.shape[:1] + (1,), a.dtype)


def _dev(a: np.ndarray, dtype) -> object:
    return cuda.to_device(np.ascontiguousarray(a, dtype=dtype))


def run_tasks(mode, tasks, plens, rows0, K, ctl, counts, evals, out, out_ch):
    """Walk every task's subtree on the GPU; as ``kernels.cpu.run_tasks`` (same arguments, same results).

    ``counts[i]`` and ``evals[i]`` receive task ``i``'s survivors and evaluated candidates; mode 1 also
    writes task ``i``'s rows at ``rows0[i]..`` of ``out``/``out_ch`` (host arrays, copied back). The
    host's stop flag ``ctl`` is looked at between launches (a launch itself runs to its end).
    The kernels take the arrays of ``K`` and always compile the walk with both paths (``K.blocks`` True):
    they are compiled once per process and never cached, so a chain's specialisation would save little.
    """
    ntask = int(tasks.shape[0])
    if ntask == 0:
        return
    dmax = int(K.cons[C_DMAX])
    if dmax > MAX_DEPTH:
        raise ValueError(f"depth {dmax} above MAX_DEPTH {MAX_DEPTH}")
    plens_h = np.ascontiguousarray(plens, np.int64)
    lev, fans = plan(plens_h, np.asarray(K.nch), dmax)
    batch = max(SUB_BATCH, int(fans.max()))

    d_tasks = _dev(tasks, np.int64)
    d_plens = cuda.to_device(plens_h)
    d_rows0 = _dev(rows0, np.int64)
    d_counts = cuda.to_device(np.zeros(ntask, np.int64))
    d_evals = cuda.to_device(np.zeros(ntask, np.int64))
    d_arrays = tuple(_dev(a, np.int64) for a in K[:-1])  # the arrays: every field but the blocks flag
    d_ctl = cuda.to_device(np.zeros_like(ctl))  # the walks never see the host's flag: launches are bounded
    # mode 1: copies of the host slabs, so rows no task writes come back unchanged, as on the CPU;
    # mode 0 writes no row: one row stands in (a device array is never empty)
    d_out = _dev(_rows(out, mode), np.int64)
    d_ch = _dev(_rows(out_ch, mode), np.int16)
    biggest = min(int(fans.sum()), batch)
    d_sub_counts = cuda.device_array(biggest, np.int64)
    d_sub_rows = cuda.device_array(biggest, np.int64) if mode == 1 else None

    for p0, p1, off in _groups(fans, batch):
        if ctl[CTL_STOP] != 0:
            return
        nparent = p1 - p0
        nsub = int(off[-1])
        d_off = cuda.to_device(np.ascontiguousarray(off, np.int64))
        head = (d_tasks, d_plens, p0, nparent, d_off, lev, nsub)
        _count_kernel[_blocks(nsub), THREADS_PER_BLOCK](
            *head, d_counts, d_evals, d_sub_counts, *d_arrays, d_ctl, d_out, d_ch
        )
        if mode == 1:
            _offsets_kernel[_blocks(nparent), THREADS_PER_BLOCK](d_rows0, p0, nparent, d_off, d_sub_counts, d_sub_rows)
            _fill_kernel[_blocks(nsub), THREADS_PER_BLOCK](
                *head, d_sub_rows, d_sub_counts, *d_arrays, d_ctl, d_out, d_ch
            )

    d_counts.copy_to_host(counts)
    d_evals.copy_to_host(evals)
    if mode == 1 and out.shape[1] > 0:
        d_out.copy_to_host(out)
        d_ch.copy_to_host(out_ch)


# ---------------------------------------------------------------- anchor search: configurations


ANCHOR_MAX_LEVELS = 8  # local arrays of the anchor kernel; the presets have 5 or 6 levels
_ANCHOR_X = 9  # ANCHOR_MAX_LEVELS + 1 as a plain constant: a local array's size must be a literal


@cuda.jit
def _anchor_kernel(best, pos, anchors, valid, after, n_index, n_options, pair, tasks, offsets, size_class, fg, total,
                   counts, sums, choice):  # fmt: skip
    """One configuration a thread: its task by binary search on ``offsets``, its choices unranked from the
    rank inside the task (the order of kernels.anchor_match.score_configs: index major, option minor, level
    by level), then one pass over the boxes."""
    gid = cuda.grid(1)
    if gid >= total:
        return
    L = best.shape[0]
    nb = best.shape[2]
    lo, hi = 0, tasks.shape[0] - 1
    while lo < hi:  # the last task whose offset is <= gid
        mid = (lo + hi + 1) // 2
        if offsets[mid] <= gid:
            lo = mid
        else:
            hi = mid - 1
    t = lo
    q = gid - offsets[t]
    x = cuda.local.array(_ANCHOR_X, int64)
    rows = cuda.local.array(ANCHOR_MAX_LEVELS, int64)
    x[0] = tasks[t, 0]
    if pair:
        x[1] = tasks[t, 1]
    rows[0] = ((x[0] * n_index + x[1]) if pair else x[0]) * n_options + tasks[t, 2]
    for lvl in range(1, L):
        p = lvl + 1 if pair else lvl
        xi = x[p - 1] + 1
        o = 0
        row = 0
        while xi < n_index:  # the choices in order (index major, option minor), each holding after[lvl, xi] rows
            found = False
            for o in range(n_options):
                row = ((x[lvl] * n_index + xi) if pair else xi) * n_options + o
                if valid[lvl, row]:
                    block = after[lvl, xi]
                    if q < block:
                        found = True
                        break
                    q -= block
            if found:
                break
            xi += 1
        x[p] = xi
        rows[lvl] = row
    n50 = 0
    n70 = 0
    c0 = 0
    c1 = 0
    c2 = 0
    s = 0.0
    for b in range(nb):
        m = best[0, rows[0], b]
        for lvl in range(1, L):
            v = best[lvl, rows[lvl], b]
            if v > m:
                m = v
        s += m
        if m >= 0.5:
            n50 += 1
        if m >= 0.7:
            n70 += 1
        if m >= fg:
            c = size_class[b]
            if c == 0:
                c0 += 1
            elif c == 1:
                c1 += 1
            else:
                c2 += 1
    ps = 0
    an = 0.0
    for lvl in range(L):
        ps += pos[lvl, rows[lvl]]
        an += anchors[lvl, rows[lvl]]
        choice[gid, lvl] = rows[lvl]
    counts[gid, 0] = n50
    counts[gid, 1] = n70
    counts[gid, 2] = c0
    counts[gid, 3] = c1
    counts[gid, 4] = c2
    sums[gid, 0] = s
    sums[gid, 1] = ps
    sums[gid, 2] = an


def score_configs(best, pos, anchors, valid, after, n_index, n_options, pair, tasks, offsets, size_class, fg, counts,
                  sums, choice, stop):  # fmt: skip
    """kernels.anchor_match.score_configs on the GPU: the same arguments and the same results, row for row
    (each configuration adds its boxes' best IoUs in box order, as the CPU does)."""
    L = best.shape[0]
    if L > ANCHOR_MAX_LEVELS:
        raise ValueError(f"the CUDA anchor kernel takes at most {ANCHOR_MAX_LEVELS} levels")
    total = len(counts)
    if total == 0 or stop[0]:
        return
    d_counts = cuda.device_array_like(counts)
    d_sums = cuda.device_array_like(sums)
    d_choice = cuda.device_array_like(choice)
    _anchor_kernel[_blocks(total), THREADS_PER_BLOCK](
        cuda.to_device(best), cuda.to_device(pos), cuda.to_device(anchors), cuda.to_device(valid),
        cuda.to_device(after), n_index, n_options, pair, cuda.to_device(tasks), cuda.to_device(offsets),
        cuda.to_device(size_class), fg, total, d_counts, d_sums, d_choice,
    )  # fmt: skip
    d_counts.copy_to_host(counts)
    d_sums.copy_to_host(sums)
    d_choice.copy_to_host(choice)
