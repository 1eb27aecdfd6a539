"""Anchor search against the brute-force reference (tests/naive.py: every anchor of every image generated as
torchvision does, full IoU matrices): every statistic of every configuration of random spaces, on random
datasets, for each preset; the space sizes; the presets' default configurations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from naive import naive_anchor_stats
from rfsweep.anchors import detectors as det
from rfsweep.anchors import scoring as S
from rfsweep.anchors.datasets import BoxSet


def synthetic(n_img: int, n: int, seed: int, lo: int = 40, hi: int = 160) -> BoxSet:
    """Random boxes in random images; a few tiny and a few whole-image boxes, some boxes touching edges."""
    rng = np.random.default_rng(seed)
    H = rng.integers(lo, hi, n_img)
    W = rng.integers(lo, hi, n_img)
    img = rng.integers(0, n_img, n)
    w = np.maximum(1.0, rng.uniform(0, 1, n) ** 2 * W[img])
    h = np.maximum(1.0, rng.uniform(0, 1, n) ** 2 * H[img])
    x1 = rng.uniform(0, 1, n) * (W[img] - w)
    y1 = rng.uniform(0, 1, n) * (H[img] - h)
    xyxy = np.stack([x1, y1, x1 + w, y1 + h], axis=1)
    xyxy[: n // 10, :2] = 0.0  # some boxes at the image's origin
    return BoxSet(xyxy, img, H, W, list(range(n_img)))


def detector_of(p: det.Preset) -> dict:
    d = {"kind": p.kind, "strides": list(p.strides), "fg": p.fg_iou}
    if p.kind == "ssd":
        d.update(side=p.fixed_size[0], grids=list(p.ssd_grids))
    else:
        d.update(min_size=p.min_size, max_size=p.max_size, divisible=p.size_divisible)
    return d


def assert_rows_equal_naive(space: S.AnchorSpace, data: BoxSet, most: int = 6, seed: int = 0):
    """Every row counted; ``most`` rows of the space (drawn at random, the first and last always) compared
    statistic by statistic with the brute force."""
    rng = np.random.default_rng(seed)
    picked = set(rng.choice(space.size, min(most, space.size), replace=False).tolist()) | {0, space.size - 1}
    rows = 0
    for scored in S.score(space, data, threads=2):
        rows += len(scored)
        for i in range(len(scored)):
            if int(scored.ids[i]) not in picked:
                continue
            d = S.describe(space, scored.rows[i], int(scored.outer[i]))
            if space.preset.kind == "grid":
                config = {"sizes": d["torchvision"]["sizes"], "ratios": d["torchvision"]["aspect_ratios"]}
            else:
                config = {"scales": d["values"], "ratios": d["ratios"]}
            want = naive_anchor_stats(
                data.xyxy, data.image, data.image_h, data.image_w, detector_of(space.preset), config
            )
            for j, name in enumerate(S.STATS):
                got = scored.stats[i, j]
                if name == "anchors_per_image":
                    assert got == pytest.approx(want[name], rel=1e-12), (name, d)
                elif math.isnan(want[name]):
                    assert math.isnan(got), (name, d)
                else:
                    assert got == want[name], (name, got, want[name], d)
    assert rows == space.size


SMALL = {"faster_rcnn": dict(min_size=64, max_size=100), "retinanet": dict(min_size=96, max_size=128)}


@pytest.mark.parametrize("name", ["faster_rcnn", "retinanet", "ssd300"])
def test_default_configuration_is_one_row_equal_to_the_brute_force(name):
    p = det.preset(name, **SMALL.get(name, {}))
    space = S.make_space(p)
    assert space.size == 1
    assert_rows_equal_naive(space, synthetic(5, 60, seed=1))


@given(
    seed=st.integers(0, 10_000),
    n_sizes=st.integers(5, 7),
    n_ratios=st.integers(1, 4),
    data=st.data(),
)
def test_grid_spaces_equal_the_brute_force(seed, n_sizes, n_ratios, data):
    name = data.draw(st.sampled_from(["faster_rcnn", "retinanet"]))
    p = det.preset(
        name, min_size=data.draw(st.integers(32, 96)), max_size=128, fg_iou=data.draw(st.sampled_from([0.5, 0.7]))
    )
    rng = np.random.default_rng(seed)
    sizes = sorted(rng.choice(np.arange(4, 200), n_sizes, replace=False).tolist())
    ratios = sorted(rng.choice([0.25, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0], n_ratios, replace=False).tolist())
    k = data.draw(st.integers(1, n_ratios))
    per_level = data.draw(st.booleans()) and n_ratios <= 2
    octaves = data.draw(st.sampled_from([None, [1, 2], [3]]))
    space = S.make_space(
        p, sizes=sizes, ratios=ratios, ratio_count=k, per_level_ratios=per_level, scales_per_octave=octaves
    )
    if space.size > 60:
        space = S.make_space(p, sizes=sizes[:5], ratios=ratios, ratio_count=k, scales_per_octave=octaves)
    assert_rows_equal_naive(space, synthetic(4, 40, seed))


@given(seed=st.integers(0, 10_000), extra=st.integers(0, 1), data=st.data())
def test_ssd_spaces_equal_the_brute_force(seed, extra, data):
    p = det.preset("ssd300")
    scales = sorted({0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9, 1.05, 1.2}) if extra else None
    if scales is not None:
        scales = sorted(np.random.default_rng(seed).choice(scales, 8, replace=False).tolist())
    ratios = data.draw(st.sampled_from([None, [2.0], [2.0, 3.0]]))
    k = 1 if ratios is not None else None
    space = S.make_space(p, scales=scales, ratios=ratios, ratio_count=k)
    assert space.size <= 8 * 2**6
    assert_rows_equal_naive(space, synthetic(3, 25, seed, lo=100, hi=400))


def test_space_sizes_are_exact():
    p = det.preset("faster_rcnn")
    assert S.make_space(p, sizes=[16, 32, 64, 128, 256, 512, 1024]).size == 21  # C(7, 5)
    assert S.make_space(p, ratios=[0.25, 0.5, 1, 2, 4], ratio_count=3).size == 10  # C(5, 3)
    assert S.make_space(p, ratios=[0.25, 0.5, 1, 2, 4], ratio_count=3, per_level_ratios=True).size == 10**5
    r = det.preset("retinanet")
    assert S.make_space(r, scales_per_octave=[1, 2, 3, 4]).size == 4
    s = det.preset("ssd300")
    assert S.make_space(s, scales=[0.05, 0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]).size == 8  # C(8, 7)
    assert S.make_space(s, ratios=[2, 3, 4], ratio_count=2).size == 3**6
    # the scored rows are as many as the space says
    data = synthetic(3, 20, seed=5)
    sp = S.make_space(det.preset("faster_rcnn", min_size=48, max_size=64), sizes=[8, 16, 32, 64, 128, 256, 512])
    assert sum(len(c) for c in S.score(sp, data)) == 21


def test_torchvision_keywords_of_the_defaults():
    data = synthetic(2, 10, seed=2)
    for name, want in [
        ("faster_rcnn", {"sizes": [[32], [64], [128], [256], [512]], "aspect_ratios": [[0.5, 1.0, 2.0]] * 5}),
        (
            "retinanet",
            {
                "sizes": [[x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))] for x in (32, 64, 128, 256, 512)],
                "aspect_ratios": [[0.5, 1.0, 2.0]] * 5,
            },
        ),
    ]:
        space = S.make_space(det.preset(name))
        scored = next(S.score(space, data))
        assert S.describe(space, scored.rows[0], int(scored.outer[0]))["torchvision"] == want
    space = S.make_space(det.preset("ssd300"))
    scored = next(S.score(space, data))
    tv = S.describe(space, scored.rows[0], int(scored.outer[0]))["torchvision"]
    assert tv == {
        "aspect_ratios": [[2.0], [2.0, 3.0], [2.0, 3.0], [2.0, 3.0], [2.0], [2.0]],
        "scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        "steps": [8, 16, 32, 64, 100, 300],
        "clip": True,
    }


def test_resize_and_grids_as_torchvision():
    p = det.preset("faster_rcnn")
    nh, nw, rh, rw = det.resized(p, 480, 640)
    # the scale in Python floats (torchvision's eager path): 480 x (800 / 480) = 800.0000000000001 -> 800
    assert (nh, nw) == (800, 1066)
    assert det.padded(p, nh, nw) == (800, 1088)
    # P6 of an 800-pixel side: ceil(800 / 64) = 13 cells, stride 800 // 13 = 61 (AnchorGenerator's integer division)
    assert det.grids(p, 800, 1088)[4] == (13, 17, 61, 64)
    assert det.cell_half_extents(32, 0.5) == (23.0, 11.0)  # 45.25 x 22.63, half extents rounded


@pytest.mark.gpu
def test_the_gpu_scores_every_configuration_as_the_cpu():
    from rfsweep.engine import device as gpu

    if gpu.simulated() or gpu.cuda_problem() is not None:
        pytest.skip("needs a CUDA GPU usable by numba (rfsweep[cuda] and an NVIDIA driver)")
    data = synthetic(40, 600, seed=11, lo=200, hi=700)
    sizes = [12, 16, 24, 32, 48, 64, 96, 128, 256, 512]
    scales = [0.04, 0.07, 0.1, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
    spaces = [
        S.make_space(det.preset("faster_rcnn"), sizes=sizes, ratios=[0.25, 0.5, 1, 2, 4], ratio_count=3),
        S.make_space(
            det.preset("retinanet"),
            ratios=[0.5, 1, 2],
            ratio_count=1,
            per_level_ratios=True,
            scales_per_octave=[1, 2, 3],
        ),
        S.make_space(det.preset("ssd300"), scales=scales, ratios=[2, 3], ratio_count=1),
    ]
    for space in spaces:
        got = {d: S.Scored.concat(list(S.score(space, data, device=d))) for d in ("cpu", "cuda")}
        assert len(got["cpu"]) == space.size
        for f in ("ids", "rows", "outer", "stats"):
            assert np.array_equal(getattr(got["cpu"], f), getattr(got["cuda"], f), equal_nan=True), f


@pytest.mark.parametrize("name", ["faster_rcnn", "ssd300"])
def test_limits_keep_exactly_the_configurations_whose_anchors_fit(name):
    """A model's limits remove choices: the rows kept are the unlimited space's rows whose anchors all fit,
    with the same statistics, and the space's size counts them exactly."""
    data = synthetic(4, 40, seed=9, lo=100, hi=300)
    if name == "ssd300":
        p = det.preset(name)
        opts = dict(scales=[0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9, 1.05], ratios=[2.0, 3.0], ratio_count=1)
        nominal = [2 * s * 300 for s in p.ssd_scales[:-1]]  # SSD's s' and ratio boxes outgrow s_k
    else:
        p = det.preset(name, min_size=96, max_size=160)
        opts = dict(sizes=[8, 16, 24, 32, 64, 96, 128, 256], ratios=[0.5, 1.0, 2.0], ratio_count=2)
        nominal = list(p.sizes)
    rf = [(1.0 * v, 1.2 * v) for v in nominal]  # anchors up to about the preset's own at each level
    erf = [(h / 2, w / 2) for h, w in rf]
    limits = S.Limits(rf=rf, erf=erf, max_rf=1.0, max_erf=2.0)
    free = S.make_space(p, **opts)
    kept = S.make_space(p, limits=limits, **opts)
    allowed = {}
    for chunk in S.score(free, data):
        for i in range(len(chunk)):
            g = int(chunk.outer[i])
            octave, shared = free.globals()[g]
            ok = True
            for lvl, row in enumerate(chunk.rows[i]):
                xs, o = free.decode_row(row)
                subset = free.subsets_of(g)[o]
                ok &= limits.allows(free, lvl, S.level_shapes(free, lvl, octave, xs, subset))
            if ok:
                allowed[(g, tuple(chunk.rows[i]))] = chunk.stats[i]
    got = {}
    for chunk in S.score(kept, data):
        for i in range(len(chunk)):
            got[(int(chunk.outer[i]), tuple(chunk.rows[i]))] = chunk.stats[i]
    assert 0 < kept.size == len(got) == len(allowed) < free.size
    assert got.keys() == allowed.keys()
    for k, v in got.items():
        assert np.array_equal(v, allowed[k], equal_nan=True)


def test_model_limits_come_from_the_taps_rf_and_erf():
    p = det.preset("faster_rcnn")
    taps = "layer1.2.relu_2,layer2.3.relu_2,layer3.5.relu_2,layer4.2.relu_2,-"
    lim = S.model_limits(p, "resnet50", taps, max_erf=2.0)
    assert lim.rf[:4] == [(35.0, 35.0), (91.0, 91.0), (267.0, 267.0), (427.0, 427.0)]  # rfsweep anchors resnet50
    assert lim.erf[0] == (19.0, 19.0) and lim.erf[4] == (math.inf, math.inf)  # ERF 95 % extents; '-': no limit
    space = S.make_space(p, sizes=[16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512], limits=lim)
    assert space.size == 189
