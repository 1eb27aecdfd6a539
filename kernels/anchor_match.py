"""Numba kernels of the anchor search: each box's best IoU with, and number of positives among, the anchors of
one shape on one level's grid; then every configuration of a space of shapes, scored over all boxes.

IoU is torchvision's box_iou in float64: area_a + area_b - inter with inter = clamp(rb - lt, 0) products.

Why one shape costs O(1) a box on a grid (AnchorGenerator): an anchor of fixed size at centre (cx, cy)
overlaps a box by ox(cx) x oy(cy), ox non-increasing in |cx - box centre| (a trapezoid), and with the
anchor's area fixed IoU is increasing in the overlap. So the best IoU is at the grid centres nearest the
box centre (the three nearest per axis are evaluated, which covers rounding), and the anchors above a
threshold are a contiguous window around it: walk out row by row from the best one and stop at the first
that fails. Rounding is monotone, so the floating-point values keep both properties and the counts are
exact. SSD's default boxes are placed in float32 with per-cell rounding (their areas differ by ulps), so
their grids (at most 38 x 38) are evaluated cell by cell.

The configurations are walked depth first, level by level, keeping each level's running maximum of the
best IoU per box: a configuration costs one pass over the boxes at its last level.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _iou(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2, barea):
    aarea = (ax2 - ax1) * (ay2 - ay1)
    w = min(ax2, bx2) - max(ax1, bx1)
    h = min(ay2, by2) - max(ay1, by1)
    if w < 0.0:
        w = 0.0
    if h < 0.0:
        h = 0.0
    inter = w * h
    return inter / (barea + aarea - inter)


@njit(cache=True, inline="always")
def _nearest(c, stride, n):
    """The cell among the three nearest to c (in units of stride) with the largest overlap is found by the
    caller; this is the floor, clamped into [0, n - 1]."""
    i = int(np.floor(c / stride))
    if i < 0:
        i = 0
    if i > n - 1:
        i = n - 1
    return i


@njit(cache=True, parallel=True, nogil=True)
def grid_shape_tables(boxes, gh, gw, sh, sw, half_a, half_b, thr, best, npos):
    """best[n, k], npos[n, k]: box n's best IoU with the anchors of shape k (half extents half_a[k] along x,
    half_b[k] along y) centred at (i sw[n], j sh[n]), i < gw[n], j < gh[n]; and how many have IoU >= thr."""
    n_boxes = boxes.shape[0]
    n_shapes = half_a.shape[0]
    for n in prange(n_boxes):
        bx1, by1, bx2, by2 = boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3]
        barea = (bx2 - bx1) * (by2 - by1)
        sx, sy, nx, ny = float(sw[n]), float(sh[n]), gw[n], gh[n]
        for k in range(n_shapes):
            a, b = half_a[k], half_b[k]
            # the best column and row: the largest overlap among the three cells nearest the box centre
            i0 = _nearest(0.5 * (bx1 + bx2), sx, nx)
            bi, box_ = i0, -1.0
            for i in range(max(i0 - 1, 0), min(i0 + 2, nx)):
                c = i * sx
                o = min(c + a, bx2) - max(c - a, bx1)
                if o > box_:
                    box_, bi = o, i
            j0 = _nearest(0.5 * (by1 + by2), sy, ny)
            bj, boy = j0, -1.0
            for j in range(max(j0 - 1, 0), min(j0 + 2, ny)):
                c = j * sy
                o = min(c + b, by2) - max(c - b, by1)
                if o > boy:
                    boy, bj = o, j
            cx, cy = bi * sx, bj * sy
            top = _iou(cx - a, cy - b, cx + a, cy + b, bx1, by1, bx2, by2, barea)
            best[n, k] = top
            count = 0
            if top >= thr:
                for d in (1, -1):  # rows from the best one outward (down, then up)
                    j = bj if d == 1 else bj - 1
                    while 0 <= j < ny:
                        cy = j * sy
                        if _iou(cx - a, cy - b, cx + a, cy + b, bx1, by1, bx2, by2, barea) < thr:
                            break  # the row's best anchor fails: every further row fails too
                        i = bi
                        while i < nx:
                            c = i * sx
                            if _iou(c - a, cy - b, c + a, cy + b, bx1, by1, bx2, by2, barea) < thr:
                                break
                            count += 1
                            i += 1
                        i = bi - 1
                        while i >= 0:
                            c = i * sx
                            if _iou(c - a, cy - b, c + a, cy + b, bx1, by1, bx2, by2, barea) < thr:
                                break
                            count += 1
                            i -= 1
                        j += d
            npos[n, k] = count


@njit(cache=True, parallel=True, nogil=True)
def cell_shape_tables(boxes, xlo, xhi, ylo, yhi, thr, best, npos):
    """As grid_shape_tables for boxes placed cell by cell (SSD): shape k's anchors span [xlo[k, i], xhi[k, i]]
    x [ylo[k, j], yhi[k, j]] over the cells (i, j) of a square grid."""
    n_boxes = boxes.shape[0]
    n_shapes, g = xlo.shape
    for n in prange(n_boxes):
        bx1, by1, bx2, by2 = boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3]
        barea = (bx2 - bx1) * (by2 - by1)
        for k in range(n_shapes):
            top = 0.0
            count = 0
            for j in range(g):
                for i in range(g):
                    v = _iou(xlo[k, i], ylo[k, j], xhi[k, i], yhi[k, j], bx1, by1, bx2, by2, barea)
                    if v > top:
                        top = v
                    if v >= thr:
                        count += 1
            best[n, k] = top
            npos[n, k] = count


@njit(cache=True, inline="always")
def _leaf(prev, row, size_class, fg, out, r):
    """Score one configuration: the best IoU of each box is max(prev, row); out[r] gets the counts."""
    n50 = 0
    n70 = 0
    s = 0.0
    c0 = 0
    c1 = 0
    c2 = 0
    for b in range(row.shape[0]):
        m = prev[b] if prev[b] > row[b] else row[b]
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
    out[r, 0] = n50
    out[r, 1] = n70
    out[r, 2] = c0
    out[r, 3] = c1
    out[r, 4] = c2
    return s


@njit(cache=True, parallel=True, nogil=True)
def score_configs(
    best, pos, anchors, valid, after, n_index, n_options, pair, tasks, offsets, size_class, fg, counts, sums,
    choice, stop,
):  # fmt: skip
    """Every configuration below each task, depth first, in order.

    A configuration picks, per level l, an index x_l into the candidate values (strictly increasing over the
    levels) and an option o_l < n_options (a ratio subset). Level l's row of the tables is
    x_l * n_options + o_l, or with ``pair`` (SSD: a level's boxes depend on s_l and s_(l+1)) the sequence has
    one index more and the row is (x_l * n_index + x_(l+1)) * n_options + o_l. ``best[l, row, box]`` is the
    best IoU, ``pos[l, row]`` the positives summed over the boxes, ``anchors[l, row]`` the anchors a mean
    image has. A task fixes x_0 (and x_1 with ``pair``) and o_0; ``offsets[t]`` is where its rows go.

    Out, per configuration r: counts[r] = (boxes with best IoU >= 0.5, >= 0.7, >= fg small, medium, large),
    sums[r] = (sum of best IoUs, positives, anchors per image), choice[r] = the row of each level.
    ``stop[0]`` set: every task ends at its next configuration.
    """
    L = best.shape[0]
    nb = best.shape[2]
    Q = L + 1 if pair else L
    n_tasks = tasks.shape[0]
    for t in prange(n_tasks):  # scheduled dynamically (rfsweep.engine.steer.call): tasks differ in size
        if stop[0]:
            continue
        run = np.empty((L, nb), np.float64)  # running maximum after each level
        x = np.empty(Q, np.int64)
        o = np.empty(L, np.int64)
        rows = np.empty(L, np.int64)
        psum = np.empty(L + 1, np.int64)
        asum = np.empty(L + 1, np.float64)
        zeros = np.zeros(nb, np.float64)
        cur = np.empty(L, np.int64)  # the flattened choice (index * n_options + option) at each level
        r = offsets[t]
        x[0] = tasks[t, 0]
        if pair:
            x[1] = tasks[t, 1]
        o[0] = tasks[t, 2]
        # level 0 is fixed by the task
        rows[0] = ((x[0] * n_index + x[1]) if pair else x[0]) * n_options + o[0]
        run[0, :] = best[0, rows[0], :]
        psum[0] = 0
        asum[0] = 0.0
        psum[1] = pos[0, rows[0]]
        asum[1] = anchors[0, rows[0]]
        if L == 1:
            sums[r, 0] = _leaf(zeros, best[0, rows[0]], size_class, fg, counts, r)
            sums[r, 1] = psum[1]
            sums[r, 2] = asum[1]
            choice[r, 0] = rows[0]
            continue
        # iterative depth first over levels 1..L-1: at level l choose (x[l + pair], o[l])
        lvl = 1
        cur[1] = -1
        while lvl >= 1:
            if stop[0]:
                break
            cur[lvl] += 1
            xi = cur[lvl] // n_options
            oi = cur[lvl] % n_options
            pos_x = lvl + 1 if pair else lvl  # the index this level adds
            # indices strictly increase; a choice is taken when allowed and some completion follows it
            lo = x[pos_x - 1] + 1
            if xi < lo:
                cur[lvl] = lo * n_options
                xi, oi = lo, 0
            if xi > n_index - (Q - pos_x):
                lvl -= 1
                continue
            if pair:
                row = (x[lvl] * n_index + xi) * n_options + oi
            else:
                row = xi * n_options + oi
            if not valid[lvl, row] or after[lvl, xi] == 0:
                continue
            x[pos_x] = xi
            o[lvl] = oi
            rows[lvl] = row
            psum[lvl + 1] = psum[lvl] + pos[lvl, row]
            asum[lvl + 1] = asum[lvl] + anchors[lvl, row]
            if lvl == L - 1:
                s = _leaf(run[lvl - 1], best[lvl, row], size_class, fg, counts, r)
                sums[r, 0] = s
                sums[r, 1] = psum[L]
                sums[r, 2] = asum[L]
                for q in range(L):
                    choice[r, q] = rows[q]
                r += 1
            else:
                prev = run[lvl - 1]
                nxt = best[lvl, row]
                for b in range(nb):
                    run[lvl, b] = prev[b] if prev[b] > nxt[b] else nxt[b]
                lvl += 1
                cur[lvl] = -1
