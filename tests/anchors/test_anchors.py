"""rfsweep.anchors.design and `rfsweep anchors`: rules, YOLOv5 box metrics, k-means, exports, CLI errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from rfsweep.anchors import boxes as boxmod
from rfsweep.anchors import design as anc
from rfsweep.anchors import export as exportmod
from rfsweep.cli.main import main
from rfsweep.core.errors import RFSweepError

R50 = "layer2.3.relu_2,layer3.5.relu_2,layer4.2.relu_2"
S2 = math.sqrt(2)


def close(got, want, rel=1e-9) -> bool:
    """Lists of [w, h] pairs equal up to float rounding."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return got.shape == want.shape and np.allclose(got, want, rtol=rel, atol=0)


def test_fpn_rule_exact():
    got = anc.rule_anchors("fpn", [(8, 8), (16, 16)], ratios=[0.5, 1, 2])
    assert close(got[0], [(64 / S2, 64 * S2), (64, 64), (64 * S2, 64 / S2)])
    assert close(got[1], [(128 / S2, 128 * S2), (128, 128), (128 * S2, 128 / S2)])


def test_s3fd_rule_and_default_ratio():
    assert anc.rule_anchors("s3fd", [(4, 4), (8, 8), (16, 16)]) == [[(16.0, 16.0)], [(32.0, 32.0)], [(64.0, 64.0)]]


def test_retinanet_rule_three_octave_scales_ratio_major():
    got = anc.rule_anchors("retinanet", [(8, 8)], ratios=[1, 2])[0]
    sizes = [32, 32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)]
    want = [(a, a) for a in sizes] + [(a * S2, a / S2) for a in sizes]
    assert close(got, want)


def test_ssd_rule_linear_scales_and_extra_box():
    got = anc.rule_anchors("ssd", [(8, 8), (16, 16), (32, 32)], ratios=[1, 2], image_size=(300, 300))
    s = [0.2, 0.55, 0.9, 1.0]
    for k, level in enumerate(got):
        a = s[k] * 300
        extra = math.sqrt(s[k] * s[k + 1]) * 300
        assert close(level, [(a, a), (a * S2, a / S2), (extra, extra)])


def test_ssd_non_square_image_scales_each_side():
    (level,) = anc.rule_anchors("ssd", [(8, 8)], ratios=[1], image_size=(200, 400))
    assert level[0] == pytest.approx((0.2 * 400, 0.2 * 200))  # [w, h]
    with pytest.raises(RFSweepError, match="input-size"):
        anc.rule_anchors("ssd", [(8, 8)])


def test_yolo_metric_by_hand():
    anchors = [[10, 10], [40, 20]]
    boxes = [[10, 10], [20, 20], [50, 10], [3, 3], [100, 100]]
    # x per box and anchor (min over sides of min(r, 1/r)): [1, .25], [.5, .5], [.2, .5], [.3, .075], [.1, .2]
    # best: 1, .5, .5, .3, .2 -> 4 of 5 above 1/4; anchors above 1/4: 1, 2, 1, 1, 0
    bpr, aat = boxmod.yolo_metric(boxes, anchors)
    assert bpr == pytest.approx(0.8)
    assert aat == pytest.approx(1.0)
    # x == 1/thr exactly is not above the threshold (strict >, as YOLOv5)
    assert boxmod.yolo_metric([[10, 40]], [[10, 10]]) == (0.0, 0.0)


def test_kmeans_finds_clusters_and_is_seeded():
    rng = np.random.default_rng(3)
    centres = np.array([[12, 10], [40, 60], [150, 120]])
    wh = np.concatenate([c * np.exp(rng.normal(0, 0.05, (200, 2))) for c in centres])
    k1 = boxmod.kmeans_anchors(wh, 3, seed=1)
    k2 = boxmod.kmeans_anchors(wh, 3, seed=1)
    assert np.array_equal(k1, k2)
    assert np.allclose(k1, centres, rtol=0.05)
    assert boxmod.yolo_metric(wh, k1)[0] == 1.0

    # evolution never lowers YOLOv5's fitness
    def fitness(k):
        x = np.minimum(wh[:, None] / k[None], k[None] / wh[:, None]).min(2).max(1)
        return (x * (x > 0.25)).mean()

    k3 = boxmod.kmeans_anchors(wh, 3, seed=1, generations=50)
    assert fitness(k3) >= fitness(k1) - 1e-12


def test_report_geometry_resnet50():
    rep = anc.anchor_report("resnet50", R50, rule="fpn")
    assert [lv.tap for lv in rep.levels] == R50.split(",")
    assert [int(lv.stride[0]) for lv in rep.levels] == [8, 16, 32]
    assert [int(lv.rf[0]) for lv in rep.levels] == [91, 267, 427]
    # torchvision resnet units are centred on pixel 0 (continuous 0.5): offset 0 is half a pixel off
    assert rep.levels[0].misalignment == (-0.5, -0.5)
    rep5 = anc.anchor_report("resnet50", R50, rule="fpn", center_offset=0.5)
    assert rep5.levels[0].misalignment == (3.5, 3.5)
    assert any("center_offset 0 puts them" in w for w in rep5.levels[2].warnings)
    assert rep.levels[1].anchors[1] == pytest.approx((128, 128))
    erf95 = rep.levels[0].erf["erf_extent"]["95"]
    assert any("exceeds the ERF 95% extent" in w for w in rep.levels[0].warnings) == (64 > erf95[1])


def test_warnings_rf_and_sparse():
    spec = {
        "name": "tiny",
        "input": {"size": 32, "channels": 1},
        "layers": [{"name": "c", "op": "conv", "kernel": 3, "stride": 2, "channels": 1}],
    }
    rep = anc.anchor_report(spec, ["c"], rule="fpn", ratios=[1])
    assert any("exceeds the RF 3x3" in w for w in rep.levels[0].warnings)
    # s3fd at density 4: IoU with a half-stride shifted equal box 3.5^2/(32-3.5^2) = 0.62, no warning
    rep = anc.anchor_report(spec, ["c"], rule="s3fd")
    assert rep.levels[0].iou_half_stride[0] == pytest.approx(12.25 / 19.75)
    assert not any("sparse" in w for w in rep.levels[0].warnings)
    rep = anc.anchor_report(spec, ["c"], rule="s3fd", ratios=[16])  # 32 x 2 anchor at stride 2
    assert any("too sparse" in w for w in rep.levels[0].warnings)


def test_json_keys(tmp_path):
    boxes = tmp_path / "b.csv"
    boxes.write_text("w,h\n30,30\n60,40\n120,200\n10,12\n")
    out = anc.to_json(anc.anchor_report("resnet50", R50, rule="retinanet", boxes=str(boxes)))
    assert {"levels", "bpr", "aat", "kmeans", "rule", "ratios", "center_offset"} <= set(out)
    lv = out["levels"][0]
    assert {
        "tap",
        "stride",
        "rf",
        "erf_sigma",
        "erf_extent",
        "anchors",
        "center",
        "misalignment",
        "density",
        "anchor_rf",
        "anchor_erf",
        "warnings",
    } <= set(lv)
    assert set(lv["erf_extent"]) == {"50", "90", "95"}
    assert len(lv["anchors"]) == 9 and all(len(a) == 2 for a in lv["anchors"])
    assert 0 <= out["bpr"] <= 1 and out["aat"] >= 0
    assert len(out["kmeans"]["anchors"]) == 4  # capped at the number of distinct boxes
    json.dumps(out)


def _mmdet_base_anchors(cfg: dict, level: int) -> list[tuple[float, float]]:
    """mmdetection's AnchorGenerator.gen_single_level_base_anchors widths/heights, in numpy."""
    stride = cfg["strides"][level]
    base = cfg.get("base_sizes", [min(s) if isinstance(s, list) else s for s in cfg["strides"]])[level]
    if "scales" in cfg:
        scales = np.array(cfg["scales"], dtype=float)
    else:
        scales = cfg["octave_base_scale"] * 2 ** (np.arange(cfg["scales_per_octave"]) / cfg["scales_per_octave"])
    h_ratios = np.sqrt(np.array(cfg["ratios"], dtype=float))
    ws = (base * (1 / h_ratios)[:, None] * scales[None, :]).ravel()
    hs = (base * h_ratios[:, None] * scales[None, :]).ravel()
    del stride
    return list(zip(ws, hs))


@pytest.mark.parametrize("rule", ["s3fd", "fpn", "retinanet"])
def test_mmdet_export_reproduces_anchors(rule):
    rep = anc.anchor_report("resnet50", R50, rule=rule, ratios=[0.5, 1, 3], center_offset=0.5)
    cfg, notes = exportmod.export_mmdet(rep)
    assert cfg["type"] == "AnchorGenerator" and cfg["strides"] == [8, 16, 32]
    assert cfg["center_offset"] == 0.5
    for i, lv in enumerate(rep.levels):
        assert close(_mmdet_base_anchors(cfg, i), lv.anchors, rel=1e-5)
    if rule == "retinanet":
        assert cfg["octave_base_scale"] == 4 and cfg["scales_per_octave"] == 3


def test_mmdet_export_ssd_notes_extra_box():
    rep = anc.anchor_report("resnet50", R50, rule="ssd", center_offset=0.5)
    cfg, notes = exportmod.export_mmdet(rep)
    assert close(cfg["base_sizes"], [0.2 * 224, 0.55 * 224, 0.9 * 224])
    assert cfg["centers"] == [[4, 4], [8, 8], [16, 16]] and "center_offset" not in cfg
    assert any("extra" in n for n in notes)
    for i, lv in enumerate(rep.levels):
        assert close(_mmdet_base_anchors(cfg, i), lv.anchors[:-1], rel=1e-5)


def test_torchvision_export():
    rep = anc.anchor_report("resnet50", R50, rule="fpn", ratios=[0.5, 1, 2])
    cfg, notes = exportmod.export_torchvision(rep)
    assert cfg == {
        "type": "AnchorGenerator",
        "sizes": [[64.0], [128.0], [256.0]],
        "aspect_ratios": [[2.0, 1.0, 0.5]] * 3,
    }
    # torchvision: h_ratios = sqrt(ar), w = size / h_ratio -> our [w, h] in the same order
    for sizes, ars, lv in zip(cfg["sizes"], cfg["aspect_ratios"], rep.levels):
        h_r = np.sqrt(ars)
        ws, hs = (sizes[0] / h_r), (sizes[0] * h_r)
        assert close(list(zip(ws, hs)), lv.anchors)
    ssd = anc.anchor_report("resnet50", R50, rule="ssd", center_offset=0.5)
    cfg, notes = exportmod.export_torchvision(ssd)
    assert cfg == {
        "type": "DefaultBoxGenerator",
        "aspect_ratios": [[2.0]] * 3,
        "scales": [0.2, 0.55, 0.9, 1.0],
        "steps": [8, 16, 32],
    }


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_cli_table_json_export_plot(tmp_path):
    r = _run("anchors", "resnet50", "--taps", R50, "--rule", "fpn")
    assert r.exit_code == 0 and "layer4.2.relu_2" in r.output and "erf95" in r.output
    r = _run("anchors", "resnet50", "--taps", R50, "--format", "json")
    assert r.exit_code == 0 and json.loads(r.output)["levels"][2]["stride"] == [32, 32]
    r = _run("anchors", "resnet50", "--taps", R50, "--rule", "retinanet", "--export", "mmdet")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["octave_base_scale"] == 4
    png = tmp_path / "erf.png"
    r = _run("anchors", "resnet18", "--taps", "layer2.1.relu_1,layer3.1.relu_1", "--plot", str(png))
    assert r.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_cli_boxes_parquet(tmp_path):
    import pandas as pd

    p = tmp_path / "b.parquet"
    pd.DataFrame({"w": [20.0, 40, 80, 160], "h": [20.0, 30, 90, 150]}).to_parquet(p)
    r = _run("anchors", "resnet50", "--taps", R50, "--boxes", str(p), "--format", "json", "--evolve", "5")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["boxes"] == 4 and out["kmeans"]["generations"] == 5


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--taps", "nope"], "field 'taps': value \"nope\""),
        (["--taps", "layer4.2.relu_2,fc"], "field 'taps': value \"fc\""),
        (["--taps", "layer4.2.relu_2", "--ratios", "0,1"], "field 'ratios'"),
        (["--taps", "layer4.2.relu_2", "--ratios", "x"], "field 'ratios'"),
        (["--taps", "layer4.2.relu_2", "--boxes", "/nonexistent/b.csv"], "field 'boxes'"),
    ],
)
def test_cli_bad_input_one_line(args, needle):
    r = _run("anchors", "resnet50", *args)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


def test_cli_bad_boxes_and_ssd_without_size(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("w,h\n10,10\n0,5\n")
    r = _run("anchors", "resnet50", "--taps", "layer4.2.relu_2", "--boxes", str(bad))
    assert r.exit_code == 2 and "row 1" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    spec = tmp_path / "n.json"
    spec.write_text(json.dumps({"layers": [{"name": "c", "op": "conv", "kernel": 3, "channels": 4}]}))
    r = _run("anchors", str(spec), "--taps", "c", "--rule", "ssd")
    assert r.exit_code == 2 and "input-size" in r.stderr
