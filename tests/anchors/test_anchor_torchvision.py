"""Anchor search against torchvision itself (torch-marked; torch and torchvision are the user's own install).

Each preset's own model (weights=None: no download) resizes and pads the images with its transform, its
backbone gives the feature-map sizes, torchvision's AnchorGenerator / DefaultBoxGenerator places the anchors
of a configuration, and box_iou (float64) against the transform's resized boxes gives the statistics. They
must equal rfsweep's exactly: random configurations of each preset, the presets' defaults at their real
sizes, and the best row of a small space against an exhaustive torchvision evaluation.
"""

from __future__ import annotations

import numpy as np
import pytest

from paths import ROOT
from rfsweep.anchors import detectors as det
from rfsweep.anchors import scoring as S
from rfsweep.anchors.datasets import BoxSet, read_boxes

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytestmark = pytest.mark.torch

from torchvision.models import detection  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator  # noqa: E402
from torchvision.ops import box_iou  # noqa: E402

torch.set_num_threads(max(1, torch.get_num_threads()))
BUILDERS = {
    "faster_rcnn": detection.fasterrcnn_resnet50_fpn,
    "retinanet": detection.retinanet_resnet50_fpn,
    "ssd300": detection.ssd300_vgg16,
}


def subset(data: BoxSet, images: int) -> BoxSet:
    keep = data.image < images
    return BoxSet(
        data.xyxy[keep], data.image[keep], data.image_h[:images], data.image_w[:images], data.image_ids[:images]
    )


_MODELS: dict = {}


def model_of(name: str, min_size=None, max_size=None):
    key = (name, min_size, max_size)
    if key not in _MODELS:
        kw = {} if name == "ssd300" else {"min_size": min_size or 800, "max_size": max_size or 1333}
        _MODELS[key] = BUILDERS[name](weights=None, weights_backbone=None, **kw).eval()
    return _MODELS[key]


@torch.no_grad()
def torchvision_stats(data: BoxSet, name: str, generator, min_size=None, max_size=None, fg=None) -> dict:
    """The statistics through the preset's own transform, backbone and anchor generator."""
    model = model_of(name, min_size, max_size)
    fg = fg if fg is not None else det.PRESETS[name].fg_iou
    best = np.zeros(len(data))
    positives = 0
    cells = 0
    for i in range(data.images):
        h, w = int(data.image_h[i]), int(data.image_w[i])
        mine = np.flatnonzero(data.image == i)
        boxes = torch.from_numpy(data.xyxy[mine].astype(np.float64))
        images, targets = model.transform(
            [torch.zeros(3, h, w)], [{"boxes": boxes, "labels": torch.ones(len(mine), dtype=torch.int64)}]
        )
        feats = list(model.backbone(images.tensors).values())
        anchors = generator(images, feats)[0].double()
        cells += len(anchors)
        if len(mine):
            iou = box_iou(targets[0]["boxes"].double(), anchors)
            best[mine] = iou.max(dim=1).values.numpy()
            positives += int((iou >= fg).sum())
    n = len(data)
    cls = data.size_class()
    hit = best >= fg

    def share(mask):
        return float(mask.mean()) if len(mask) else float("nan")

    s = 0.0
    for v in best:
        s += float(v)
    return {
        "recall_iou50": float((best >= 0.5).sum() / n),
        "recall_iou70": float((best >= 0.7).sum() / n),
        "best_iou_mean": s / n,
        "positives_per_gt": positives / n,
        "anchors_per_image": cells / data.images,
        "recall_small": share(hit[cls == 0]),
        "recall_medium": share(hit[cls == 1]),
        "recall_large": share(hit[cls == 2]),
    }


def generator_of(name: str, tv: dict):
    if name == "ssd300":
        return DefaultBoxGenerator(tv["aspect_ratios"], scales=tv["scales"], steps=tv["steps"], clip=tv["clip"])
    return AnchorGenerator(tuple(tuple(s) for s in tv["sizes"]), tuple(tuple(r) for r in tv["aspect_ratios"]))


def assert_same(got: dict, want: dict):
    for s in S.STATS:
        if np.isnan(want[s]):
            assert np.isnan(got[s]), s
        elif s == "anchors_per_image":
            assert got[s] == pytest.approx(want[s], rel=1e-12), s
        else:
            assert got[s] == want[s], (s, got[s], want[s])


DATA = ROOT / "data" / "boxes" / "synthetic_instances.json"


@pytest.mark.parametrize("name", ["faster_rcnn", "retinanet", "ssd300"])
def test_default_configurations_at_the_real_sizes_equal_torchvision(name):
    data = subset(read_boxes(DATA), 6)
    space = S.make_space(det.preset(name))
    chunk = next(S.score(space, data))
    tv = S.describe(space, chunk.rows[0], int(chunk.outer[0]))["torchvision"]
    want = torchvision_stats(data, name, generator_of(name, tv))
    assert_same(dict(zip(S.STATS, chunk.stats[0])), want)


@pytest.mark.parametrize("name", ["faster_rcnn", "retinanet", "ssd300"])
@pytest.mark.parametrize("seed", range(4))
def test_random_configurations_equal_torchvision(name, seed):
    rng = np.random.default_rng(seed)
    data = subset(read_boxes(DATA), 8)
    small = {} if name == "ssd300" else {"min_size": int(rng.integers(160, 320)), "max_size": 480}
    p = det.preset(name, **small)
    if name == "ssd300":
        scales = sorted(
            rng.choice(
                [0.04, 0.07, 0.1, 0.15, 0.25, 0.33, 0.45, 0.51, 0.69, 0.8, 0.87, 1.05], 9, replace=False
            ).tolist()
        )
        space = S.make_space(p, scales=scales, ratios=[1.5, 2.0, 3.0], ratio_count=int(rng.integers(1, 3)))
    else:
        sizes = sorted(rng.choice(np.arange(8, 400), 7, replace=False).tolist())
        ratios = sorted(rng.choice([0.25, 0.4, 0.5, 0.8, 1.0, 1.25, 2.0, 2.5, 4.0], 4, replace=False).tolist())
        space = S.make_space(p, sizes=sizes, ratios=ratios, ratio_count=int(rng.integers(1, 4)),
                             scales_per_octave=[1, 2, 3] if name == "retinanet" else None)  # fmt: skip
    picks = set(rng.choice(space.size, min(3, space.size), replace=False).tolist())
    for chunk in S.score(space, data):
        for j in np.flatnonzero(np.isin(chunk.ids, list(picks))):
            tv = S.describe(space, chunk.rows[j], int(chunk.outer[j]))["torchvision"]
            want = torchvision_stats(data, name, generator_of(name, tv), **small)
            assert_same(dict(zip(S.STATS, chunk.stats[j])), want)


def test_the_best_row_of_a_small_space_is_torchvisions_best():
    data = subset(read_boxes(DATA), 6)
    small = {"min_size": 256, "max_size": 400}
    p = det.preset("faster_rcnn", **small)
    space = S.make_space(p, sizes=[16, 32, 48, 64, 128, 256], ratios=[0.5, 1.0, 2.0, 3.0], ratio_count=2)
    assert space.size == 6 * 6
    every = []
    for chunk in S.score(space, data):
        for j in range(len(chunk)):
            tv = S.describe(space, chunk.rows[j], int(chunk.outer[j]))["torchvision"]
            every.append(
                (int(chunk.ids[j]), torchvision_stats(data, "faster_rcnn", generator_of("faster_rcnn", tv), **small))
            )
    best_id = min(every, key=lambda e: (-e[1]["recall_iou70"], e[0]))[0]
    top = S.search(data, "faster_rcnn", sizes=[16, 32, 48, 64, 128, 256], ratios=[0.5, 1.0, 2.0, 3.0], ratio_count=2,
                   sort="recall_iou70", limit=1, **small)  # fmt: skip
    assert int(top["config"].iloc[0]) == best_id
