"""Anchor search: every anchor configuration of a space scored exactly over a dataset's boxes, matched the way
torchvision's Faster R-CNN, RetinaNet and SSD match them (see :mod:`rfsweep.anchors.detectors`).

A configuration picks one base size per level (strictly increasing with the level; SSD: one scale per level
and the last), the aspect ratios (a subset of the candidates, shared by all levels or chosen per level) and,
for AnchorGenerator presets, the scales per octave. Its statistics, over all boxes (none sampled):

* ``recall_iou50``, ``recall_iou70``: the share of boxes whose best IoU with any anchor of their image is
  >= 0.5 / >= 0.7;
* ``best_iou_mean``: the mean of that best IoU;
* ``positives_per_gt``: the mean number of anchors with IoU >= the preset's foreground threshold;
* ``anchors_per_image``: anchors in a mean image;
* ``recall_small``, ``recall_medium``, ``recall_large``: the share of COCO's small / medium / large boxes
  (area of the original box < 32^2, < 96^2, the rest) whose best IoU reaches the foreground threshold.

How: per level, a table of each box's best IoU and positives for every anchor shape the space can use
(:func:`rfsweep.kernels.anchor_match.grid_shape_tables`), folded into one row per level option (the max and
the sum over the option's shapes); then the configurations, depth first (``score_configs``).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rfsweep.anchors import detectors as det
from rfsweep.anchors.datasets import BoxSet, read_boxes
from rfsweep.core.errors import field_error
from rfsweep.engine import steer
from rfsweep.space.settings import parse_int

STATS = (
    "recall_iou50",
    "recall_iou70",
    "best_iou_mean",
    "positives_per_gt",
    "anchors_per_image",
    "recall_small",
    "recall_medium",
    "recall_large",
)
# the direction of each statistic as an objective: +1 larger is better
DIRECTION = {s: 1 for s in STATS} | {"anchors_per_image": -1}
CHUNK_CONFIGS = 1 << 20  # configurations scored between two hand-overs to the selection / the writer


# ---------------------------------------------------------------- the space


@dataclass
class AnchorSpace:
    """The configurations of one detector preset over candidate values.

    ``values``: candidate base sizes (grid presets) or scales (ssd300), sorted; ``ratios``: candidate aspect
    ratios (h / w; for ssd300 the extra ratios of DefaultBoxGenerator); ``ratio_count``: how many a
    configuration takes; ``per_level_ratios``: each level chooses its own subset; ``octaves``: the
    scales-per-octave options (grid presets). ``default_ratios``: ssd300 without ratio options keeps its
    per-level defaults.
    """

    preset: det.Preset
    values: tuple
    ratios: tuple[float, ...]
    ratio_count: int
    per_level_ratios: bool = False
    octaves: tuple[int, ...] = (1,)
    default_ratios: bool = False
    limits: Limits | None = None
    subsets: list[tuple[float, ...]] = field(init=False)

    def __post_init__(self):
        self.subsets = [()] if self.default_ratios else list(itertools.combinations(self.ratios, self.ratio_count))
        self._structures: dict = {}

    @property
    def levels(self) -> int:
        return self.preset.levels

    @property
    def pair(self) -> bool:
        return self.preset.kind == "ssd"

    @property
    def positions(self) -> int:
        """Indices into ``values`` a configuration takes (SSD: one more than levels)."""
        return self.levels + 1 if self.pair else self.levels

    def globals(self) -> list[tuple[int, tuple | None]]:
        """(scales per octave, shared ratio subset or None) of each outer option, in order."""
        if self.pair or self.per_level_ratios:
            return [(n, None) for n in self.octaves]
        return [(n, s) for n in self.octaves for s in self.subsets]

    @property
    def options(self) -> int:
        """Ratio options a level chooses among, below one outer option."""
        return len(self.subsets) if (self.pair or self.per_level_ratios) else 1

    @property
    def rows(self) -> int:
        """Rows of a level's tables: (index, option), or with a pair of indices (index, next index, option)."""
        K = len(self.values)
        return (K * K if self.pair else K) * self.options

    def row(self, xs: tuple[int, ...], o: int) -> int:
        K = len(self.values)
        return ((xs[0] * K + xs[1]) if self.pair else xs[0]) * self.options + o

    def decode_row(self, row: int) -> tuple[tuple[int, ...], int]:
        """(indices, option) of a level's row: :meth:`row` backwards."""
        K = len(self.values)
        key, o = divmod(int(row), self.options)
        return (divmod(key, K) if self.pair else (key,)), o

    def subsets_of(self, outer: int) -> list:
        """The ratio subsets a level chooses among below an outer option (one when they are shared)."""
        shared = self.globals()[outer][1]
        return [shared] if shared is not None else self.subsets

    def level_choices(self, outer: int, level: int):
        """(row, xs, ratio subset) of every choice of one level below an outer option, in order."""
        K = len(self.values)
        subsets = self.subsets_of(outer)
        for x in range(K):
            for x2 in range(x + 1, K) if self.pair else (None,):
                xs = (x, x2) if self.pair else (x,)
                for o, subset in enumerate(subsets):
                    yield self.row(xs, o), xs, subset

    def structure(self, outer: int) -> tuple[np.ndarray, np.ndarray]:
        """(valid, after) below an outer option: ``valid[l, row]`` whether level l may take that choice (its
        anchors within the limits), ``after[l, x]`` how many completions levels l+1.. have once level l
        ended on index x. Exact integers; they count the space and place each task's rows."""
        if outer in self._structures:
            return self._structures[outer]
        L, K = self.levels, len(self.values)
        octave = self.globals()[outer][0]
        valid = np.zeros((L, self.rows), bool)
        for lvl in range(L):
            for row, xs, subset in self.level_choices(outer, lvl):
                valid[lvl, row] = self.limits is None or self.limits.allows(
                    self, lvl, level_shapes(self, lvl, octave, xs, subset)
                )
        after = np.zeros((L, K), np.int64)
        after[L - 1, :] = 1
        for lvl in range(L - 2, -1, -1):
            for x in range(K):
                total = 0
                for x2 in range(x + 1, K):
                    for o in range(self.options):
                        row = self.row((x, x2), o) if self.pair else self.row((x2,), o)
                        if valid[lvl + 1, row]:
                            total += int(after[lvl + 1, x2])
                after[lvl, x] = total
        self._structures[outer] = (valid, after)
        return valid, after

    @property
    def size(self) -> int:
        """The exact number of configurations (within the limits)."""
        total = 0
        for g in range(len(self.globals())):
            valid, after = self.structure(g)
            for row, xs, _ in self.level_choices(g, 0):
                if valid[0, row]:
                    total += int(after[0, xs[-1]])
        return total


@dataclass
class Limits:
    """Per level the tap's rf and ERF extent (h, w, in input pixels) of a model, and how large an anchor may
    be against them: ``max_rf`` x rf and ``max_erf`` x the ERF extent, side by side (None: no limit)."""

    rf: list[tuple[float, float]]
    erf: list[tuple[float, float]]
    max_rf: float | None
    max_erf: float | None
    taps: list[str] = field(default_factory=list)
    strides: list[tuple[float, float]] = field(default_factory=list)

    def allows(self, space: AnchorSpace, level: int, shapes) -> bool:
        for w, h in anchor_sizes(space, shapes):
            rh, rw = self.rf[level]
            eh, ew = self.erf[level]
            if self.max_rf is not None and (w > self.max_rf * rw or h > self.max_rf * rh):
                return False
            if self.max_erf is not None and (w > self.max_erf * ew or h > self.max_erf * eh):
                return False
        return True


def anchor_sizes(space: AnchorSpace, shapes) -> list[tuple[float, float]]:
    """(w, h) in pixels of each anchor shape: AnchorGenerator's rounded cell anchors, or SSD's default boxes
    (clipped to [0, 1], times the image side)."""
    p = space.preset
    if p.kind == "grid":
        return [(2 * a, 2 * b) for a, b in (det.cell_half_extents(s, r) for s, r in shapes)]
    side = p.fixed_size[0]
    return [(min(max(w, 0.0), 1.0) * side, min(max(h, 0.0), 1.0) * side) for w, h in shapes]


def model_limits(preset: det.Preset, model, taps, *, input_size=None, max_rf=None, max_erf=None, mass=0.95):
    """Limits from a model's detector levels (as `rfsweep anchors` reads them: stride, rf and exact ERF at
    each tap); one tap a level, ``-`` for a level the model's spec does not hold (an FPN's extra P6): no
    limit there."""
    from rfsweep.anchors.design import anchor_report

    taps = taps.split(",") if isinstance(taps, str) else list(taps)
    if len(taps) != preset.levels:
        raise field_error(
            "taps", ",".join(taps), f"needs one tap per level of {preset.name} ({preset.levels}; - for none)"
        )
    if max_rf is None and max_erf is None:
        raise field_error("taps", ",".join(taps), "need --max-anchor-rf or --max-anchor-erf to limit the anchors")
    real = [t for t in taps if t != "-"]
    if not real:
        raise field_error("taps", ",".join(taps), "names no layer")
    rep = anchor_report(model, real, input_size=input_size, erf_mass=mass)
    key = str(round(100 * mass))
    by_tap = {lv.tap: lv for lv in rep.levels}
    inf = (math.inf, math.inf)
    rf, erf, strides = [], [], []
    for t in taps:
        lv = by_tap.get(t)
        rf.append(inf if lv is None else (float(lv.rf[0]), float(lv.rf[1])))
        erf.append(inf if lv is None else tuple(float(v) for v in lv.erf["erf_extent"][key]))
        strides.append((math.nan, math.nan) if lv is None else (float(lv.stride[0]), float(lv.stride[1])))
    return Limits(rf=rf, erf=erf, max_rf=max_rf, max_erf=max_erf, taps=taps, strides=strides)


def _values(name: str, raw, cast, minimum) -> tuple:
    """Distinct values from a list or "a,b,c" text, sorted; integers by the settings' own parser (5e2, 1_000)."""
    vals = raw if isinstance(raw, (list, tuple)) else [v for v in str(raw).split(",") if v.strip()]
    out = []
    for v in vals:
        if cast is int:
            out.append(parse_int(name, v, minimum))
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise field_error(name, v, "must be a number") from None
        if not (x >= minimum) or not math.isfinite(x):
            raise field_error(name, v, f"must be >= {minimum}")
        out.append(x)
    if not out or len(set(out)) != len(out):
        raise field_error(name, ",".join(map(str, vals)), "must be distinct values")
    return tuple(sorted(out))


def make_space(
    preset: det.Preset,
    *,
    sizes=None,
    scales=None,
    ratios=None,
    ratio_count: int | None = None,
    per_level_ratios: bool = False,
    scales_per_octave=None,
    limits: Limits | None = None,
) -> AnchorSpace:
    """The space of a preset; with no option, the preset's own torchvision configuration (one row).
    ``limits``: a model's levels that an anchor may not outgrow (:func:`model_limits`)."""
    L = preset.levels
    if preset.kind == "grid":
        if scales is not None:
            raise field_error("scales", scales, "are ssd300's (DefaultBoxGenerator); grid presets take --sizes")
        values = _values("sizes", sizes, int, 1) if sizes is not None else preset.sizes
        if len(values) < L:
            raise field_error("sizes", ",".join(map(str, values)), f"needs at least {L} sizes ({L} levels)")
        octaves = (
            _values("scales_per_octave", scales_per_octave, int, 1)
            if scales_per_octave is not None
            else (preset.scales_per_octave,)
        )
    else:
        if sizes is not None or scales_per_octave is not None:
            bad = "sizes" if sizes is not None else "scales_per_octave"
            raise field_error(bad, sizes if sizes is not None else scales_per_octave, "ssd300 takes --scales")
        values = _values("scales", scales, float, 0) if scales is not None else preset.ssd_scales
        if len(values) < L + 1:
            raise field_error("scales", ",".join(map(str, values)), f"needs at least {L + 1} scales ({L} levels)")
        octaves = (1,)
    if ratios is None:
        if ratio_count is not None or per_level_ratios:
            raise field_error("ratio_count", ratio_count, "chooses among --ratios: give them")
        if preset.kind == "ssd":
            return AnchorSpace(preset, values, (), 0, octaves=octaves, default_ratios=True, limits=limits)
        r = preset.ratios
        return AnchorSpace(preset, values, r, len(r), octaves=octaves, limits=limits)
    r = _values("ratios", ratios, float, 0)
    if any(x <= 0 for x in r):
        raise field_error("ratios", ",".join(map(str, r)), "must be > 0")
    k = len(r) if ratio_count is None else int(ratio_count)
    if not 1 <= k <= len(r):
        raise field_error("ratio_count", ratio_count, f"must be between 1 and the {len(r)} ratios")
    per_level = per_level_ratios or preset.kind == "ssd"
    return AnchorSpace(preset, values, r, k, per_level_ratios=per_level, octaves=octaves, limits=limits)


# ---------------------------------------------------------------- boxes in the detector's frame


@dataclass
class Frame:
    """The boxes as the detector sees them: resized (float64), their size class, and per level and box the
    grid (gh, gw) and strides (sh, sw) of the box's image; the mean number of grid cells an image has per
    level."""

    boxes: np.ndarray
    size_class: np.ndarray
    gh: np.ndarray  # (L, n)
    gw: np.ndarray
    sh: np.ndarray
    sw: np.ndarray
    cells: np.ndarray  # (L,) mean cells an image, float64
    n_small: int
    n_medium: int
    n_large: int


def frame(preset: det.Preset, data: BoxSet) -> Frame:
    L = preset.levels
    n_img = data.images
    ratio = np.empty((n_img, 2), np.float64)
    g = np.empty((n_img, L, 4), np.int64)
    for i in range(n_img):
        nh, nw, rh, rw = det.resized(preset, int(data.image_h[i]), int(data.image_w[i]))
        ratio[i] = (rh, rw)
        ph, pw = det.padded(preset, nh, nw)
        g[i] = det.grids(preset, ph, pw)
    rw, rh = ratio[data.image, 1], ratio[data.image, 0]
    xyxy = data.xyxy
    boxes = np.stack([xyxy[:, 0] * rw, xyxy[:, 1] * rh, xyxy[:, 2] * rw, xyxy[:, 3] * rh], axis=1)
    per = g[data.image]  # (n, L, 4)
    cells = (g[:, :, 0] * g[:, :, 1]).sum(axis=0) / n_img
    cls = data.size_class()
    return Frame(
        np.ascontiguousarray(boxes),
        cls,
        np.ascontiguousarray(per[:, :, 0].T),
        np.ascontiguousarray(per[:, :, 1].T),
        np.ascontiguousarray(per[:, :, 2].T),
        np.ascontiguousarray(per[:, :, 3].T),
        cells.astype(np.float64),
        int((cls == 0).sum()),
        int((cls == 1).sum()),
        int((cls == 2).sum()),
    )


# ---------------------------------------------------------------- shape tables


class ShapeTables:
    """Per level, each box's best IoU with and positives among the anchors of one shape, computed once per
    shape: (size, ratio) for grid presets, (w, h) for ssd300."""

    def __init__(self, preset: det.Preset, fr: Frame, threads: int | None):
        self.preset, self.fr, self.threads = preset, fr, threads
        self.cache: dict = {}

    def get(self, level: int, shapes: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        """(best (n, k), positives summed over boxes (k,)) of these shapes at this level."""
        todo = [s for s in dict.fromkeys(shapes) if (level, s) not in self.cache]
        if todo:
            self._compute(level, todo)
        best = np.stack([self.cache[(level, s)][0] for s in shapes], axis=1)
        pos = np.array([self.cache[(level, s)][1] for s in shapes], np.int64)
        return best, pos

    def _compute(self, level: int, shapes: list) -> None:
        from rfsweep.kernels import anchor_match as K

        fr, p = self.fr, self.preset
        n, k = len(fr.boxes), len(shapes)
        best = np.zeros((n, k), np.float64)
        npos = np.zeros((n, k), np.int64)
        if p.kind == "grid":
            ext = np.array([det.cell_half_extents(size, r) for size, r in shapes], np.float64).reshape(-1, 2)
            steer.call(
                K.grid_shape_tables, fr.boxes, fr.gh[level], fr.gw[level], fr.sh[level], fr.sw[level],
                np.ascontiguousarray(ext[:, 0]), np.ascontiguousarray(ext[:, 1]), p.fg_iou, best, npos,
                threads=self.threads,
            )  # fmt: skip
        else:
            side = p.fixed_size[0]
            xs = [det.ssd_intervals(p, level, w, side) for w, _ in shapes]
            ys = [det.ssd_intervals(p, level, h, side) for _, h in shapes]
            steer.call(
                K.cell_shape_tables, fr.boxes,
                np.stack([a for a, _ in xs]), np.stack([b for _, b in xs]),
                np.stack([a for a, _ in ys]), np.stack([b for _, b in ys]),
                p.fg_iou, best, npos, threads=self.threads,
            )  # fmt: skip
        for q, s in enumerate(shapes):
            self.cache[(level, s)] = (best[:, q].copy(), int(npos[:, q].sum()))


def level_shapes(space: AnchorSpace, level: int, octave: int, xs: tuple[int, ...], subset) -> list:
    """The anchor shapes of one level's option: grid presets (size, ratio) for each octave size and ratio, in
    torchvision's order (ratios major); ssd300 (w, h) pairs of DefaultBoxGenerator."""
    p = space.preset
    if p.kind == "grid":
        sizes = det.octave_sizes(space.values[xs[0]], octave)
        return [(s, r) for r in subset for s in sizes]
    ratios = p.ssd_ratios[level] if space.default_ratios else subset
    return det.ssd_wh_pairs(space.values[xs[0]], space.values[xs[1]], ratios)


def option_tables(space: AnchorSpace, fr: Frame, tables: ShapeTables, outer: int):
    """best (L, rows, n), pos (L, rows), anchors (L, rows) of every level choice below one outer option (the
    choices a model's limits remove stay zero: the walk never takes them)."""
    L, n = space.levels, len(fr.boxes)
    octave = space.globals()[outer][0]
    valid, _ = space.structure(outer)
    best = np.zeros((L, space.rows, n), np.float64)
    pos = np.zeros((L, space.rows), np.int64)
    anchors = np.zeros((L, space.rows), np.float64)
    for lvl in range(L):
        cells = space.preset.ssd_grids[lvl] ** 2 if space.pair else fr.cells[lvl]
        for row, xs, subset in space.level_choices(outer, lvl):
            if not valid[lvl, row]:
                continue
            shapes = level_shapes(space, lvl, octave, xs, subset)
            b, pp = tables.get(lvl, shapes)
            best[lvl, row] = b.max(axis=1)
            pos[lvl, row] = pp.sum()
            anchors[lvl, row] = cells * len(shapes)
    return best, pos, anchors


def tasks_of(space: AnchorSpace, outer: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's tasks below one outer option (x_0, x_1 or -1, o_0: level 0's choices that are allowed and
    have completions) in order, and the configurations each holds."""
    valid, after = space.structure(outer)
    tasks, counts = [], []
    for row, xs, _ in space.level_choices(outer, 0):
        n = int(after[0, xs[-1]])
        if valid[0, row] and n:
            tasks.append((xs[0], xs[1] if space.pair else -1, row % space.options))
            counts.append(n)
    return np.array(tasks, np.int64).reshape(-1, 3), np.array(counts, np.int64)


# ---------------------------------------------------------------- configurations


@dataclass
class Scored:
    """Scored configurations: ids, the chosen row of each level, the outer option, statistics."""

    ids: np.ndarray
    rows: np.ndarray  # (n, L)
    outer: np.ndarray  # (n,)
    stats: np.ndarray  # (n, len(STATS)) float64

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx) -> Scored:
        return Scored(self.ids[idx], self.rows[idx], self.outer[idx], self.stats[idx])

    @staticmethod
    def concat(parts: list[Scored]) -> Scored:
        return Scored(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("ids", "rows", "outer", "stats")))


def scorer(device: str):
    """(score_configs, device name): the CPU kernel, or its CUDA twin for ``device`` cuda (or auto with a
    usable GPU)."""
    from rfsweep.engine.device import backend

    module, name = backend(device)
    if name == "cuda":
        return module.score_configs, name
    from rfsweep.kernels import anchor_match

    return anchor_match.score_configs, name


def score(
    space: AnchorSpace, data: BoxSet, *, threads: int | None = None, progress=None, device: str = "cpu"
) -> Iterator[Scored]:
    """Every configuration's statistics, in order, a chunk at a time (on ``device``: cpu, cuda or auto)."""
    score_configs, _ = scorer(device)

    fr = frame(space.preset, data)
    tables = ShapeTables(space.preset, fr, threads)
    n = len(fr.boxes)
    L = space.levels
    first = 0
    done = 0
    for g in range(len(space.globals())):
        best, pos, anchors = option_tables(space, fr, tables, g)
        valid, after = space.structure(g)
        tasks, counts = tasks_of(space, g)
        start = 0
        while start < len(tasks):
            stop_at = start
            total = 0
            while stop_at < len(tasks) and (total == 0 or total + counts[stop_at] <= CHUNK_CONFIGS):
                total += int(counts[stop_at])
                stop_at += 1
            chunk = tasks[start:stop_at]
            offsets = np.concatenate([[0], np.cumsum(counts[start:stop_at])[:-1]]).astype(np.int64)
            cnt = np.zeros((total, 5), np.int64)
            sums = np.zeros((total, 3), np.float64)
            choice = np.zeros((total, L), np.int64)
            steer.call(
                score_configs, best, pos, anchors, valid, after, len(space.values), space.options, space.pair,
                chunk, offsets, fr.size_class, space.preset.fg_iou, cnt, sums, choice, steer.control(),
                threads=threads,
            )  # fmt: skip
            stats = np.empty((total, len(STATS)), np.float64)
            stats[:, 0] = cnt[:, 0] / n
            stats[:, 1] = cnt[:, 1] / n
            stats[:, 2] = sums[:, 0] / n
            stats[:, 3] = sums[:, 1] / n
            stats[:, 4] = sums[:, 2]
            with np.errstate(invalid="ignore", divide="ignore"):
                stats[:, 5] = cnt[:, 2] / fr.n_small if fr.n_small else np.nan
                stats[:, 6] = cnt[:, 3] / fr.n_medium if fr.n_medium else np.nan
                stats[:, 7] = cnt[:, 4] / fr.n_large if fr.n_large else np.nan
            yield Scored(np.arange(first, first + total, dtype=np.int64), choice, np.full(total, g, np.int64), stats)
            first += total
            done += total
            if progress is not None:
                progress(done, space.size)
            start = stop_at


# ---------------------------------------------------------------- a configuration in words


def describe(space: AnchorSpace, rows: Sequence[int], outer: int) -> dict:
    """The configuration of one scored row: its values per level, ratios and octave, and its arguments in
    torchvision's and mmdetection's keywords."""
    octave = space.globals()[outer][0]
    subsets = space.subsets_of(outer)
    xs, opts = [], []
    for row in rows:
        x, o = space.decode_row(row)
        xs.append(x)
        opts.append(subsets[o])
    p = space.preset
    if p.kind == "grid":
        sizes = [space.values[x[0]] for x in xs]
        ratios = [list(s) for s in opts]
        tv_sizes = [det.octave_sizes(s, octave) for s in sizes]
        tv = {"sizes": tv_sizes, "aspect_ratios": ratios}
        mm = {
            "type": "AnchorGenerator",
            "strides": list(p.strides),
            "base_sizes": sizes,
            "scales": [2 ** (k / octave) for k in range(octave)],
            "ratios": ratios[0] if len({tuple(r) for r in ratios}) == 1 else ratios,
            "center_offset": 0.0,
        }
        return {"values": sizes, "ratios": ratios, "octave": octave, "torchvision": tv, "mmdet": mm}
    scales = [space.values[x[0]] for x in xs] + [space.values[xs[-1][1]]]
    ratios = [list(p.ssd_ratios[i]) if space.default_ratios else list(s) for i, s in enumerate(opts)]
    side = p.fixed_size[0]
    tv = {"aspect_ratios": ratios, "scales": scales, "steps": list(p.strides), "clip": True}
    mm = {
        "type": "SSDAnchorGenerator",
        "input_size": side,
        "strides": list(p.strides),
        "ratios": ratios,
        "min_sizes": [s * side for s in scales[:-1]],
        "max_sizes": [s * side for s in scales[1:]],
    }
    return {"values": scales, "ratios": ratios, "octave": 1, "torchvision": tv, "mmdet": mm}


def to_records(space: AnchorSpace, scored: Scored) -> list[dict]:
    """One dict a configuration: id, values per level, ratios, octave, statistics, the two libraries' JSON."""
    out = []
    value_name = "size" if space.preset.kind == "grid" else "scale"
    for i in range(len(scored)):
        d = describe(space, scored.rows[i], int(scored.outer[i]))
        rec: dict[str, Any] = {"config": int(scored.ids[i])}
        for lvl, v in enumerate(d["values"]):
            rec[f"{value_name}_{lvl}"] = v
        rec["ratios"] = json.dumps(d["ratios"] if len({tuple(r) for r in d["ratios"]}) > 1 else d["ratios"][0])
        rec["scales_per_octave"] = d["octave"]
        for j, s in enumerate(STATS):
            rec[s] = float(scored.stats[i, j])
        rec["torchvision"] = json.dumps(d["torchvision"])
        rec["mmdet"] = json.dumps(d["mmdet"])
        out.append(rec)
    return out


# ---------------------------------------------------------------- selections


def _worst_last(values: np.ndarray, direction: int) -> np.ndarray:
    """Keys that sort the best first: larger-is-better negated, NaN (no box of that class) last."""
    key = -direction * values
    return np.where(np.isnan(key), np.inf, key)


def check_selection(sort: str | None, limit: int | None, pareto) -> tuple[str, ...] | None:
    if sort is not None and sort not in STATS:
        raise field_error("sort", sort, f"must be one of {', '.join(STATS)}")
    if sort is not None and limit is None:
        raise field_error("sort", sort, "needs --limit (the best N by it)")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise field_error("limit", limit, "must be an integer >= 1")
    if pareto is None:
        return None
    names = tuple(pareto.split(",")) if isinstance(pareto, str) else tuple(pareto)
    if len(names) < 2 or len(set(names)) != len(names) or any(n not in STATS for n in names):
        raise field_error("pareto", ",".join(names), f"must be 2 or more distinct of {', '.join(STATS)}")
    if sort is not None or limit is not None:
        raise field_error("pareto", ",".join(names), "keeps the whole front: not with --sort or --limit")
    return names


class Best:
    """The best ``k`` configurations by one statistic, ties to the smaller id, over chunks."""

    def __init__(self, k: int, name: str):
        self.k, self.j, self.dir = k, STATS.index(name), DIRECTION[name]
        self.kept: Scored | None = None

    def add(self, chunk: Scored) -> None:
        both = chunk if self.kept is None else Scored.concat([self.kept, chunk])
        order = np.lexsort((both.ids, _worst_last(both.stats[:, self.j], self.dir)))[: self.k]
        self.kept = both.take(order)


class Front:
    """The configurations no other beats on every one of ``names`` (ties kept), over chunks; ordered by
    the objectives in turn, then id."""

    def __init__(self, names: tuple[str, ...]):
        self.cols = [STATS.index(n) for n in names]
        self.dirs = np.array([DIRECTION[n] for n in names], np.float64)
        self.kept: Scored | None = None

    def _keys(self, s: Scored) -> np.ndarray:
        return np.stack([_worst_last(s.stats[:, c], d) for c, d in zip(self.cols, self.dirs)], axis=1)

    def add(self, chunk: Scored) -> None:
        both = chunk if self.kept is None else Scored.concat([self.kept, chunk])
        keys = self._keys(both)
        order = np.lexsort((both.ids, *keys.T[::-1]))
        keys, both = keys[order], both.take(order)
        keep = np.zeros(len(both), bool)
        front: list[np.ndarray] = []
        for i in range(len(both)):  # sorted: only an earlier row can beat this one
            v = keys[i]
            if front:
                f = np.asarray(front)
                if (np.all(f <= v, axis=1) & np.any(f < v, axis=1)).any():
                    continue
            keep[i] = True
            front.append(v)
        self.kept = both.take(keep)


def select(
    space: AnchorSpace, data: BoxSet, *, sort=None, limit=None, pareto=None, threads=None, progress=None, device="cpu"
):
    """The scored configurations a selection keeps, in chunks: all (in order), the first ``limit``, the
    best ``limit`` by ``sort``, or the Pareto front by ``pareto``."""
    names = check_selection(sort, limit, pareto)
    chunks = score(space, data, threads=threads, progress=progress, device=device)
    if names is not None:
        keep = Front(names)
    elif sort is not None:
        keep = Best(limit, sort)
    else:
        left = limit
        for chunk in chunks:
            if left is not None:
                chunk = chunk.take(slice(0, left))
                left -= len(chunk)
            yield chunk
            if left == 0:
                return
        return
    for chunk in chunks:
        keep.add(chunk)
    if keep.kept is not None:
        yield keep.kept


# ---------------------------------------------------------------- outputs


def schema(space: AnchorSpace):
    import pyarrow as pa

    value = ("size", pa.int64()) if space.preset.kind == "grid" else ("scale", pa.float64())
    fields = [pa.field("config", pa.int64())]
    fields += [pa.field(f"{value[0]}_{i}", value[1]) for i in range(space.positions)]
    fields += [pa.field("ratios", pa.string()), pa.field("scales_per_octave", pa.int64())]
    fields += [pa.field(s, pa.float64()) for s in STATS]
    fields += [pa.field("torchvision", pa.string()), pa.field("mmdet", pa.string())]
    return pa.schema(fields)


def settings_of(space: AnchorSpace, data: BoxSet, selection: dict) -> dict:
    from rfsweep.core.version import __version__

    p = space.preset
    return {
        "version": __version__,
        "detector": p.name,
        "model": p.model,
        "min_size": p.min_size,
        "max_size": p.max_size,
        "strides": list(p.strides),
        "fg_iou": p.fg_iou,
        "values": list(space.values),
        "ratios": list(space.ratios),
        "ratio_count": space.ratio_count,
        "per_level_ratios": space.per_level_ratios,
        "scales_per_octave": list(space.octaves),
        "space_size": space.size,
        "boxes": data.source,
        "n_boxes": len(data),
        "n_images": data.images,
        "iou": "torchvision box_iou, float64, on boxes resized as GeneralizedRCNNTransform resizes them",
        "limits": None
        if space.limits is None
        else {
            "taps": space.limits.taps,
            "strides": space.limits.strides,
            "rf": space.limits.rf,
            "erf95": space.limits.erf,
            "max_anchor_rf": space.limits.max_rf,
            "max_anchor_erf": space.limits.max_erf,
        },
        **selection,
    }


def table_of(space: AnchorSpace, chunk: Scored):
    import pyarrow as pa

    sch = schema(space)
    recs = to_records(space, chunk)
    return pa.Table.from_pylist(recs, schema=sch)


def write_parquet(out, space: AnchorSpace, data: BoxSet, chunks, selection: dict, row_group: int | None = None) -> int:
    """Stream the chunks to a checked output (:func:`rfsweep.core.files.check_output`) atomically, the
    settings in the file's metadata under ``rfsweep.anchor_search``, by rfsweep's writer policy
    (:mod:`rfsweep.output.writer`: statistics, page index, CRC32s, row groups of ``row_group`` rows,
    512K by default); the rows written."""
    from rfsweep.core.files import atomic
    from rfsweep.output.writer import ROW_GROUP_ROWS, TableWriter

    sch = schema(space).with_metadata({b"rfsweep.anchor_search": json.dumps(settings_of(space, data, selection))})
    step = 1 << 16  # records built at a time (table_of goes through Python dicts)
    with atomic(out, ".tmp.parquet") as name:
        w = TableWriter(name, sch, row_group_rows=row_group or ROW_GROUP_ROWS)
        try:
            for chunk in chunks:
                for start in range(0, len(chunk), step):
                    w.write(table_of(space, chunk.take(slice(start, start + step))))
        except BaseException:
            w.abort()
            raise
        w.close()
    return w.rows


# ---------------------------------------------------------------- the Python API


def _boxes(boxes, boxes_format, voc_difficult, image_size) -> BoxSet:
    if isinstance(boxes, BoxSet):
        return boxes
    return read_boxes(boxes, boxes_format, voc_difficult=voc_difficult, image_size=image_size)


def search(
    boxes,
    detector: str = "faster_rcnn",
    *,
    sizes=None,
    scales=None,
    ratios=None,
    ratio_count: int | None = None,
    per_level_ratios: bool = False,
    scales_per_octave=None,
    min_size: int | None = None,
    max_size: int | None = None,
    strides=None,
    fg_iou: float | None = None,
    sort: str | None = None,
    limit: int | None = None,
    pareto=None,
    output: str | None = None,
    threads: int | None = None,
    boxes_format: str | None = None,
    voc_difficult: str = "include",
    image_size=None,
    progress=None,
    device: str = "cpu",
    model=None,
    taps=None,
    input_size=None,
    max_anchor_rf: float | None = None,
    max_anchor_erf: float | None = None,
):
    """Score every anchor configuration of a space over a dataset's boxes (see the module docstring).

    ``boxes``: a path (COCO JSON, VOC or YOLO directory, CSV / Parquet) or a :class:`BoxSet`. The space:
    ``sizes`` (grid presets) or ``scales`` (ssd300) to choose one per level from, ``ratios`` (h / w) with
    ``ratio_count`` and ``per_level_ratios``, ``scales_per_octave``; with none of them, the preset's own
    configuration. ``model`` and ``taps`` (a network and one layer a level, as `rfsweep anchors`) with
    ``max_anchor_rf`` / ``max_anchor_erf`` leave out anchors larger than that many times the tap's rf / ERF
    95 % extent. ``sort`` with ``limit`` keeps the best N, ``pareto`` the front; ``device`` (cpu, cuda, auto)
    where the configurations are scored. With ``output`` the rows
    stream to that Parquet file and the number written comes back; else a pandas DataFrame.
    """
    space, data = prepare(
        boxes, detector, sizes=sizes, scales=scales, ratios=ratios, ratio_count=ratio_count,
        per_level_ratios=per_level_ratios, scales_per_octave=scales_per_octave, min_size=min_size,
        max_size=max_size, strides=strides, fg_iou=fg_iou, boxes_format=boxes_format,
        voc_difficult=voc_difficult, image_size=image_size, model=model, taps=taps, input_size=input_size,
        max_anchor_rf=max_anchor_rf, max_anchor_erf=max_anchor_erf,
    )  # fmt: skip
    names = check_selection(sort, limit, pareto)
    chunks = select(
        space, data, sort=sort, limit=limit, pareto=names, threads=threads, progress=progress, device=device
    )
    if output is not None:
        from rfsweep.core.files import check_output

        inputs = () if isinstance(boxes, BoxSet) else (str(boxes),)
        out = check_output(output, "output", suffixes=(".parquet",), inputs=inputs)
        selection = {"sort": sort, "limit": limit, "pareto": list(names) if names else None}
        return write_parquet(out, space, data, chunks, selection)
    import pyarrow as pa

    tables = [table_of(space, c) for c in chunks]
    table = pa.concat_tables(tables) if tables else schema(space).empty_table()
    return table.to_pandas()


def prepare(
    boxes, detector: str = "faster_rcnn", *, min_size=None, max_size=None, strides=None, fg_iou=None,
    boxes_format=None, voc_difficult="include", image_size=None, model=None, taps=None, input_size=None,
    max_anchor_rf=None, max_anchor_erf=None, **space_options,
) -> tuple[AnchorSpace, BoxSet]:  # fmt: skip
    """The space (checked before any box is read) and the boxes of a search. With ``model`` and ``taps`` (one
    tap a level), anchors larger than ``max_anchor_rf`` x the tap's rf or ``max_anchor_erf`` x its ERF 95 %
    extent are left out of the space."""
    p = det.preset(detector, min_size=min_size, max_size=max_size, strides=strides, fg_iou=fg_iou)
    limits = None
    if model is not None or taps is not None:
        if model is None or taps is None:
            raise field_error("taps" if model is not None else "model", taps or model, "needs --model and --taps")
        limits = model_limits(p, model, taps, input_size=input_size, max_rf=max_anchor_rf, max_erf=max_anchor_erf)
    elif max_anchor_rf is not None or max_anchor_erf is not None:
        bad = "max_anchor_rf" if max_anchor_rf is not None else "max_anchor_erf"
        raise field_error(
            bad, max_anchor_rf if max_anchor_rf is not None else max_anchor_erf, "needs --model and --taps"
        )
    space = make_space(p, limits=limits, **space_options)
    return space, _boxes(boxes, boxes_format, voc_difficult, image_size)


def match(
    boxes,
    detector: str = "faster_rcnn",
    *,
    sizes=None,
    aspect_ratios=None,
    scales=None,
    min_size: int | None = None,
    max_size: int | None = None,
    strides=None,
    fg_iou: float | None = None,
    threads: int | None = None,
    boxes_format: str | None = None,
    voc_difficult: str = "include",
    image_size=None,
) -> dict:
    """The statistics of one configuration in torchvision's own keywords: AnchorGenerator's ``sizes`` and
    ``aspect_ratios`` (one tuple per level, or one tuple for every level), or DefaultBoxGenerator's
    ``scales`` and ``aspect_ratios``. None takes the preset's. Also ``best_iou``: each box's best IoU."""
    p = det.preset(detector, min_size=min_size, max_size=max_size, strides=strides, fg_iou=fg_iou)
    data = _boxes(boxes, boxes_format, voc_difficult, image_size)
    fr = frame(p, data)
    tables = ShapeTables(p, fr, threads)
    L = p.levels

    def per_level(v, name):
        v = list(v)
        if v and not isinstance(v[0], (list, tuple)):
            v = [v] * L
        if len(v) != L:
            raise field_error(name, v, f"needs one entry per level ({L})")
        return [list(x) for x in v]

    if p.kind == "grid":
        if sizes is None:
            sz = [det.octave_sizes(s, p.scales_per_octave) for s in p.sizes]
        else:
            sz = per_level(sizes, "sizes")
        ar = per_level(aspect_ratios if aspect_ratios is not None else p.ratios, "aspect_ratios")
        shapes = [[(s, r) for r in ar[lvl] for s in sz[lvl]] for lvl in range(L)]
        cells = [fr.cells[lvl] for lvl in range(L)]
    else:
        sc = list(scales if scales is not None else p.ssd_scales)
        if len(sc) != L + 1:
            raise field_error("scales", sc, f"needs {L + 1} values ({L} levels and the last)")
        ar = per_level(aspect_ratios if aspect_ratios is not None else p.ssd_ratios, "aspect_ratios")
        shapes = [det.ssd_wh_pairs(sc[lvl], sc[lvl + 1], ar[lvl]) for lvl in range(L)]
        cells = [g * g for g in p.ssd_grids]
    n = len(fr.boxes)
    best = np.zeros(n, np.float64)
    positives = 0
    anchors = 0.0
    for lvl in range(L):
        b, pp = tables.get(lvl, shapes[lvl])
        best = np.maximum(best, b.max(axis=1))
        positives += int(pp.sum())
        anchors += cells[lvl] * len(shapes[lvl])
    fg = best >= p.fg_iou
    cls = fr.size_class

    def share(mask):
        return float(mask.mean()) if len(mask) else float("nan")

    s = 0.0
    for v in best:  # box by box, as the search's kernel adds them
        s += float(v)
    return {
        "recall_iou50": float((best >= 0.5).sum() / n),
        "recall_iou70": float((best >= 0.7).sum() / n),
        "best_iou_mean": s / n,
        "positives_per_gt": positives / n,
        "anchors_per_image": float(anchors),
        "recall_small": share(fg[cls == 0]),
        "recall_medium": share(fg[cls == 1]),
        "recall_large": share(fg[cls == 2]),
        "best_iou": best,
    }


__all__ = [
    "search",
    "match",
    "prepare",
    "AnchorSpace",
    "make_space",
    "score",
    "select",
    "describe",
    "to_records",
    "write_parquet",
    "STATS",
    "DIRECTION",
    "frame",
]
