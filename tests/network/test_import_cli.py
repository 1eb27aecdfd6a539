"""The CLI with ONNX models: `rfsweep analyze model.onnx`, `rfsweep anchors model.onnx`, `rfsweep import`;
one-line errors for files that are neither specs nor models; onnx and torch stay unimported until needed."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest
from click.testing import CliRunner

from rfsweep.cli.main import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_binary_file_given_as_a_spec_is_one_line(tmp_path):
    for name in ("model.json", "model.bin", "weights.pt"):
        path = tmp_path / name
        path.write_bytes(b"\x80\x02\xff\xfe binary \x00\x01")
        result = run("analyze", path)
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: field 'file'")
        assert "is not a network spec (JSON/TOML text)" in result.stderr


def test_import_rfsweep_and_help_load_neither_onnx_nor_torch():
    code = (
        "import sys, rfsweep\n"
        "from click.testing import CliRunner\n"
        "from rfsweep.cli.main import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
        "assert CliRunner().invoke(main, ['analyze', 'resnet18']).exit_code == 0\n"
        "assert CliRunner().invoke(main, ['import', '--help']).exit_code == 0\n"
        "print(sorted(m for m in ('onnx', 'torch', 'onnxscript') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- with onnx


@pytest.fixture
def model_path(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper
    from test_onnx_import import make_model, weight

    model = make_model(
        [
            helper.make_node(
                "Conv", ["x", "w1"], ["c1"], name="stem", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
            ),
            helper.make_node("Relu", ["c1"], ["r1"], name="stem_relu"),
            helper.make_node(
                "Conv", ["r1", "w2"], ["c2"], name="level1", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
            ),
            helper.make_node(
                "Conv", ["c2", "w3"], ["c3"], name="level2", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
            ),
            helper.make_node("GlobalAveragePool", ["c3"], ["g"], name="gap"),
        ],
        [weight("w1", 8, 3, 3, 3), weight("w2", 8, 8, 3, 3), weight("w3", 8, 8, 3, 3)],
        size=(64, 64),
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.onnx
def test_analyze_an_onnx_file(model_path):
    result = run("analyze", model_path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "tiny: input 64x64, 3 channels"
    level2 = next(line.split() for line in lines if line.startswith("level2 "))
    assert level2[:6] == ["level2", "conv", "8", "8", "8", "15"]
    rows = json.loads(run("analyze", model_path, "--input-size", "96", "--format", "json").stdout)
    assert rows[3]["out_size"] == [12, 12]


@pytest.mark.onnx
def test_anchors_on_an_onnx_file(model_path):
    result = run("anchors", model_path, "--taps", "level1,level2", "--rule", "s3fd", "--format", "json")
    assert result.exit_code == 0, result.output
    levels = json.loads(result.stdout)["levels"]
    assert [lv["stride"] for lv in levels] == [[4, 4], [8, 8]] and [lv["rf"] for lv in levels] == [[7, 7], [15, 15]]


@pytest.mark.onnx
def test_import_writes_json_and_toml_that_analyze_the_same(model_path, tmp_path):
    reference = json.loads(run("analyze", model_path, "--format", "json").stdout)
    for suffix in (".json", ".toml"):
        out = tmp_path / f"spec{suffix}"
        result = run("import", model_path, "-o", out)
        assert result.exit_code == 0, result.output
        assert result.stdout == "" and result.stderr == f"5 layers at input 64x64 from {model_path} -> {out}\n"
        data = tomllib.loads(out.read_text()) if suffix == ".toml" else json.loads(out.read_text())
        assert [layer["name"] for layer in data["layers"]] == ["stem", "stem_relu", "level1", "level2", "gap"]
        assert json.loads(run("analyze", out, "--format", "json").stdout) == reference
    printed = run("import", model_path, "--input-size", "32")
    assert json.loads(printed.stdout)["input"] == {"size": 32, "channels": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.json", "spec.toml", "tiny.onnx"]


@pytest.mark.onnx
def test_import_refuses_its_input_and_bad_targets(model_path, tmp_path):
    before = model_path.read_bytes()
    for target, why in (
        (model_path, "is the model being imported"),
        (tmp_path / "spec.yaml", "must end in .json or .toml"),
        (tmp_path / "no" / "spec.json", "its directory does not exist"),
    ):
        result = run("import", model_path, "-o", target)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and why in result.stderr, result.output
    assert model_path.read_bytes() == before


@pytest.mark.onnx
def test_unknown_ops_and_non_models_are_one_line_exit_2(model_path, tmp_path):
    import onnx

    model = onnx.load(model_path)
    model.graph.node[1].op_type = "Celu2"
    odd = tmp_path / "odd.onnx"
    onnx.save(model, odd)
    for args in (("analyze", odd), ("import", odd), ("analyze", tmp_path / "missing.onnx")):
        result = run(*args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "layer 'stem_relu': field 'op': value \"Celu2\"" in run("analyze", odd).stderr
    text = tmp_path / "notes.onnx"
    text.write_text("not a protobuf at all \x00")
    assert "is not an ONNX model" in run("import", text).stderr
