"""Anchor search's inputs and outputs: the box readers (COCO, VOC, YOLO, CSV, Parquet) agree on the same
boxes, bad files are one line naming the file, the record and the field; the command's selections equal
pandas on the full output; the Parquet file carries its settings; the exports are the row's keywords."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from paths import ROOT
from rfsweep.anchors import scoring as S
from rfsweep.anchors.datasets import image_size, read_boxes
from rfsweep.cli.main import main

SYNTHETIC = ROOT / "data" / "boxes" / "synthetic_instances.json"
BOXES = [  # image id, (h, w), boxes x1 y1 x2 y2
    ("a", (100, 200), [(10, 20, 50, 60), (0, 0, 200, 100)]),
    ("b", (300, 150), [(5.5, 7.25, 20, 290)]),
]


def run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def one_line(res, *words):
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def write_coco(path, crowd=False):
    images = [{"id": i, "width": hw[1], "height": hw[0]} for i, (_, hw, _) in enumerate(BOXES)]
    anns = []
    for i, (_, _, boxes) in enumerate(BOXES):
        for x1, y1, x2, y2 in boxes:
            anns.append({"id": len(anns), "image_id": i, "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
    if crowd:
        anns.append({"id": 99, "image_id": 0, "bbox": [1, 1, 5, 5], "iscrowd": 1})
        anns.append({"id": 98, "image_id": 0, "bbox": [1, 1, 0, 5], "iscrowd": 0})  # zero width
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return path


def png(path, h, w):
    raw = b"".join(b"\x00" + b"\x00" * w for _ in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )  # fmt: skip


def test_every_reader_gives_the_same_boxes(tmp_path):
    want = np.array([b for _, _, bs in BOXES for b in bs], np.float64)
    coco = read_boxes(write_coco(tmp_path / "c.json", crowd=True))
    assert coco.skipped == 2  # the crowd box and the empty one
    voc = tmp_path / "Annotations"
    voc.mkdir()
    yolo = tmp_path / "labels"
    yolo.mkdir()
    (tmp_path / "images").mkdir()
    rows = []
    for name, (h, w), boxes in BOXES:
        objs = "".join(
            f"<object><difficult>{int(k == 1)}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for k, (x1, y1, x2, y2) in enumerate(boxes)
        )
        (voc / f"{name}.xml").write_text(
            f"<annotation><size><width>{w}</width><height>{h}</height></size>{objs}</annotation>"
        )
        lines = [
            f"0 {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}" for x1, y1, x2, y2 in boxes
        ]
        (yolo / f"{name}.txt").write_text("\n".join(lines) + "\n")
        png(tmp_path / "images" / f"{name}.png", h, w)
        rows += [
            {"image_id": name, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "image_w": w, "image_h": h}
            for x1, y1, x2, y2 in boxes
        ]
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "b.parquet")
    (tmp_path / "b.csv").write_text(table.to_pandas().to_csv(index=False))
    for data in (
        coco,
        read_boxes(voc),
        read_boxes(yolo),
        read_boxes(tmp_path / "b.parquet"),
        read_boxes(tmp_path / "b.csv"),
    ):
        assert np.allclose(data.xyxy, want, rtol=0, atol=1e-9)
        assert data.image.tolist() == [0, 0, 1]
        assert data.image_h.tolist() == [100, 300] and data.image_w.tolist() == [200, 150]
    assert len(read_boxes(voc, voc_difficult="skip")) == 2
    assert image_size(tmp_path / "images" / "a.png") == (100, 200)


@pytest.mark.parametrize(
    "content, words",
    [
        ("{", ["c.json", "not a readable COCO JSON"]),
        ('{"images": []}', ["no 'annotations' list"]),
        ('{"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [{"image_id": 2, "bbox": [0, 0, 1, 1]}]}',
         ["annotations[0]", "'image_id' 2 names no image"]),
        ('{"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [{"image_id": 1, "bbox": [0, 0, "x", 1]}]}',
         ["annotations[0]", "'bbox'"]),
        ('{"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [{"image_id": 1, "bbox": [0, 0, 50, 1]}]}',
         ["annotations[0]", "outside its 10x10 image"]),
        ('{"images": [{"id": 1, "width": -3, "height": 10}], "annotations": []}', ["images[0]", "'width'"]),
    ],
)  # fmt: skip
def test_bad_coco_files_are_one_line_naming_the_record_and_field(tmp_path, content, words):
    path = tmp_path / "c.json"
    path.write_text(content)
    one_line(run("anchor-search", "--boxes", path), "'boxes'", *words)


def test_bad_voc_yolo_and_table_files(tmp_path):
    voc = tmp_path / "Annotations"
    voc.mkdir()
    (voc / "x.xml").write_text(
        "<annotation><size><width>10</width><height>10</height></size><object><bndbox><xmin>1</xmin></bndbox></object></annotation>"
    )
    one_line(run("anchor-search", "--boxes", voc), "x.xml", "object[0]", "'ymin'")
    yolo = tmp_path / "labels"
    yolo.mkdir()
    (yolo / "y.txt").write_text("0 0.5 0.5 0.2\n")
    one_line(run("anchor-search", "--boxes", yolo, "--image-size", "64"), "y.txt", "line 1")
    (yolo / "y.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    one_line(run("anchor-search", "--boxes", yolo), "y.txt", "--image-size")
    assert run("anchor-search", "--boxes", yolo, "--image-size", "64x32").exit_code == 0
    (tmp_path / "t.csv").write_text("image_id,x1,y1,x2\n1,0,0,1\n")
    one_line(run("anchor-search", "--boxes", tmp_path / "t.csv"), "t.csv", "'y2'")


def test_bad_space_and_selection_options_are_one_line():
    box = SYNTHETIC
    one_line(run("anchor-search", "--boxes", box, "--sizes", "32,64"), "'sizes'", "at least 5")
    one_line(run("anchor-search", "--boxes", box, "--detector", "ssd300", "--sizes", "1,2,3,4,5,6,7"), "'sizes'")
    one_line(run("anchor-search", "--boxes", box, "--ratios", "1,2", "--ratio-count", "3"), "'ratio_count'")
    one_line(run("anchor-search", "--boxes", box, "--sort", "recall_iou70"), "'sort'", "--limit")
    one_line(run("anchor-search", "--boxes", box, "--pareto", "recall_iou70"), "'pareto'")
    one_line(run("anchor-search", "--boxes", box, "-o", "x.csv"), "'output'")
    one_line(run("anchor-search", "--boxes", box, "--sizes", "8,16,x"), "'sizes'")
    one_line(run("anchor-search", "--boxes", box, "--max-anchor-erf", "2"), "'max_anchor_erf'", "--model")
    one_tap = ["--model", "resnet50", "--taps", "layer1.2.relu_2", "--max-anchor-rf", "1"]
    one_line(run("anchor-search", "--boxes", box, *one_tap), "'taps'", "one tap per level")
    one_line(
        run("anchor-search", "--boxes", box, "--model", "resnet50", "--taps", "-,-,-,-,-", "--max-anchor-rf", "1"),
        "'taps'",
    )


SPACE = ["--sizes", "16,32,64,128,256,512,1024", "--ratios", "0.25,0.5,1,2,4", "--ratio-count", "3"]


def test_selections_equal_pandas_on_the_whole_output(tmp_path):
    res = run("anchor-search", "--boxes", SYNTHETIC, *SPACE, "-o", tmp_path / "all.parquet")
    assert res.exit_code == 0, res.output
    full = pq.read_table(tmp_path / "all.parquet").to_pandas()
    assert len(full) == 21 * 10 and full["config"].tolist() == list(range(210))
    meta = json.loads(pq.read_schema(tmp_path / "all.parquet").metadata[b"rfsweep.anchor_search"])
    assert meta["detector"] == "faster_rcnn" and meta["space_size"] == 210 and meta["n_boxes"] == 1029
    res = run(
        "anchor-search",
        "--boxes",
        SYNTHETIC,
        *SPACE,
        "--sort",
        "recall_iou70",
        "--limit",
        "7",
        "-o",
        tmp_path / "top.parquet",
    )
    top = pq.read_table(tmp_path / "top.parquet").to_pandas()
    want = full.sort_values(["recall_iou70", "config"], ascending=[False, True]).head(7)
    assert top["config"].tolist() == want["config"].tolist()
    res = run(
        "anchor-search",
        "--boxes",
        SYNTHETIC,
        *SPACE,
        "--pareto",
        "recall_iou70,best_iou_mean",
        "-o",
        tmp_path / "f.parquet",
    )
    front = pq.read_table(tmp_path / "f.parquet").to_pandas()
    a, b = full["recall_iou70"].to_numpy(), full["best_iou_mean"].to_numpy()
    beaten = [bool(((a >= a[i]) & (b >= b[i]) & ((a > a[i]) | (b > b[i]))).any()) for i in range(len(full))]
    assert sorted(front["config"]) == sorted(full["config"][~np.array(beaten)])


def test_default_row_exports_are_torchvisions_and_mmdets_keywords():
    res = run("anchor-search", "--boxes", SYNTHETIC, "--export", "torchvision")
    assert res.exit_code == 0, res.output
    tv = json.loads(res.stdout.strip().splitlines()[-1])
    assert tv == {"sizes": [[32], [64], [128], [256], [512]], "aspect_ratios": [[0.5, 1.0, 2.0]] * 5}
    res = run("anchor-search", "--boxes", SYNTHETIC, "--detector", "retinanet", "--export", "mmdet")
    mm = json.loads(res.stdout.strip().splitlines()[-1])
    assert mm["type"] == "AnchorGenerator" and mm["strides"] == [8, 16, 32, 64, 128]
    assert mm["base_sizes"] == [32, 64, 128, 256, 512] and len(mm["scales"]) == 3 and mm["ratios"] == [0.5, 1.0, 2.0]
    res = run("anchor-search", "--boxes", SYNTHETIC, "--json")
    out = json.loads(res.stdout)
    assert out["space"] == 1 and len(out["rows"]) == 1 and out["rows"][0]["anchors_per_image"] > 1e5


def test_python_api_search_and_match_agree():
    import rfsweep.anchors as A

    df = A.search(SYNTHETIC, "retinanet")
    m = A.match(SYNTHETIC, "retinanet")
    for s in S.STATS:
        assert df.iloc[0][s] == m[s] or (np.isnan(m[s]) and np.isnan(df.iloc[0][s]))
    assert len(m["best_iou"]) == 1029


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_search_within_a_second_and_leaves_nothing(tmp_path, signum):
    """1.95M configurations being scored (and streamed to Parquet), signalled: the signal's exit code, one
    line, no file left (hidden temporary ones included)."""
    sizes = "8,12,16,20,24,32,40,48,64,80,96,128,160,192,256,320,384,512,640,768"
    args = ["anchor-search", "--boxes", str(SYNTHETIC), "--sizes", sizes, "--ratios", "0.25,0.33,0.5,0.75,1,1.33,2,3,4",
            "--ratio-count", "4", "-o", "out.parquet", "-q"]  # fmt: skip
    cli = [sys.executable, "-c", "from rfsweep.cli.main import run; run()"]
    proc = subprocess.Popen(cli + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".rfsweep-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the output's temporary file: the boxes are read, the scoring under way
    time.sleep(1.0)
    assert proc.poll() is None, "the run ended before it could be signalled"
    sent = time.monotonic()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum], stderr
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines[-1:]) == 1 and lines[-1] in ("interrupted", f"stopped by signal {int(signum)}"), stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []
    assert took < 2.0


def test_output_follows_the_shared_rule(tmp_path):
    """-o a symlink writes its target and keeps the link; -o /dev/null is written in place, never replaced;
    -o the boxes file itself is refused."""
    import os
    import stat

    target = tmp_path / "real.parquet"
    link = tmp_path / "link.parquet"
    os.symlink(target, link)
    res = run("anchor-search", "--boxes", SYNTHETIC, "-o", link)
    assert res.exit_code == 0, res.output
    assert os.path.islink(link) and pq.read_table(target).num_rows == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.parquet", "real.parquet"]
    res = run("anchor-search", "--boxes", SYNTHETIC, "-o", "/dev/null")
    assert res.exit_code == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    copy = tmp_path / "boxes.parquet"
    pq.write_table(
        pa.table(
            {"image_id": [1], "x1": [0.0], "y1": [0.0], "x2": [5.0], "y2": [5.0], "image_w": [10], "image_h": [10]}
        ),
        copy,
    )
    one_line(run("anchor-search", "--boxes", copy, "-o", copy), "'output'", "input")
