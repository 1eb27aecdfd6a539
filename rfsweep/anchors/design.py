"""Anchor design for detectors, checked against strides, receptive fields and exact effective RFs.

A detector level is a tap: a layer whose units predict boxes. For each level this module reports the
stride (= jump), rf, the exact ERF (:mod:`rfsweep.network.erf`), the centre of unit 0 and how far it sits from
the anchor centres of the usual convention, the anchors a rule gives and warnings where an anchor is
larger than the RF, larger than the ERF extent, or too sparse for its stride.

Conventions
-----------
* Geometry is per axis ``[h, w]`` like everywhere in rfsweep; anchors are ``[w, h]`` pairs, as detectors
  write them. A ratio ``r`` is width/height: ``w = a·sqrt(r)``, ``h = a/sqrt(r)`` for an anchor of scale
  ``a`` (SSD's convention). mmdetection and torchvision use height/width; the exports convert.
* Anchor centres are at ``(i + center_offset)·stride`` in continuous image coordinates, where pixel ``p``
  spans ``[p, p+1)`` (the box convention of COCO, torchvision and mmdetection; mmdetection's
  ``AnchorGenerator(center_offset=...)``). Unit ``i`` of a tap is centred at ``center + 0.5 + i·jump`` in
  the same coordinates (``center`` as :mod:`rfsweep.network.arithmetic` defines it, 0-indexed pixel centres), so
  ``misalignment = center_offset·stride - (center + 0.5)``, the same for every unit.
* Levels keep the order of the taps given; ``retinanet`` and ``ssd`` number them in that order.

Rules (``stride`` per axis, ``i`` the level index from 0, ``m`` the number of levels):

* ``s3fd``: ``a = 4·stride`` (Zhang et al. 2017, equal-proportion interval); default ratios ``1``.
* ``fpn``: ``a = 8·stride`` (Lin et al. 2017, 32 px on P2 at stride 4).
* ``retinanet``: ``a = 4·2^(j/3)·stride``, ``j = 0, 1, 2`` (three scales per level).
* ``ssd``: ``s_k = s_min + (s_max - s_min)(k-1)/(m-1)``, ``k = 1..m``, ``s_min = 0.2``, ``s_max = 0.9``;
  ``a = s_k·image size`` per axis, plus one box at ratio 1 of scale ``sqrt(s_k·s_{k+1})`` with
  ``s_{m+1} = 1`` (torchvision's DefaultBoxGenerator; with one level ``s_1 = s_min``, ``s_2 = s_max``);
  needs the input size.

Within a level anchors are ratio-major (for each ratio, each scale), the order of mmdetection's and
torchvision's generators; the SSD extra box comes last.

Box metrics (BPR, AAT, k-means) live in :mod:`rfsweep.anchors.boxes`; generator exports in
:mod:`rfsweep.anchors.export`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from rfsweep.anchors.boxes import YOLO_THR, kmeans_anchors, read_boxes, wh_array, yolo_metric
from rfsweep.core.errors import field_error
from rfsweep.core.numbers import fmt_number, json_number, rounded
from rfsweep.network import erf as erfmod
from rfsweep.network.analyze import evaluate
from rfsweep.network.spec import Network

RULES = ("s3fd", "fpn", "retinanet", "ssd")
DEFAULT_RATIOS = {"s3fd": (1.0,), "fpn": (0.5, 1.0, 2.0), "retinanet": (0.5, 1.0, 2.0), "ssd": (0.5, 1.0, 2.0)}
SSD_S_MIN, SSD_S_MAX = 0.2, 0.9


# ----------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class LevelScales:
    """The square sizes (before ratios) of one level, per axis ``(w, h)``; ``extra`` only at ratio 1."""

    sizes: tuple[tuple[float, float], ...]
    extra: tuple[tuple[float, float], ...] = ()


def ssd_scales(m: int, s_min: float = SSD_S_MIN, s_max: float = SSD_S_MAX) -> list[float]:
    """``s_1..s_m`` linearly between ``s_min`` and ``s_max``, then ``s_{m+1} = 1`` (one level: ``[s_min, s_max]``),
    as torchvision's DefaultBoxGenerator."""
    if m == 1:
        return [s_min, s_max]
    return [s_min + (s_max - s_min) * k / (m - 1) for k in range(m)] + [1.0]


def rule_scales(
    rule: str,
    strides: Sequence[tuple[Any, Any]],
    image_size: tuple[int, int] | None = None,
    s_min: float = SSD_S_MIN,
    s_max: float = SSD_S_MAX,
) -> list[LevelScales]:
    """Per level, the anchor scales of ``rule`` (``strides`` are ``(h, w)`` per level)."""
    if rule not in RULES:
        raise field_error("rule", rule, f"must be one of {', '.join(RULES)}")
    out = []
    if rule == "ssd":
        if image_size is None:
            raise field_error("input-size", None, "the ssd rule sizes anchors by the image size; give --input-size")
        if not 0 < s_min <= s_max <= 1:
            raise field_error("ssd scales", [s_min, s_max], "need 0 < s_min <= s_max <= 1")
        s = ssd_scales(len(strides), s_min, s_max)
        ih, iw = image_size
        for k in range(len(strides)):
            e = math.sqrt(s[k] * s[k + 1])
            out.append(LevelScales(((s[k] * iw, s[k] * ih),), ((e * iw, e * ih),)))
        return out
    for sh, sw in strides:
        sh, sw = float(sh), float(sw)
        if rule == "s3fd":
            mult = (4.0,)
        elif rule == "fpn":
            mult = (8.0,)
        else:
            mult = tuple(4.0 * 2 ** (j / 3) for j in range(3))
        out.append(LevelScales(tuple((m * sw, m * sh) for m in mult)))
    return out


def apply_ratios(scales: LevelScales, ratios: Sequence[float]) -> list[tuple[float, float]]:
    """Anchors ``[w, h]`` of one level: ratio-major, then the extra boxes (ratio 1)."""
    anchors = [(w * math.sqrt(r), h / math.sqrt(r)) for r in ratios for (w, h) in scales.sizes]
    return anchors + list(scales.extra)


def rule_anchors(
    rule: str,
    strides: Sequence[tuple[Any, Any]],
    ratios: Sequence[float] | None = None,
    image_size: tuple[int, int] | None = None,
    s_min: float = SSD_S_MIN,
    s_max: float = SSD_S_MAX,
) -> list[list[tuple[float, float]]]:
    """Anchors ``[w, h]`` per level for ``strides`` (``(h, w)`` per level) under ``rule``."""
    ratios = check_ratios(DEFAULT_RATIOS[rule] if ratios is None and rule in RULES else ratios)
    return [apply_ratios(s, ratios) for s in rule_scales(rule, strides, image_size, s_min, s_max)]


def check_ratios(ratios: Any) -> tuple[float, ...]:
    """Positive finite ratios (w/h); '0.5,1,2' is accepted."""
    raw = ratios
    if isinstance(ratios, str):
        try:
            ratios = [float(x) for x in ratios.split(",") if x.strip()]
        except ValueError:
            raise field_error("ratios", raw, "must be positive numbers separated by commas, e.g. 0.5,1,2") from None
    try:
        ratios = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise field_error("ratios", raw, "must be positive numbers, e.g. 0.5,1,2") from None
    if not ratios or not all(math.isfinite(r) and r > 0 for r in ratios):
        raise field_error("ratios", raw, "must be positive numbers, e.g. 0.5,1,2")
    return ratios


# -------------------------------------------------------------------------------------------- levels


@dataclass
class Level:
    """One detector level. Geometry is (h, w); anchors are [w, h]."""

    tap: str
    out_size: tuple
    stride: tuple[Fraction, Fraction]
    rf: tuple[Fraction, Fraction]
    center: tuple[Fraction, Fraction]
    misalignment: tuple[float, float]
    erf: dict
    scales: LevelScales
    anchors: list[tuple[float, float]]
    density: list[float] = field(default_factory=list)
    anchor_rf: list[tuple[float, float]] = field(default_factory=list)
    anchor_erf: list[tuple[float, float]] = field(default_factory=list)
    iou_half_stride: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class AnchorReport:
    """Everything `rfsweep anchors` prints; :meth:`to_json` is the machine-readable form."""

    net: Network
    rule: str
    ratios: tuple[float, ...]
    center_offset: float
    erf_mass: float
    min_iou: float
    levels: list[Level]
    thr: float = YOLO_THR
    n_boxes: int | None = None
    bpr: float | None = None
    aat: float | None = None
    kmeans: dict | None = None
    dists: dict = field(default_factory=dict, repr=False)

    def all_anchors(self) -> np.ndarray:
        return np.array([a for lv in self.levels for a in lv.anchors], dtype=np.float64)

    def to_json(self) -> dict:
        return to_json(self)


def _shift_iou(w: float, h: float, sw: float, sh: float) -> float:
    """IoU of an anchor with an equal box centred half a stride away on both axes (midway between anchors)."""
    ow, oh = max(w - sw / 2, 0.0), max(h - sh / 2, 0.0)
    inter = ow * oh
    return inter / (2 * w * h - inter)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _wxh(w: float, h: float) -> str:
    return f"{_fmt(w)}x{_fmt(h)}"


def _level_checks(lv: Level, mass_key: str, center_offset: float, min_iou: float) -> None:
    sh, sw = (float(s) for s in lv.stride)
    rfh, rfw = (float(r) for r in lv.rf)
    eh, ew = lv.erf["erf_extent"][mass_key]
    for w, h in lv.anchors:
        lv.density.append(math.sqrt(w * h) / math.sqrt(sw * sh))
        lv.anchor_rf.append((w / rfw, h / rfh))
        lv.anchor_erf.append((w / ew, h / eh))
        iou = _shift_iou(w, h, sw, sh)
        lv.iou_half_stride.append(iou)
        if w > rfw or h > rfh:
            lv.warnings.append(f"anchor {_wxh(w, h)} exceeds the RF {_wxh(rfw, rfh)}")
        elif w > ew or h > eh:
            lv.warnings.append(f"anchor {_wxh(w, h)} exceeds the ERF {mass_key}% extent {_wxh(ew, eh)}")
        if iou < min_iou:
            lv.warnings.append(
                f"anchor {_wxh(w, h)} is too sparse for stride {_wxh(sw, sh)}: a box equal to it "
                f"centred midway between anchor centres has IoU {iou:.2f} < {min_iou:g}"
            )
    for axis, label in ((0, "h"), (1, "w")):
        s = float(lv.stride[axis])
        mis = lv.misalignment[axis]
        if abs(mis) > s / 4:
            other = 0.5 if center_offset == 0 else 0.0
            alt = other * s - (float(lv.center[axis]) + 0.5)
            hint = f"; center_offset {other:g} puts them {alt:+.4g} px away" if abs(alt) < abs(mis) else ""
            lv.warnings.append(
                f"anchor centres ({label}) sit {mis:+.4g} px from the unit centres "
                f"(more than stride/4 = {s / 4:g}){hint}"
            )


def anchor_report(
    model: Any,
    taps: Sequence[str] | str,
    rule: str = "fpn",
    ratios: Any = None,
    input_size: Any = None,
    center_offset: float = 0.0,
    boxes: Any = None,
    generations: int = 0,
    seed: int = 0,
    n_kmeans: int | None = None,
    erf_mass: float = 0.95,
    min_iou: float = 0.5,
    thr: float = YOLO_THR,
    s_min: float = SSD_S_MIN,
    s_max: float = SSD_S_MAX,
) -> AnchorReport:
    """Anchor design for the detector levels ``taps`` of ``model``.

    Parameters
    ----------
    model : zoo name, spec file, spec dict or Network
    taps : list of layer names or 'L1,L2,...'
        The detector levels, in level order.
    rule : 's3fd' | 'fpn' | 'retinanet' | 'ssd'
    ratios : w/h ratios (list or '0.5,1,2'); default per rule (s3fd: 1; others: 0.5, 1, 2)
    input_size : N, (h, w) or 'HxW'; overrides the spec's (ssd needs one)
    center_offset : 0 or 0.5; anchor centres at ``(i + center_offset)·stride``
    boxes : N x 2 array of [w, h] or a CSV/Parquet path with columns w, h; enables BPR/AAT and k-means
    generations : genetic evolution steps after k-means (YOLOv5 uses 1000); 0 skips it
    seed : seed of k-means and evolution
    n_kmeans : number of k-means anchors (default: as many as the rule gives over all levels)
    erf_mass : the ERF extent anchors are checked against (default the 95 % extent)
    min_iou : sparsity warning threshold for :func:`_shift_iou`
    thr : YOLOv5's anchor_t (ratio threshold), 4
    """
    from rfsweep.network.spec import parse_input_size
    from rfsweep.network.zoo import resolve

    if isinstance(taps, str):
        taps = [t.strip() for t in taps.split(",") if t.strip()]
    taps = list(taps)
    if not taps:
        raise field_error("taps", "", "name at least one layer (a detector level), e.g. --taps layer2,layer3")
    if len(set(taps)) != len(taps):
        raise field_error("taps", ",".join(taps), "a layer is named twice")
    if rule not in RULES:
        raise field_error("rule", rule, f"must be one of {', '.join(RULES)}")
    ratios = check_ratios(DEFAULT_RATIOS[rule] if ratios is None else ratios)
    try:
        center_offset = float(center_offset)
    except (TypeError, ValueError):
        raise field_error("center-offset", center_offset, "must be 0 or 0.5") from None
    if center_offset not in (0.0, 0.5):
        raise field_error("center-offset", center_offset, "must be 0 or 0.5 (mmdetection's center_offset conventions)")
    if not 0 < erf_mass <= 1:
        raise field_error("erf-mass", erf_mass, "must be in (0, 1]")
    if generations < 0:
        raise field_error("evolve", generations, "must be >= 0")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise field_error("seed", seed, "must be an integer in 0..2^63-1")
    if thr <= 1:
        raise field_error("thr", thr, "must be > 1 (YOLOv5 uses 4)")

    net = resolve(model, parse_input_size(input_size))
    results = evaluate(net)
    by_name = {r.layer.name: r for r in results}
    for t in taps:
        if t not in by_name:
            raise field_error(
                "taps", t, f"no layer of that name in '{net.name}' (`rfsweep analyze {net.name}` lists them)"
            )
        if by_name[t].axes[0].whole:
            raise field_error(
                "taps",
                t,
                "a global layer (after a global pool or a linear layer) has no stride or local RF; tap a spatial layer",
            )
    masses = sorted(set(erfmod.MASSES) | {erf_mass})
    dists = erfmod.distributions(net, taps, fieldname="taps", results=results)
    strides = [tuple(a.jump for a in by_name[t].axes) for t in taps]
    scales = rule_scales(rule, strides, net.input_size, s_min, s_max)
    mass_key = erfmod.mass_key(erf_mass)
    levels = []
    for t, st, sc in zip(taps, strides, scales):
        r = by_name[t]
        summary = erfmod.summarize(*dists[t], masses=masses)
        centers = tuple(a.center for a in r.axes)
        mis = tuple(center_offset * float(s) - (float(c) + 0.5) for s, c in zip(st, centers))
        lv = Level(
            tap=t,
            out_size=tuple(a.size for a in r.axes),
            stride=st,
            rf=tuple(a.rf for a in r.axes),
            center=centers,
            misalignment=mis,
            erf=summary,
            scales=sc,
            anchors=apply_ratios(sc, ratios),
        )
        _level_checks(lv, mass_key, center_offset, min_iou)
        levels.append(lv)
    rep = AnchorReport(
        net=net,
        rule=rule,
        ratios=ratios,
        center_offset=center_offset,
        erf_mass=erf_mass,
        min_iou=min_iou,
        levels=levels,
        thr=thr,
        dists=dists,
    )
    if boxes is not None:
        wh = read_boxes(boxes) if isinstance(boxes, (str, Path)) else wh_array(boxes, "boxes")
        if not (np.isfinite(wh).all() and (wh > 0).all()):
            raise field_error("boxes", "array", "sizes must be positive finite numbers")
        rep.n_boxes = len(wh)
        rep.bpr, rep.aat = yolo_metric(wh, rep.all_anchors(), thr)
        n = n_kmeans if n_kmeans is not None else len(rep.all_anchors())
        k = kmeans_anchors(wh, n, thr=thr, generations=generations, seed=seed)
        bpr, aat = yolo_metric(wh, k, thr)
        per_level = None
        if len(k) % len(levels) == 0:
            g = len(k) // len(levels)
            per_level = [k[i * g : (i + 1) * g].tolist() for i in range(len(levels))]
        rep.kmeans = {
            "anchors": k.tolist(),
            "bpr": bpr,
            "aat": aat,
            "levels": per_level,
            "generations": generations,
            "seed": seed,
        }
    return rep


# ----------------------------------------------------------------------------------------------- output


def to_json(rep: AnchorReport) -> dict:
    """``{"model", "input_size", "rule", "ratios", "center_offset", "levels": [...], "bpr", "aat", ...}``.

    Each level: tap, out_size, stride, rf, erf_sigma, erf_extent ({'50': [h, w], '90': ..., '95': ...}),
    erf_kurtosis, center, misalignment ([h, w]), anchors ([[w, h], ...]), density (sqrt(w·h)/stride per
    anchor), anchor_rf and anchor_erf ([w/rf_w, h/rf_h] and the same against the ERF extent),
    iou_half_stride, warnings.
    """
    levels = []
    for lv in rep.levels:
        levels.append(
            {
                "tap": lv.tap,
                "out_size": list(lv.out_size),
                "stride": [json_number(s) for s in lv.stride],
                "rf": [json_number(r) for r in lv.rf],
                "erf_sigma": [rounded(s) for s in lv.erf["erf_sigma"]],
                "erf_extent": {k: [rounded(x) for x in v] for k, v in lv.erf["erf_extent"].items()},
                "erf_kurtosis": [rounded(k, 4) for k in lv.erf["excess_kurtosis"]],
                "erf_grid_step": [rounded(s) for s in lv.erf["grid_step"]],
                "center": [json_number(c) for c in lv.center],
                "misalignment": [rounded(m) for m in lv.misalignment],
                "anchors": [[rounded(w, 4), rounded(h, 4)] for w, h in lv.anchors],
                "density": [rounded(d, 4) for d in lv.density],
                "anchor_rf": [[rounded(a, 4), rounded(b, 4)] for a, b in lv.anchor_rf],
                "anchor_erf": [[rounded(a, 4), rounded(b, 4)] for a, b in lv.anchor_erf],
                "iou_half_stride": [rounded(i, 4) for i in lv.iou_half_stride],
                "warnings": list(lv.warnings),
            }
        )
    out = {
        "model": rep.net.name,
        "input_size": list(rep.net.input_size) if rep.net.input_size else None,
        "rule": rep.rule,
        "ratios": list(rep.ratios),
        "center_offset": rep.center_offset,
        "erf_mass": rep.erf_mass,
        "levels": levels,
        "thr": rep.thr,
        "boxes": rep.n_boxes,
        "bpr": None if rep.bpr is None else rounded(rep.bpr),
        "aat": None if rep.aat is None else rounded(rep.aat),
        "kmeans": None,
    }
    if rep.kmeans is not None:
        k = rep.kmeans
        out["kmeans"] = {
            "anchors": [[rounded(w, 2), rounded(h, 2)] for w, h in k["anchors"]],
            "bpr": rounded(k["bpr"]),
            "aat": rounded(k["aat"]),
            "generations": k["generations"],
            "seed": k["seed"],
            "levels": None
            if k["levels"] is None
            else [[[rounded(w, 2), rounded(h, 2)] for w, h in lv] for lv in k["levels"]],
        }
    return out


def _pair_text(vals, fmt=fmt_number) -> str:
    text = [fmt(v) for v in vals]
    return text[0] if text[0] == text[1] else "x".join(text)


def to_table(rep: AnchorReport) -> str:
    """Readable report: levels, anchors, warnings, box metrics."""
    lines = []
    size = "x".join(map(str, rep.net.input_size)) if rep.net.input_size else "unknown"
    mk = erfmod.mass_key(rep.erf_mass)
    lines.append(
        f"{rep.net.name}: input {size}, rule {rep.rule}, ratios (w/h) {','.join(f'{r:g}' for r in rep.ratios)}, "
        f"anchor centres at (i+{rep.center_offset:g})*stride"
    )
    head = ["level", "tap", "stride", "rf", "erf_sigma", "erf50", "erf90", "erf95", "center", "misalign"]
    rows = []
    f2 = lambda v: f"{v:.2f}"  # noqa: E731
    fg = lambda v: f"{v:.4g}"  # noqa: E731
    for i, lv in enumerate(rep.levels):
        ext = lv.erf["erf_extent"]
        rows.append(
            [
                str(i),
                lv.tap,
                _pair_text(lv.stride),
                _pair_text(lv.rf),
                _pair_text(lv.erf["erf_sigma"], f2),
                _pair_text(ext["50"], fg),
                _pair_text(ext["90"], fg),
                _pair_text(ext["95"], fg),
                _pair_text(lv.center),
                _pair_text(lv.misalignment, fg),
            ]
        )
    lines += _align(head, rows, left={"tap"})
    lines.append("")
    lines.append(
        "anchors [w, h]; density = sqrt(w*h)/stride; iou@half = IoU of the anchor with an equal box "
        "centred midway between anchor centres"
    )
    head = ["level", "w", "h", "density", "w/rf", "h/rf", f"w/erf{mk}", f"h/erf{mk}", "iou@half"]
    rows = []
    for i, lv in enumerate(rep.levels):
        for (w, h), d, (arw, arh), (aew, aeh), iou in zip(
            lv.anchors, lv.density, lv.anchor_rf, lv.anchor_erf, lv.iou_half_stride
        ):
            rows.append(
                [
                    str(i),
                    f"{w:.1f}",
                    f"{h:.1f}",
                    f"{d:.2f}",
                    f"{arw:.2f}",
                    f"{arh:.2f}",
                    f"{aew:.2f}",
                    f"{aeh:.2f}",
                    f"{iou:.2f}",
                ]
            )
    lines += _align(head, rows, left=set())
    warns = [(lv.tap, w) for lv in rep.levels for w in lv.warnings]
    if warns:
        lines.append("")
        lines.append("warnings:")
        lines += [f"  {tap}: {w}" for tap, w in warns]
    if rep.bpr is not None:
        lines.append("")
        lines.append(
            f"boxes: {rep.n_boxes}; anchors of all levels: BPR {rep.bpr:.4f}, AAT {rep.aat:.2f} "
            f"(YOLOv5 metric, ratio threshold {rep.thr:g})"
        )
        k = rep.kmeans
        gen = f", {k['generations']} generations of evolution" if k["generations"] else ""
        lines.append(
            f"k-means proposal ({len(k['anchors'])} anchors, seed {k['seed']}{gen}): BPR {k['bpr']:.4f}, "
            f"AAT {k['aat']:.2f}"
        )
        if k["levels"]:
            for i, lvk in enumerate(k["levels"]):
                lines.append(f"  level {i}: " + ", ".join(f"[{w:.1f}, {h:.1f}]" for w, h in lvk))
        else:
            lines.append("  " + ", ".join(f"[{w:.1f}, {h:.1f}]" for w, h in k["anchors"]))
    return "\n".join(lines)


def _align(head: list[str], rows: list[list[str]], left: set[str]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]

    def fmt(cells):
        return "  ".join(c.ljust(w) if h in left else c.rjust(w) for c, w, h in zip(cells, widths, head)).rstrip()

    return [fmt(head)] + [fmt(r) for r in rows]


# ------------------------------------------------------------------------------------------------- plot


def plot(rep: AnchorReport, path: str) -> None:
    """Per level the ERF heat map with its anchors (solid), the RF (dashed) and the ERF extent (dotted)."""
    from rfsweep.network.report import pyplot, save_figure

    plt = pyplot()
    from matplotlib.patches import Rectangle

    n = len(rep.levels)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.4), squeeze=False)
    mk = erfmod.mass_key(rep.erf_mass)
    for ax, lv in zip(axes[0], rep.levels):
        dh, dw = rep.dists[lv.tap]
        heat = erfmod.heatmap(dh, dw)
        ph, pw = dh.positions(), dw.positions()
        hs, ws = float(dh.step), float(dw.step)
        ax.imshow(
            heat,
            origin="upper",
            cmap="magma",
            interpolation="nearest",
            extent=(pw[0] - ws / 2, pw[-1] + ws / 2, ph[-1] + hs / 2, ph[0] - hs / 2),
        )
        rfh, rfw = float(lv.rf[0]), float(lv.rf[1])
        ax.add_patch(Rectangle((-rfw / 2, -rfh / 2), rfw, rfh, fill=False, ls="--", lw=1.2, ec="white", label="RF"))
        eh, ew = lv.erf["erf_extent"][mk]
        ax.add_patch(Rectangle((-ew / 2, -eh / 2), ew, eh, fill=False, ls=":", lw=1.2, ec="cyan", label=f"ERF {mk}%"))
        for j, (w, h) in enumerate(lv.anchors):
            ax.add_patch(
                Rectangle((-w / 2, -h / 2), w, h, fill=False, lw=1.0, ec="lime", label="anchors" if j == 0 else None)
            )
        half = max(rfw, rfh, *(max(w, h) for w, h in lv.anchors)) / 2 * 1.08
        ax.set_xlim(-half, half)
        ax.set_ylim(half, -half)
        ax.set_title(f"{lv.tap}\nstride {_pair_text(lv.stride)}, rf {_pair_text(lv.rf)}", fontsize=9)
        ax.set_xlabel("w offset (input px)")
        ax.set_ylabel("h offset (input px)")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{rep.net.name}: ERF, RF and {rep.rule} anchors per level", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


__all__ = [
    "anchor_report",
    "rule_anchors",
    "rule_scales",
    "apply_ratios",
    "ssd_scales",
    "to_json",
    "to_table",
    "plot",
    "AnchorReport",
    "Level",
    "RULES",
    "DEFAULT_RATIOS",
]
