"""Box statistics for anchor design: YOLOv5's best possible recall and anchors above threshold, k-means anchors.

Reimplemented in numpy after YOLOv5's ``utils/autoanchor.py``: for boxes ``wh`` and anchors ``k``,
``r = wh/k`` per side, ``x = min(r, 1/r)`` reduced by min over w and h, ``best = max over anchors``;
``BPR = mean(best > 1/thr)`` and ``AAT = mean over boxes of the number of anchors with x > 1/thr``,
``thr = 4``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rfsweep.core.errors import field_error

YOLO_THR = 4.0


def wh_array(array: Any, fieldname: str) -> np.ndarray:
    a = np.asarray(array, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0:
        raise field_error(fieldname, list(a.shape), "must be a non-empty array of [w, h] rows")
    return a


def yolo_metric(wh: Any, anchors: Any, thr: float = YOLO_THR) -> tuple[float, float]:
    """(BPR, AAT) of boxes ``wh`` (N x 2) against anchors (K x 2), as YOLOv5's check_anchors.

    ``r = wh/anchor`` per side, ``x = min(r, 1/r).min(over w, h)``, ``best = x.max(over anchors)``;
    BPR is the share of boxes with ``best > 1/thr``, AAT the mean number of anchors with ``x > 1/thr``.
    """
    wh, k = wh_array(wh, "boxes"), wh_array(anchors, "anchors")
    x = _ratio_metric(wh, k)
    best = x.max(1)
    return float((best > 1 / thr).mean()), float((x > 1 / thr).sum(1).mean())


def _ratio_metric(wh: np.ndarray, k: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = wh[:, None, :] / k[None, :, :]
        x = np.minimum(r, 1.0 / r).min(2)
    return np.nan_to_num(x, nan=0.0)


def _kmeans(
    points: np.ndarray, n: int, rng: np.random.Generator, restarts: int, iters: int = 100, thresh: float = 1e-5
) -> np.ndarray:
    """Lloyd's k-means from ``restarts`` random initialisations (distinct observations), best distortion."""
    best, best_d = None, np.inf
    for _ in range(restarts):
        c = points[rng.choice(len(points), n, replace=False)].copy()
        prev = np.inf
        for _ in range(iters):
            d2 = ((points[:, None, :] - c[None, :, :]) ** 2).sum(2)
            lab = d2.argmin(1)
            dist = float(np.sqrt(d2[np.arange(len(points)), lab]).mean())
            for j in range(n):
                sel = lab == j
                if sel.any():
                    c[j] = points[sel].mean(0)
            if prev - dist <= thresh:
                break
            prev = dist
        if dist < best_d:
            best, best_d = c.copy(), dist
    return best


def kmeans_anchors(
    wh: Any, n: int, thr: float = YOLO_THR, generations: int = 0, seed: int = 0, restarts: int = 10
) -> np.ndarray:
    """``n`` anchors ``[w, h]`` for boxes ``wh``, sorted by area, as YOLOv5's kmean_anchors does.

    Boxes with both sides below 2 px are left out of the fit; k-means runs on whitened ``w, h`` (divided
    by their standard deviations), then, with ``generations > 0``, a genetic evolution mutates all
    anchors by factors ``clip(1 + N(0, 0.1·u), 0.3, 3)`` (each entry with probability 0.9) and keeps a
    mutation when it raises the fitness ``mean(best·(best > 1/thr))``. Deterministic for a given seed.
    """
    wh0 = wh_array(wh, "boxes")
    pts = wh0[(wh0 >= 2.0).any(1)]
    if len(pts) == 0:
        raise field_error("boxes", len(wh0), "no box has a side of 2 px or more; nothing to fit anchors to")
    distinct = np.unique(pts, axis=0)
    if n < 1:
        raise field_error("kmeans anchors", n, "need at least one anchor")
    n = min(n, len(distinct))
    rng = np.random.default_rng(seed)
    s = pts.std(0)
    s[s == 0] = 1.0
    k = _kmeans(pts / s, n, rng, restarts) * s
    inv = 1.0 / thr

    def fitness(anchors):
        best = _ratio_metric(pts, anchors).max(1)
        return float((best * (best > inv)).mean())

    f = fitness(k)
    for _ in range(generations):
        v = np.ones(k.shape)
        while (v == 1).all():
            v = ((rng.random(k.shape) < 0.9) * rng.random() * rng.standard_normal(k.shape) * 0.1 + 1).clip(0.3, 3.0)
        kg = (k * v).clip(min=2.0)
        fg = fitness(kg)
        if fg > f:
            f, k = fg, kg
    return k[np.argsort(k.prod(1), kind="stable")]


def read_boxes(path: str | Path) -> np.ndarray:
    """Box sizes from a CSV or Parquet file with columns ``w`` and ``h`` (pixels of the network input)."""
    import pandas as pd

    p = Path(path)
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p)
    except FileNotFoundError:
        raise field_error("boxes", str(p), "no such file") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise field_error(
            "boxes",
            str(p),
            f"cannot be read as {'Parquet' if p.suffix.lower() in ('.parquet', '.pq') else 'CSV'}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
        ) from None
    missing = [c for c in ("w", "h") if c not in df.columns]
    if missing:
        raise field_error(
            "boxes", str(p), f"needs columns w and h (pixels); it has {', '.join(map(str, df.columns)) or 'none'}"
        )
    if len(df) == 0:
        raise field_error("boxes", str(p), "has no rows")
    try:
        wh = df[["w", "h"]].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise field_error("boxes", str(p), "columns w and h must be numbers") from None
    bad = ~(np.isfinite(wh).all(1) & (wh > 0).all(1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise field_error(
            "boxes", str(p), f"row {i} has w={wh[i, 0]:g}, h={wh[i, 1]:g}: sizes must be positive numbers"
        )
    return wh
