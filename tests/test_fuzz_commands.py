"""Every command fuzzed over its own options (read from the click commands themselves, so a new option is
fuzzed the day it is added) and over hostile paths: the exit code is 0, 1, 2 or 130, a 2 is one line, no
exception escapes (CliRunner(catch_exceptions=False)), and no file but the output named is created, changed
or removed in the working directory (no temporary file left behind either)."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paths import ROOT
from rfsweep.cli.main import main

# options that start other machinery (Dask workers, a GPU) or only add output formats the others cover
SKIP = {"--cluster", "--scheduler", "--shards", "--resume", "--device", "--plot", "--threads"}
VALUES = ["", "-", "-1", "0", "1", "3", "1e30", "nan", "inf", "1,2", "2-3", "1:2", "32@8", "é", "\x00", "9" * 30,
          "0.5,1,2", "conv", "c.parquet", "7", "x"]  # fmt: skip
PATHS = ["c.parquet", "net.json", "boxes.json", "space.toml", "missing.json", "sub", "/dev/null", "net.json/x"]
OUTPUTS = ["out/o.parquet", "out/o.py", "out/o.json", "c.parquet", "net.json", "sub", "out", "/dev/null", "out/o.csv"]
BASE = {
    "search": ["--depth", "1-2", "--kernels", "1,3", "--input-size", "16"],
    "count": ["--depth", "1-2", "--kernels", "1,3", "--input-size", "16"],
    "anchor-search": ["--boxes", "boxes.json", "--min-size", "64", "--max-size", "96"],
}
POSITIONAL = {
    "analyze": [["net.json", "alexnet_v2", "missing.json", "sub", "c.parquet"]],
    "anchors": [["resnet18", "net.json", "missing.json"]],
    "import": [["net.json", "missing.onnx", "sub"]],
    "show": [["c.parquet", "net.json", "missing.parquet"], ["0", "1", "-1", "x", "9" * 30]],
    "export": [["c.parquet", "net.json", "missing.parquet"]],
    "verify": [["c.parquet", "net.json", "missing.parquet", "sub", "/dev/null", "."]],
}
COMMANDS = ["search", "count", "show", "export", "analyze", "zoo", "anchors", "anchor-search", "import", "verify"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    before = os.getcwd()
    os.chdir(root)
    res = CliRunner().invoke(
        main, ["search", "--depth", "2", "--kernels", "1,3", "--input-size", "16", "-o", "c.parquet"]
    )
    assert res.exit_code == 0, res.output
    (root / "net.json").write_text(
        json.dumps({"input": {"size": 32}, "layers": [{"name": "c1", "op": "conv", "kernel": 3}]})
    )
    boxes = json.loads((ROOT / "data" / "boxes" / "synthetic_instances.json").read_text())
    keep = {img["id"] for img in boxes["images"][:4]}
    boxes["images"] = boxes["images"][:4]
    boxes["annotations"] = [a for a in boxes["annotations"] if a["image_id"] in keep]
    (root / "boxes.json").write_text(json.dumps(boxes))
    (root / "space.toml").write_text('depth = "1-2"\nkernels = [1, 3]\ninput_size = 16\n')
    (root / "sub").mkdir()
    (root / "out").mkdir()
    yield root
    os.chdir(before)


def snapshot(root) -> dict:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            st_ = os.lstat(p)
            out[os.path.relpath(p, root)] = (st_.st_size, st_.st_mtime_ns)
    return out


def options_of(name: str) -> list:
    cmd = main.commands[name]
    return [p for p in cmd.params if p.opts and p.opts[0].startswith("-") and not (set(p.opts) & SKIP)]


@st.composite
def invocations(draw, name: str):
    args = []
    for choices in POSITIONAL.get(name, []):
        args.append(draw(st.sampled_from(choices + VALUES[:3])))
    args += BASE.get(name, [])
    output = None
    for p in draw(st.lists(st.sampled_from(options_of(name)), max_size=4, unique_by=lambda p: p.opts[0])):
        flag = p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0]
        if p.is_flag:
            args.append(flag)
        elif flag in ("-o", "--output"):
            output = draw(st.sampled_from(OUTPUTS))
            args += [flag, output]
        elif hasattr(p.type, "choices"):
            args += [flag, draw(st.sampled_from(list(p.type.choices) + ["nope"]))]
        elif type(p.type).__name__ == "Path" or flag in ("--space", "--boxes", "--model"):
            args += [flag, draw(st.sampled_from(PATHS))]
        else:
            args += [flag, draw(st.sampled_from(VALUES))]
    return args, output


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_fuzzed_keeps_its_promises(workspace, name, monkeypatch):
    monkeypatch.chdir(workspace)

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(inv=invocations(name))
    def check(inv):
        args, output = inv
        before = snapshot(workspace)
        res = CliRunner().invoke(main, [name, *args], catch_exceptions=False)
        assert res.exit_code in (0, 1, 2, 130), (args, res.exit_code, res.output)
        if res.exit_code == 2:
            lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), (args, res.stderr)
        assert "Traceback" not in res.stderr, (args, res.stderr)
        after = snapshot(workspace)
        allowed = {os.path.normpath(output)} if output and res.exit_code == 0 else set()
        changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)} - allowed
        assert not changed, (args, res.exit_code, sorted(changed))
        for p in allowed & after.keys():  # a written output is removed, so the next example starts clean
            if p.startswith("out" + os.sep):
                os.unlink(workspace / p)

    check()
