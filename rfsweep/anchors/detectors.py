"""Detector presets as torchvision builds them: the image resize, the feature-map grids, and where each anchor
(or SSD default box) lies, in the same floating-point operations, so that the statistics of an anchor
search are torchvision's own.

* ``faster_rcnn`` (fasterrcnn_resnet50_fpn): GeneralizedRCNNTransform(min_size=800, max_size=1333), images
  padded to a multiple of 32; ResNet-50-FPN levels P2-P6 (grids H/4 ... H/32 of the padded size and
  ceil(H/64)); AnchorGenerator(sizes ((32,), (64,), (128,), (256,), (512,)), aspect_ratios (0.5, 1.0, 2.0)
  per level); the RPN's foreground IoU 0.7.
* ``retinanet`` (retinanet_resnet50_fpn): the same transform; levels P3-P7 (H/8 ... H/32, then ceil halvings);
  sizes (x, int(x 2^(1/3)), int(x 2^(2/3))) for x in 32 ... 512, the same ratios; foreground IoU 0.5.
* ``ssd300`` (ssd300_vgg16): images resized to 300 x 300; grids 38, 19, 10, 5, 3, 1; DefaultBoxGenerator
  ([[2], [2, 3], [2, 3], [2, 3], [2], [2]], scales [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps
  [8, 16, 32, 64, 100, 300], clip=True); foreground IoU 0.5.

Conventions, torchvision's: boxes are [x1, y1, x2, y2] in pixels; an aspect ratio is h / w; AnchorGenerator
centres its cell anchors at (i x stride_w, j x stride_h) with no offset, where stride = padded size // grid
size (integer division: P6 of an 800-pixel side is a grid of 13 with stride 61), and rounds each cell
anchor's half extents (half to even, in float32); images are taken one at a time (a batch of one: the
padding is the image's own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.space.settings import parse_int

KINDS = ("grid", "ssd")


@dataclass(frozen=True)
class Preset:
    """A detector's geometry. ``kind`` 'grid' (AnchorGenerator) or 'ssd' (DefaultBoxGenerator)."""

    name: str
    kind: str
    model: str  # the torchvision builder it reproduces
    min_size: int
    max_size: int
    size_divisible: int
    fixed_size: tuple[int, int] | None  # (h, w): SSD's fixed resize
    strides: tuple[int, ...]  # nominal strides of the levels (grids: ceil(padded / stride))
    fg_iou: float
    sizes: tuple[int, ...] = ()  # 'grid': the default base size per level
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # 'grid': the default aspect ratios (h / w), every level
    scales_per_octave: int = 1  # 'grid': sizes per level x 2^(k / n), k < n (RetinaNet: 3)
    ssd_scales: tuple[float, ...] = ()  # 'ssd': s_0 .. s_L
    ssd_ratios: tuple[tuple[float, ...], ...] = ()  # 'ssd': the extra aspect ratios per level
    ssd_grids: tuple[int, ...] = ()  # 'ssd': the feature-map sizes (square)
    extra: dict = field(default_factory=dict)

    @property
    def levels(self) -> int:
        return len(self.strides)


PRESETS = {
    "faster_rcnn": Preset(
        "faster_rcnn",
        "grid",
        "fasterrcnn_resnet50_fpn",
        800,
        1333,
        32,
        None,
        (4, 8, 16, 32, 64),
        0.7,
        sizes=(32, 64, 128, 256, 512),
    ),
    "retinanet": Preset(
        "retinanet",
        "grid",
        "retinanet_resnet50_fpn",
        800,
        1333,
        32,
        None,
        (8, 16, 32, 64, 128),
        0.5,
        sizes=(32, 64, 128, 256, 512),
        scales_per_octave=3,
    ),
    "ssd300": Preset(
        "ssd300",
        "ssd",
        "ssd300_vgg16",
        300,
        300,
        1,
        (300, 300),
        (8, 16, 32, 64, 100, 300),
        0.5,
        ssd_scales=(0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05),
        ssd_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,)),
        ssd_grids=(38, 19, 10, 5, 3, 1),
    ),
}


def preset(name: str, *, min_size=None, max_size=None, strides=None, fg_iou=None) -> Preset:
    """A preset by name, with the overrides of another backbone or size (None keeps the preset's)."""
    if name not in PRESETS:
        raise field_error("detector", name, f"must be one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    changes: dict = {}
    if min_size is not None or max_size is not None:
        if p.kind == "ssd":
            size = int(min_size if min_size is not None else max_size)
            if size < 1:
                raise field_error("min_size", size, "must be an integer >= 1")
            changes.update(min_size=size, max_size=size, fixed_size=(size, size))
        else:
            lo = p.min_size if min_size is None else int(min_size)
            hi = p.max_size if max_size is None else int(max_size)
            if lo < 1:
                raise field_error("min_size", lo, "must be an integer >= 1")
            if hi < lo:
                raise field_error("max_size", hi, f"must be >= min_size ({lo})")
            changes.update(min_size=lo, max_size=hi)
    if strides is not None:
        items = [s for s in strides.split(",") if s.strip()] if isinstance(strides, str) else list(strides)
        strides = tuple(parse_int("strides", s, 1) for s in items)
        if not strides or any(s < 1 for s in strides) or list(strides) != sorted(set(strides)):
            raise field_error("strides", ",".join(map(str, strides)), "must be increasing integers >= 1")
        if p.kind == "ssd" and len(strides) != p.levels:
            raise field_error("strides", ",".join(map(str, strides)), f"ssd300 has {p.levels} levels (its steps)")
        changes["strides"] = strides
        if p.kind == "grid" and len(strides) != p.levels:
            changes["sizes"] = tuple(32 * 2**i for i in range(len(strides)))
    if fg_iou is not None:
        t = float(fg_iou)
        if not 0 < t <= 1:
            raise field_error("fg_iou", fg_iou, "must be in (0, 1]")
        changes["fg_iou"] = t
    return replace(p, **changes) if changes else p


# ---------------------------------------------------------------- the transform


def resized(p: Preset, h: int, w: int) -> tuple[int, int, float, float]:
    """(new_h, new_w, ratio_h, ratio_w) of an image of h x w pixels, as GeneralizedRCNNTransform resizes it.

    The scale is min(min_size / short side, max_size / long side) in Python floats (float64: torchvision's
    eager path; its scripted and traced paths take it in float32, and a 480-pixel side then becomes 799,
    not 800); the new size floor(side x scale) (interpolate's recompute_scale_factor); the box ratios
    float32(new) / float32(old), as resize_boxes divides them.
    """
    if p.fixed_size is not None:
        nh, nw = p.fixed_size
    else:
        scale = min(float(p.min_size) / min(h, w), float(p.max_size) / max(h, w))
        nh, nw = int(math.floor(h * scale)), int(math.floor(w * scale))
    rh = float(np.float32(np.float32(nh) / np.float32(h)))
    rw = float(np.float32(np.float32(nw) / np.float32(w)))
    return nh, nw, rh, rw


def padded(p: Preset, nh: int, nw: int) -> tuple[int, int]:
    d = p.size_divisible
    return int(math.ceil(nh / d) * d), int(math.ceil(nw / d) * d)


def grids(p: Preset, ph: int, pw: int) -> list[tuple[int, int, int, int]]:
    """Per level (grid_h, grid_w, stride_h, stride_w) of a padded image, as the backbone and AnchorGenerator
    make them: grids ceil(padded / stride) (a stride-2 layer with padding halves a side rounding up), strides
    padded // grid."""
    if p.kind == "ssd":
        return [(g, g, 0, 0) for g in p.ssd_grids]
    out = []
    for s in p.strides:
        gh, gw = -(-ph // s), -(-pw // s)
        out.append((gh, gw, ph // gh, pw // gw))
    return out


# ---------------------------------------------------------------- anchor shapes


def cell_half_extents(size: float, ratio: float) -> tuple[float, float]:
    """(a, b): AnchorGenerator's cell anchor [-a, -b, a, b] of one size and aspect ratio (h / w), in float32
    as generate_anchors computes it: h_ratio = sqrt(r), w_ratio = 1 / h_ratio, (w_ratio x size) / 2 rounded
    half to even."""
    f32 = np.float32
    hr = np.sqrt(f32(ratio))
    wr = f32(1) / hr
    ws, hs = wr * f32(size), hr * f32(size)
    return float(np.round(ws / f32(2))), float(np.round(hs / f32(2)))


def octave_sizes(size: int, n: int) -> list[int]:
    """A level's sizes with n scales per octave, as torchvision's RetinaNet writes them: int(x 2^(k/n))."""
    return [int(size * 2 ** (k / n)) if k else int(size) for k in range(n)]


def ssd_wh_pairs(s_k: float, s_next: float, ratios) -> list[tuple[float, float]]:
    """DefaultBoxGenerator's (w, h) pairs of one level, in float64 as it computes them (then float32)."""
    s_prime = math.sqrt(s_k * s_next)
    pairs = [(s_k, s_k), (s_prime, s_prime)]
    for ar in ratios:
        sq = math.sqrt(ar)
        w, h = s_k * sq, s_k / sq
        pairs += [(w, h), (h, w)]
    return pairs


def ssd_intervals(p: Preset, level: int, w: float, image: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the default boxes of one level and one (clipped) extent along one axis, over the grid's
    cells: ((i + 0.5) / (image / step) - 0.5 w) x image in float32, as DefaultBoxGenerator computes them."""
    f32 = np.float32
    g, step = p.ssd_grids[level], p.strides[level]
    centres = ((np.arange(g, dtype=np.int64) + 0.5).astype(np.float32) / f32(image / step)).astype(np.float32)
    ww = f32(min(max(w, 0.0), 1.0))  # clip=True clamps w, h to [0, 1]
    half = f32(0.5) * ww
    lo = ((centres - half) * f32(image)).astype(np.float32)
    hi = ((centres + half) * f32(image)).astype(np.float32)
    return lo.astype(np.float64), hi.astype(np.float64)


__all__ = [
    "PRESETS",
    "Preset",
    "preset",
    "resized",
    "padded",
    "grids",
    "cell_half_extents",
    "octave_sizes",
    "ssd_wh_pairs",
    "ssd_intervals",
]
