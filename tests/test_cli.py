"""The `rfsweep analyze` and `rfsweep zoo` commands: output formats, and one clean error line per bad spec."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rfsweep.cli.main import main

JSON_KEYS = ["name", "op", "out_size", "channels", "jump", "rf", "eff_padding", "center", "params", "macs", "erf_sigma"]
SPATIAL = ["out_size", "jump", "rf", "eff_padding", "center", "erf_sigma"]


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_analyze_table():
    result = run("analyze", "vgg16")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "vgg16: input 224x224, 3 channels"
    assert lines[1].split() == [
        "name",
        "op",
        "out_size",
        "channels",
        "jump",
        "rf",
        "eff_padding",
        "center",
        "erf_sigma",
        "params",
        "macs",
        "flags",
    ]
    first = lines[2].split()
    assert first[:8] == ["features.0", "conv", "224", "64", "1", "3", "1", "0"]
    feature = next(line.split() for line in lines if line.startswith("features.30 "))
    assert feature[2:6] == ["7", "512", "32", "212"]  # the published RF
    assert lines[-1].startswith("total params 138,357,544") or any(
        line.startswith("total params 138,357,544") for line in lines
    )
    assert result.stderr == ""


def test_analyze_json_keys_and_pairs():
    result = run("analyze", "vgg16", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and rows
    for obj in rows:
        assert list(obj) == JSON_KEYS
        for key in SPATIAL:
            assert isinstance(obj[key], list) and len(obj[key]) == 2, (obj["name"], key)
    by_name = {obj["name"]: obj for obj in rows}
    f30 = by_name["features.30"]
    assert f30["rf"] == [212, 212] and f30["jump"] == [32, 32] and f30["out_size"] == [7, 7]
    assert f30["eff_padding"] == [90, 90] and f30["center"] == [15.5, 15.5]
    assert by_name["features.0"]["params"] == 1792
    assert by_name["classifier.6"]["rf"] == ["global", "global"]


def test_analyze_json_non_square_input():
    rows = json.loads(run("analyze", "alexnet_v2", "--format", "json", "--input-size", "224x320").stdout)
    assert rows[0]["out_size"] == [54, 78]


def test_analyze_csv():
    result = run("analyze", "alexnet_v2", "--format", "csv")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["name", "op", "out_size_h", "out_size_w"]
    assert {"rf_h", "rf_w", "erf_sigma_h", "params", "macs", "flags"} <= set(header)
    pool5 = dict(zip(header, next(line for line in lines if line.startswith("pool5,")).split(",")))
    assert (pool5["rf_h"], pool5["jump_w"], pool5["eff_padding_h"]) == ("195", "32", "64")


def test_analyze_plot(tmp_path):
    png = tmp_path / "growth.png"
    result = run("analyze", "resnet18", "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["growth.png"]  # no temporary file left behind


def test_plot_to_missing_directory_is_one_error_line(tmp_path):
    result = run("analyze", "alexnet_v2", "--plot", str(tmp_path / "no" / "x.png"))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error:") and "plot" in result.stderr


def test_zoo_lists_17_models():
    result = run("zoo")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[0] == "model"
    assert len(lines) - 1 == 17
    listed = json.loads(run("zoo", "--json").stdout)
    assert len(listed) == 17 and {"vgg16", "resnet_v1_50", "mobilenet_v1"} <= {m["model"] for m in listed}


# --------------------------------------------------------------------------- bad input: one line, exit 2


def spec_with(*layers, size=32):
    return {"name": "bad", "input": {"size": size, "channels": 3}, "layers": list(layers)}


OK = {"name": "c1", "op": "conv", "kernel": 3, "padding": 1, "channels": 8}

# id: (spec, extra args, [texts the error line must contain: layer, field, value])
BAD = {
    "unknown op": (spec_with({"name": "x1", "op": "convolution", "kernel": 3}), [], ["'x1'", "'op'", '"convolution"']),
    "unknown field": (spec_with(dict(OK, name="c9", kernal=3)), [], ["'c9'", "'kernal'", "3"]),
    "missing channels": (spec_with({"name": "c2", "op": "conv", "kernel": 3}), [], ["'c2'", "'channels'", "null"]),
    "kernel 0": (spec_with(dict(OK, kernel=0)), [], ["'c1'", "'kernel'", "value 0"]),
    "stride -1": (spec_with(dict(OK, stride=-1)), [], ["'c1'", "'stride'", "-1"]),
    "dilation 0": (spec_with(dict(OK, dilation=[1, 0])), [], ["'c1'", "'dilation'", "value 0"]),
    "unknown input": (spec_with(OK, dict(OK, name="c2", inputs=["c0"])), [], ["'c2'", "'inputs'", '"c0"']),
    "cycle": (
        spec_with(dict(OK, name="a", inputs=["b"]), dict(OK, name="b", inputs=["a"])),
        [],
        ["'a'", "'inputs'", '["b"]', "cycle"],
    ),
    "tf_same without size": (
        spec_with(dict(OK, name="tf", padding="tf_same"), size=None),
        [],
        ["'tf'", "'padding'", '"tf_same"'],
    ),
    "output below 1": (
        spec_with(dict(OK, name="big", kernel=9, padding=0), size=5),
        [],
        ["'big'", "'out_size'", "[0, 0]", "input [5, 5]"],
    ),
    "duplicate names": (spec_with(OK, dict(OK)), [], ["'c1'", "'name'", '"c1"', "unique"]),
    "bad input size": (spec_with(OK), ["--input-size", "224xabc"], ["'input-size'", '"224xabc"']),
    "input size 0": (spec_with(OK), ["--input-size", "0"], ["'input-size'", "value 0"]),
    "ceil_mode not a bool": (
        spec_with({"name": "p", "op": "maxpool", "kernel": 2, "ceil_mode": "false"}),
        [],
        ["'p'", "'ceil_mode'", '"false"'],
    ),
}


def assert_one_error_line(result, expected):
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.stdout == ""
    err = result.stderr
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("error:")
    assert "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_spec_one_line(case, tmp_path):
    spec, args, expected = BAD[case]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    assert_one_error_line(run("analyze", str(path), *args), expected)


def test_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x", "layers": [', encoding="utf-8")
    assert_one_error_line(run("analyze", str(path)), ["'file'", "broken.json", "not valid"])


def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = \n[[layers]]\n", encoding="utf-8")
    assert_one_error_line(run("analyze", str(path)), ["'file'", "broken.toml", "not valid"])


def test_unknown_model_name():
    result = run("analyze", "no_such_model")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "no_such_model" in result.stderr


def test_toml_spec(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(
        'name = "tiny"\n[input]\nsize = [16, 8]\nchannels = 1\n'
        '[[layers]]\nname = "c"\nop = "conv"\nkernel = 3\nstride = 2\npadding = "same"\nchannels = 4\n'
        '[[layers]]\nname = "p"\nop = "maxpool"\nkernel = 2\nstride = 2\n',
        encoding="utf-8",
    )
    rows = json.loads(run("analyze", str(path), "--format", "json").stdout)
    assert [r["name"] for r in rows] == ["c", "p"]
    assert rows[1]["out_size"] == [4, 2] and rows[1]["rf"] == [5, 5] and rows[1]["jump"] == [4, 4]


def test_console_script_end_to_end(tmp_path):
    """The installed `rfsweep` script in a real process: exit 2, one line, no traceback."""
    exe = shutil.which("rfsweep", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if exe is None:
        pytest.skip("rfsweep console script not installed")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec_with(dict(OK, stride=-1))), encoding="utf-8")
    proc = subprocess.run([exe, "analyze", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:")
    assert "'c1'" in proc.stderr and "'stride'" in proc.stderr and "-1" in proc.stderr
    assert "Traceback" not in proc.stderr
    ok = subprocess.run([exe, "analyze", "alexnet_v2", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)[-1]["name"] == "fc8"


# --------------------------------------------------------------------------- the README's examples are real

from docs_pages import code_block, section  # noqa: E402


@pytest.mark.parametrize("lang", ["json", "toml"])
def test_readme_spec_examples_run(lang, tmp_path):
    path = tmp_path / f"example.{lang}"
    path.write_text(code_block(section("Network specs"), lang), encoding="utf-8")
    result = run("analyze", str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) >= 4


def test_readme_analyze_output_is_current():
    shown = code_block(section("rfsweep analyze"), "").splitlines()
    assert shown[0] == "$ rfsweep analyze alexnet_v2"
    assert shown[1:] == run("analyze", "alexnet_v2").stdout.rstrip("\n").splitlines()


@pytest.mark.parametrize(
    "args",
    [
        ["search", "--padding", "foo"],
        ["analyze"],
        ["count", "--threads", "x"],
        ["search", "--depth", "2", "-o", "."],
        ["nosuchcommand"],
    ],
)
def test_usage_errors_are_one_line(args):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr


SCRIPT = [sys.executable, "-c", "from rfsweep.cli.main import run; run()"]  # what the console script runs


def test_console_script_exits_with_the_commands_code_and_its_output_whole(tmp_path):
    """run() ends the process without the interpreter's teardown: the exit code, stdout and stderr must
    still be those of the command, flushed, and atexit handlers run."""
    ok = subprocess.run([*SCRIPT, "search", "--depth", "2", "--kernels", "1,3", "--input-size", "16", "--json"],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["kept"] > 0
    bad = subprocess.run([*SCRIPT, "search", "--depth", "zero"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "depth" in bad.stderr and not bad.stdout
    code = "import atexit, sys; atexit.register(lambda: print('bye', file=sys.stderr)); " + SCRIPT[2]
    seen = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True)
    assert seen.returncode == 0 and seen.stderr.strip().endswith("bye") and seen.stdout.strip()


def test_the_version_is_the_installed_ones():
    """rfsweep.core.version holds the version as a constant (read at start without scanning the installed
    distributions); pyproject.toml builds the package from it, so the installed metadata says the same."""
    from importlib.metadata import PackageNotFoundError, version

    from rfsweep.core.version import __version__

    try:
        installed = version("rfsweep")
    except PackageNotFoundError:
        pytest.skip("rfsweep is not installed here")
    assert installed == __version__
    assert subprocess.run([*SCRIPT, "--version"], capture_output=True, text=True).stdout.split()[-1] == __version__


def test_console_script_into_a_closed_pipe_is_quiet(tmp_path):
    """`rfsweep ... | head -1`: the reader goes away; no traceback, no 'Exception ignored' line."""
    proc = subprocess.Popen(
        [*SCRIPT, "search", "--depth", "3", "--kernels", "1,3,5", "--input-size", "16", "--limit", "5000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"Exception ignored" not in err, err.decode()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["zoo"],
        ["analyze", "alexnet_v2"],
        ["count", "--depth", "4"],
        ["search", "--depth", "3", "--kernels", "1,3", "--input-size", "16"],
        ["anchors", "resnet18", "--taps", "layer2.1.relu_1,layer3.1.relu_1"],
        [
            "anchor-search",
            "--boxes",
            str(Path(__file__).resolve().parents[1] / "data" / "boxes" / "synthetic_instances.json"),
        ],
    ],
)
def test_stdout_on_a_full_disk_is_one_line_and_exit_1(args):
    """`rfsweep ... > /dev/full`: ENOSPC on stdout is one line on stderr and exit code 1, never a traceback."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([*SCRIPT, *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: cannot write the output (No space left on device)"
