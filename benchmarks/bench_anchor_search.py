"""Anchor search beside the same statistics computed the ordinary way, in one run.

Data: the synthetic COCO-format boxes of data/boxes/generate.py, grown to --images images (default 640:
about 5,500 boxes). Space: Faster R-CNN (torchvision's fasterrcnn_resnet50_fpn geometry), 18 candidate
sizes (one per level, increasing: C(18, 5) = 8,568) x 4 of 9 aspect ratios (C(9, 4) = 126): 1,079,568
configurations.

* rfsweep: `rfsweep anchor-search ... --sort recall_iou70 --limit 10` as a child process, whole process
  (start-up, reading the JSON, tables, every configuration scored), best of --repeat;
* baselines, per configuration, on --sample configurations of the same space drawn at random:
  - torchvision (when torch and torchvision import): AnchorGenerator on each image's resized, padded size
    and its feature-map sizes, box_iou against the resized boxes (float64), the statistics read off;
  - numpy: the same anchors generated with numpy broadcasting and the same IoU matrices.

Prints a table: seconds, configurations/s, seconds per configuration, and the speed-up of rfsweep per
configuration. The baselines' statistics are checked equal to rfsweep's rows for the sampled
configurations (torchvision's, float64 IoU).

    python benchmarks/bench_anchor_search.py            # ~1-2 min on 2 cores
    python benchmarks/bench_anchor_search.py --quick    # 100 images, 7 sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "data" / "boxes"))

SIZES = [12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512, 640]
RATIOS = [0.25, 0.33, 0.5, 0.75, 1.0, 1.33, 2.0, 3.0, 4.0]


def dataset(path: Path, images: int) -> None:
    from generate import build

    path.write_text(json.dumps(build(n_images=images)), encoding="utf-8")


def run_rfsweep(boxes: Path, sizes, ratios, k, repeat: int, device: str = "cpu") -> tuple[float, dict]:
    cmd = [sys.executable, "-c", "from rfsweep.cli.main import run; run()", "anchor-search", "--boxes", str(boxes),
           "--sizes", ",".join(map(str, sizes)), "--ratios", ",".join(map(str, ratios)), "--ratio-count", str(k),
           "--sort", "recall_iou70", "--limit", "10", "--json", "--device", device]  # fmt: skip
    best, out = None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        dt = time.perf_counter() - t0
        if best is None or dt < best:
            best, out = dt, json.loads(proc.stdout)
    return best, out


def torchvision_stats(data, preset, config) -> dict | None:
    """The statistics of one configuration through torchvision's own modules (None without torch)."""
    try:
        import torch
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.image_list import ImageList
        from torchvision.ops import box_iou
    except ImportError:
        return None
    from rfsweep.anchors import detectors as det

    gen = AnchorGenerator(sizes=tuple(tuple(s) for s in config["sizes"]),
                          aspect_ratios=tuple(tuple(r) for r in config["aspect_ratios"]))  # fmt: skip
    best = np.zeros(len(data))
    positives = 0
    cells = 0
    for i in range(data.images):
        nh, nw, rh, rw = det.resized(preset, int(data.image_h[i]), int(data.image_w[i]))
        ph, pw = det.padded(preset, nh, nw)
        feats = [torch.zeros(1, 1, gh, gw) for gh, gw, _, _ in det.grids(preset, ph, pw)]
        images = ImageList(torch.zeros(1, 3, ph, pw), [(nh, nw)])
        anchors = gen(images, feats)[0].double()
        cells += len(anchors)
        mine = np.flatnonzero(data.image == i)
        if len(mine) == 0:
            continue
        boxes = torch.from_numpy(data.xyxy[mine] * np.array([rw, rh, rw, rh]))
        iou = box_iou(boxes, anchors)
        best[mine] = iou.max(dim=1).values.numpy()
        positives += int((iou >= preset.fg_iou).sum())
    return {"recall_iou70": float((best >= 0.7).mean()), "positives_per_gt": positives / len(data),
            "anchors_per_image": cells / data.images}  # fmt: skip


def numpy_stats(data, preset, config) -> dict:
    """The same statistics with numpy: every anchor of every image, full IoU matrices (float64)."""
    from rfsweep.anchors import detectors as det

    best = np.zeros(len(data))
    positives = 0
    cells = 0
    for i in range(data.images):
        nh, nw, rh, rw = det.resized(preset, int(data.image_h[i]), int(data.image_w[i]))
        ph, pw = det.padded(preset, nh, nw)
        parts = []
        for (gh, gw, sh, sw), sizes, ratios in zip(det.grids(preset, ph, pw), config["sizes"], config["aspect_ratios"]):
            cell = np.array([det.cell_half_extents(s, r) for r in ratios for s in sizes])
            jj, ii = np.meshgrid(np.arange(gh) * sh, np.arange(gw) * sw, indexing="ij")
            c = np.stack([ii.ravel(), jj.ravel()], 1)[:, None, :].astype(np.float64)
            parts.append(np.concatenate([c - cell[None], c + cell[None]], axis=2).reshape(-1, 4))
        anchors = np.concatenate(parts)
        cells += len(anchors)
        mine = np.flatnonzero(data.image == i)
        if len(mine) == 0:
            continue
        b = data.xyxy[mine] * np.array([rw, rh, rw, rh])
        area_a = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        w = np.clip(
            np.minimum(b[:, None, 2], anchors[None, :, 2]) - np.maximum(b[:, None, 0], anchors[None, :, 0]), 0, None
        )
        h = np.clip(
            np.minimum(b[:, None, 3], anchors[None, :, 3]) - np.maximum(b[:, None, 1], anchors[None, :, 1]), 0, None
        )
        inter = w * h
        iou = inter / (area_b[:, None] + area_a[None, :] - inter)
        best[mine] = iou.max(axis=1)
        positives += int((iou >= preset.fg_iou).sum())
    return {"recall_iou70": float((best >= 0.7).mean()), "positives_per_gt": positives / len(data),
            "anchors_per_image": cells / data.images}  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 images, 7 sizes, 3 of 5 ratios")
    ap.add_argument("--images", type=int, default=640)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sample", type=int, default=3, help="configurations timed through each baseline")
    ap.add_argument("--baselines", default="torchvision,numpy", help="which baselines to time (comma list, or none)")
    ap.add_argument("--devices", default="cpu", help="rfsweep on these devices (cpu,cuda): the GPU row needs one")
    args = ap.parse_args(argv)
    sizes, ratios, k, images = SIZES, RATIOS, 4, args.images
    if args.quick:
        sizes, ratios, k, images = [16, 32, 64, 128, 256, 512, 1024], [0.25, 0.5, 1.0, 2.0, 4.0], 3, 100

    import numba

    from rfsweep.anchors import detectors as det
    from rfsweep.anchors import scoring as S
    from rfsweep.anchors.datasets import read_boxes

    with tempfile.TemporaryDirectory() as tmp:
        boxes = Path(tmp) / "boxes.json"
        dataset(boxes, images)
        data = read_boxes(boxes)
        preset = det.preset("faster_rcnn")
        space = S.make_space(preset, sizes=sizes, ratios=ratios, ratio_count=k)
        print(
            f"anchor search: faster_rcnn, {space.size:,} configurations x {len(data):,} boxes in {data.images} images; "
            f"host {platform.node()}, {os.cpu_count()} cores, numba {numba.__version__}"
        )
        rows = []
        for device in args.devices.split(","):
            dt, out = run_rfsweep(boxes, sizes, ratios, k, args.repeat, device)
            if device == "cpu" or len(rows) == 0:
                rf_s, summary = dt, out
            rows.append((f"rfsweep anchor-search, {device} (whole process)", space.size, dt))
            print(f"rfsweep on {device}: {dt:.2f} s, best {out['rows'][0]['recall_iou70']:.4f}", flush=True)
        rng = np.random.default_rng(0)
        picks = rng.choice(space.size, args.sample, replace=False)
        wanted = {int(i) for i in picks}
        configs = {}
        chosen = [b for b in args.baselines.split(",") if b in ("torchvision", "numpy")]
        for chunk in S.score(space, data) if chosen else ():
            for j in np.flatnonzero(np.isin(chunk.ids, list(wanted))):
                d = S.describe(space, chunk.rows[j], int(chunk.outer[j]))
                configs[int(chunk.ids[j])] = (d["torchvision"], chunk.stats[j])
        baselines = {
            "torchvision": ("torchvision AnchorGenerator + box_iou", torchvision_stats),
            "numpy": ("numpy broadcast + IoU", numpy_stats),
        }
        for key in [b for b in args.baselines.split(",") if b in baselines]:
            name, fn = baselines[key]
            t0 = time.perf_counter()
            ok = True
            for tv, stats in configs.values():
                got = fn(data, preset, tv)
                if got is None:
                    ok = None
                    break
                ok &= got["recall_iou70"] == stats[1] and got["positives_per_gt"] == stats[3]
            dt = time.perf_counter() - t0
            if ok is None:
                print(f"{name}: not available (torch or torchvision missing)")
                continue
            rows.append((name + ("" if ok else " (MISMATCH)"), len(configs), dt))
            print(f"{name}: {dt:.2f} s for {len(configs)} configurations", flush=True)
    per = rf_s / space.size
    print()
    print(f"{'method':42s} {'configs':>10s} {'seconds':>9s} {'configs/s':>11s} {'s/config':>10s} {'rfsweep x':>10s}")
    for name, n, dt in rows:
        pc = dt / n
        print(f"{name:42s} {n:10,d} {dt:9.2f} {n / dt:11.3g} {pc:10.3g} {pc / per:10.3g}")
    print(f"\nrfsweep's best: {summary['rows'][0]['torchvision'] if summary.get('rows') else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
