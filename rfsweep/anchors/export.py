"""Detector levels as anchor-generator settings: mmdetection's AnchorGenerator, torchvision's
AnchorGenerator and DefaultBoxGenerator (JSON), with notes on what each cannot express."""

from __future__ import annotations

from fractions import Fraction

from rfsweep.anchors.design import AnchorReport, ssd_scales
from rfsweep.core.errors import field_error
from rfsweep.core.numbers import json_number, rounded


def _stride_value(stride: tuple[Fraction, Fraction]):
    """mmdetection stride: one number when square, else [w, h] (its order)."""
    sh, sw = (json_number(s) for s in stride)
    return sh if sh == sw else [sw, sh]


def export_mmdet(rep: AnchorReport) -> tuple[dict, list[str]]:
    """mmdetection ``anchor_generator`` settings and notes on what they cannot express.

    mmdetection's ratios are height/width, so each ratio ``r`` here becomes ``1/r`` (same order).
    """
    notes = []
    ratios = [rounded(1 / r) for r in rep.ratios]
    strides = [_stride_value(lv.stride) for lv in rep.levels]
    if any(lv.stride[0] != lv.stride[1] for lv in rep.levels) and rep.rule != "ssd":
        notes.append(
            "non-square strides: mmdetection bases anchors on the shorter stride, these anchors scale "
            "each side by its own stride"
        )
    if rep.rule in ("s3fd", "fpn"):
        cfg = {
            "type": "AnchorGenerator",
            "strides": strides,
            "ratios": ratios,
            "scales": [4 if rep.rule == "s3fd" else 8],
            "center_offset": rep.center_offset,
        }
    elif rep.rule == "retinanet":
        cfg = {
            "type": "AnchorGenerator",
            "octave_base_scale": 4,
            "scales_per_octave": 3,
            "strides": strides,
            "ratios": ratios,
            "center_offset": rep.center_offset,
        }
    else:
        cfg = {
            "type": "AnchorGenerator",
            "strides": strides,
            "ratios": ratios,
            "scales": [1.0],
            "base_sizes": [rounded(lv.scales.sizes[0][1], 4) for lv in rep.levels],
        }
        # base_size != stride: center_offset would scale with the base size, so give the centres explicitly
        if rep.center_offset:
            cfg["centers"] = [
                [rounded(rep.center_offset * float(lv.stride[1])), rounded(rep.center_offset * float(lv.stride[0]))]
                for lv in rep.levels
            ]
        else:
            cfg["center_offset"] = 0.0
        notes.append(
            "AnchorGenerator cannot add SSD's extra ratio-1 box of scale sqrt(s_k*s_k+1) per level; "
            "these settings give the other anchors"
        )
        if rep.net.input_size and rep.net.input_size[0] != rep.net.input_size[1]:
            notes.append("non-square input: mmdetection's base sizes are square; base_sizes use the height")
    return cfg, notes


def export_torchvision(rep: AnchorReport) -> tuple[dict, list[str]]:
    """torchvision settings: ``AnchorGenerator(sizes, aspect_ratios)``, or for the ssd rule
    ``DefaultBoxGenerator(aspect_ratios, scales, steps)`` when the ratios allow it.

    torchvision's aspect ratios are height/width: each ratio ``r`` here becomes ``1/r``.
    """
    notes = []
    if rep.rule == "ssd":
        rs = set(round(r, 9) for r in rep.ratios)
        closed = 1.0 in rs and all(round(1 / r, 9) in rs for r in rs)
        if closed:
            ih, iw = rep.net.input_size
            scales = ssd_scales(len(rep.levels))
            if ih != iw:
                notes.append("non-square input: DefaultBoxGenerator scales are relative to each side, as here")
            cfg = {
                "type": "DefaultBoxGenerator",
                "aspect_ratios": [[rounded(r) for r in sorted(rs) if r > 1] for _ in rep.levels],
                "scales": [rounded(s) for s in scales],
                "steps": [json_number(lv.stride[0]) for lv in rep.levels],
            }
            if any(lv.stride[0] != lv.stride[1] for lv in rep.levels):
                notes.append("non-square strides: steps give the height stride only")
            if rep.center_offset != 0.5:
                notes.append("DefaultBoxGenerator centres boxes at (i+0.5)*step; center_offset 0 is not expressible")
            notes.append("DefaultBoxGenerator orders a level's boxes as s_k, s'_k, then each ratio and its inverse")
            return cfg, notes
        notes.append(
            "ratios not closed under inversion: SSD's DefaultBoxGenerator cannot express them; "
            "AnchorGenerator without SSD's extra ratio-1 box instead"
        )
    cfg = {
        "type": "AnchorGenerator",
        "sizes": [[rounded(w, 4) for (w, h) in lv.scales.sizes] for lv in rep.levels],
        "aspect_ratios": [[rounded(1 / r) for r in rep.ratios] for _ in rep.levels],
    }
    if rep.center_offset != 0:
        notes.append("torchvision's AnchorGenerator centres anchors at i*stride (center_offset 0)")
    if any(lv.stride[0] != lv.stride[1] for lv in rep.levels) or any(
        w != h for lv in rep.levels for w, h in lv.scales.sizes
    ):
        notes.append("non-square strides or input: torchvision sizes are square; sizes give the width")
    notes.append("torchvision rounds anchor coordinates to integers")
    return cfg, notes


def export(rep: AnchorReport, kind: str) -> tuple[dict, list[str]]:
    """``kind`` 'mmdet' or 'torchvision'."""
    if kind == "mmdet":
        return export_mmdet(rep)
    if kind == "torchvision":
        return export_torchvision(rep)
    raise field_error("export", kind, "must be mmdet or torchvision")
