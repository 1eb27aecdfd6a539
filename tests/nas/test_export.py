"""`rfsweep export` without torch: the source's layers, the JSONL specs and the CLI, against the rows.

The generated source is executed with a stand-in for torch that records every constructor call, so each
builder's layers are read back exactly as torch would receive them; the padding it uses is compared with
tests/naive.py (written without rfsweep.network.arithmetic).
"""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_select import SPACES

import docs_pages
from naive import padding_of, sizes
from rfsweep import api as sweep
from rfsweep.cli.main import main
from rfsweep.core.errors import RFSweepError
from rfsweep.nas.export import candidate_network, export, with_layers
from rfsweep.nas.torch_modules import chain_modules
from rfsweep.network.analyze import evaluate
from rfsweep.network.spec import parse_network
from rfsweep.output.select import Selection
from rfsweep.space import build_space

SAMPLE = 120  # rows per space checked layer by layer


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """name -> (path, space, full rows as a DataFrame indexed by arch_id, sampled ids)."""
    out = {}
    base = tmp_path_factory.mktemp("export")
    for name, settings in SPACES.items():
        space = build_space(settings)
        path = base / f"{name}.parquet"
        # every layout: the export reads arch_id and the metadata, whatever else the file holds
        columns = {"tf_same_levels": "compact", "valid_target": "wide"}.get(name, "full")
        sweep.search_to_parquet(str(path), space, columns=columns)
        full = sweep.search(space, columns="lists").set_index("arch_id", drop=False)  # the lists, for every file
        ids = list(full.arch_id[:: max(1, len(full) // SAMPLE)])
        out[name] = (str(path), space, full, ids)
    return out


# ------------------------------------------------------------------ torch stand-in


class _Recorded:
    def __init__(self, cls, args, kwargs):
        self.cls, self.args, self.kwargs = cls, args, kwargs


class _FakeNN(types.ModuleType):
    """torch.nn whose every class records (class name, args, kwargs)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (_Recorded,), {"__init__": lambda self, *a, **k: _Recorded.__init__(self, name, a, k)})
        setattr(self, name, cls)
        return cls


def run_source(source: str, monkeypatch) -> dict:
    """Execute exported source against the stand-in; arch_id -> [(name, class, args, kwargs)]."""
    nn = _FakeNN("torch.nn")
    torch = types.ModuleType("torch")
    torch.nn = nn
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.nn", nn)
    namespace: dict = {}
    exec(compile(source, "models.py", "exec"), namespace)
    out = {}
    for arch_id, builder in namespace["MODELS"].items():
        seq = builder()
        assert seq.cls == "Sequential"
        out[arch_id] = [(name, m.cls, m.args, m.kwargs) for name, m in seq.args[0].items()]
    return out


def read_back(modules, in_channels):
    """The layers a builder makes, read back as the row's list columns plus resolved pads and params."""
    pads_cls = ("ZeroPad2d", "ConstantPad2d")
    layers, params, pending_pad, cin = [], 0, None, in_channels
    for name, cls, args, kw in modules:
        if cls in pads_cls:
            left, right, top, bottom = args[0]
            assert (left, right) == (top, bottom)  # square searches
            pending_pad = (left, right, cls, args[1] if len(args) > 1 else 0, name)
            continue
        if cls in ("Conv2d", "MaxPool2d", "AvgPool2d"):
            op = {"Conv2d": "conv", "MaxPool2d": "maxpool", "AvgPool2d": "avgpool"}[cls]
            p = kw.get("padding", 0)
            assert isinstance(p, int)
            pads = (p, p)
            if pending_pad is not None:
                assert p == 0
                pads = pending_pad[:2]
                assert (pending_pad[2], pending_pad[3]) == (
                    ("ConstantPad2d", float("-inf")) if op == "maxpool" else ("ZeroPad2d", 0)
                )
                assert pending_pad[4] == name + "_pad"
            k = kw["kernel_size"]
            layer = {"op": op, "kernel": k, "stride": kw["stride"], "dilation": kw.get("dilation", 1), "pads": pads}
            if op == "conv":
                cout = args[1]
                assert args[0] == cin
                params += k * k * cin * cout + (cout if kw.get("bias", True) else 0)
                cin = cout
            layer["channels"] = cin
            layers.append(layer)
            pending_pad = None
        elif cls == "BatchNorm2d":
            assert args == (cin,)
            params += 2 * cin
        elif cls == "Linear":
            params += args[0] * args[1] + args[1]
    return layers, params


def _source(path, **kw) -> str:
    buf = io.StringIO()
    export(path, None, stdout=buf, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_builder_makes_the_rows_layers(outputs, name, monkeypatch):
    """Each builder's layers are the row's op/kernel/stride/dilation/channels lists; its pads are the
    padding rule at each layer's input size (naive.py); its parameter count is the row's params, and
    an activation follows every conv."""
    path, space, full, ids = outputs[name]
    source = _source(path, selection=Selection(ids=ids))
    ast.parse(source)
    built = run_source(source, monkeypatch)
    assert sorted(built) == sorted(ids)
    for arch_id, modules in built.items():
        row = full.loc[arch_id]
        layers, params = read_back(modules, space.in_channels)
        assert [x["op"] for x in layers] == list(row.op)
        for key in ("kernel", "stride", "dilation", "channels"):
            assert [x[key] for x in layers] == list(row[key]), (arch_id, key)
        chain = [
            dict(op=o, kernel=int(k), stride=int(s), dilation=int(d), padding=p)
            for o, k, s, d, p in zip(row.op, row.kernel, row.stride, row.dilation, row.padding)
        ]
        n = sizes(chain, space.input_size)
        assert [x["pads"] for x in layers] == [padding_of(layer, n[i]) for i, layer in enumerate(chain)]
        assert n[-1] == row.out_size and params == row.params
        convs = [i for i, m in enumerate(modules) if m[1] == "Conv2d"]
        assert all(modules[i + 1][1] == "ReLU" and modules[i + 1][0] == modules[i][0][:-5] + "_relu" for i in convs)
        assert sum(m[1] == "ReLU" for m in modules) == len(convs)


def test_source_is_readable(outputs, monkeypatch):
    """Named layers, one line a layer, the row's metrics in a comment above each builder."""
    path, space, full, ids = outputs["same_pools"]
    arch_id = int(ids[-1])
    source = _source(path, selection=Selection(ids=[arch_id]))
    row = full.loc[arch_id]
    lines = source.splitlines()
    at = lines.index(f"def arch_{arch_id}() -> nn.Sequential:")
    assert lines[at - 1] == (
        f"# arch_id {arch_id}: rf {row.rf}, jump {row.jump}, eff_padding {row.eff_padding}, center {row.center:.6g}, "
        f"out_size {row.out_size}, params {row.params:,}, macs {row.macs:,}, erf_sigma {row.erf_sigma:.6g}"
    )
    n = len(run_source(source, monkeypatch)[arch_id])
    body = lines[at + 2 : at + 2 + n]
    assert lines[at + 1] == "    layers = [" and lines[at + 2 + n : at + 4 + n] == [
        "    ]",
        "    return nn.Sequential(OrderedDict(layers))",
    ]
    assert all(line.startswith('        ("l') and line.endswith("),") for line in body)
    assert lines[-8:-5] == ["MODELS: dict[int, Callable[..., nn.Module]] = {", f"    {arch_id}: arch_{arch_id},", "}"]
    # the row's metrics beside the model (issue 25, item 6: no join on int(arch_id) to score it)
    assert lines[-3] == "METRICS: dict[int, dict[str, float]] = {" and lines[-1] == "}"
    metrics = json.loads(lines[-2].split(": ", 1)[1].rstrip(","))
    for key in ("rf", "jump", "out_size", "params", "macs", "peak_act", "peak_act_bytes"):
        assert metrics[key] == int(row[key]), key
    assert metrics["erf_sigma"] == row.erf_sigma
    assert "import rfsweep" not in source and "from torch import nn" in source


def test_options_add_exactly_the_documented_parameters(outputs, monkeypatch):
    """--norm bn adds 2·C per conv, --num-classes K adds C·K + K; --act picks the module."""
    path, space, full, ids = outputs["valid_target"]
    source = _source(path, selection=Selection(ids=ids), act="silu", norm="bn", num_classes=7)
    for arch_id, modules in run_source(source, monkeypatch).items():
        row = full.loc[arch_id]
        convs = [c for o, c in zip(row.op, row.channels) if o == "conv"]
        _, params = read_back(modules, space.in_channels)
        assert params == row.params + 2 * sum(convs) + row.channels[-1] * 7 + 7
        assert [m[1] for m in modules[-3:]] == ["AdaptiveAvgPool2d", "Flatten", "Linear"]
        assert modules[-1][2] == (row.channels[-1], 7)
        classes = [m[1] for m in modules]
        assert classes.count("SiLU") == classes.count("BatchNorm2d") == len(convs)
        assert all(classes[i + 1 : i + 3] == ["BatchNorm2d", "SiLU"] for i, c in enumerate(classes) if c == "Conv2d")
        assert f"with these options {params:,} parameters" in source


@pytest.mark.parametrize("name", sorted(SPACES))
@pytest.mark.parametrize("options", [{}, dict(norm="bn", num_classes=5, act="relu6")])
def test_jsonl_specs_analyze_to_the_rows(outputs, name, options):
    """Each line is a spec `rfsweep analyze` reads; the analyzer gives the row's rf, jump, eff_padding,
    out_size, params and MACs at its feature layer (plus exactly the added parameters with options)."""
    path, space, full, ids = outputs[name]
    text = _source(path, to="jsonl", selection=Selection(ids=ids), **options)
    lines = text.splitlines()
    assert len(lines) == len(ids)
    for line in lines:
        spec = json.loads(line)
        row = full.loc[int(spec["name"])]
        net = parse_network(spec)
        results = evaluate(net)
        feature = [r.layer.name for r in results].index(spec.get("feature_layer", results[-1].layer.name))
        a = results[feature].axes[0]
        assert (a.rf, a.jump, a.eff_padding, a.size) == (row.rf, row.jump, row.eff_padding, row.out_size)
        assert float(a.center) == row.center
        convs = [r for r in results if r.layer.op == "conv"]
        assert sum(r.params for r in convs) == row.params and sum(r.macs for r in convs) == row.macs
        extra = 0
        if options:
            extra = 2 * sum(r.channels for r in convs) + row.channels[-1] * 5 + 5
        assert sum(r.params for r in results) == row.params + extra


def test_jsonl_layers_are_the_show_spec(outputs):
    """The spec lines carry `rfsweep show --format spec`'s layers (named l{p}_{op}; act layers added)."""
    path, _, _, ids = outputs["same_pools"]
    text = _source(path, to="jsonl", selection=Selection(ids=ids[:6]), act="none")
    for line in text.splitlines():
        spec = json.loads(line)
        res = CliRunner().invoke(main, ["show", path, spec["name"], "--format", "spec"])
        assert res.exit_code == 0, res.output
        shown = json.loads(res.stdout)
        assert spec["input"] == shown["input"]
        assert spec["layers"] == [{**layer, "name": f"{layer['name']}_{layer['op']}"} for layer in shown["layers"]]


def test_build_refuses_a_row_whose_layers_are_not_its_decoding(outputs):
    path, _, full, ids = outputs["same_pools"]
    row = full.loc[ids[3]].to_dict()
    assert chain_modules(candidate_network(row, path))  # the row as it is
    row["kernel"] = list(row["kernel"][:-1]) + [row["kernel"][-1] + 2]
    with pytest.raises(RFSweepError, match=rf"field 'kernel': .*is not the decoding of arch_id {ids[3]}"):
        candidate_network(row, path)


@pytest.mark.parametrize(
    "layers, message",
    [
        (
            [
                {"name": "a", "op": "conv", "kernel": 3, "channels": 4},
                {"name": "b", "op": "add", "inputs": ["a", "input"]},
            ],
            "layer 'b': field 'inputs'",
        ),
        ([{"name": "up", "op": "upsample", "scale": 2}], "layer 'up': field 'op': value \"upsample\": not built"),
        (
            [{"name": "p", "op": "maxpool", "kernel": 2, "stride": 2, "padding": [[0, 1], [0, 1]], "ceil_mode": True}],
            "layer 'p': field 'padding'",
        ),
    ],
)
def test_graphs_and_unbuildable_layers_are_refused(layers, message):
    with pytest.raises(RFSweepError, match=message):
        chain_modules(parse_network({"input": {"size": 16, "channels": 4}, "layers": layers}))


def test_spec_options_name_added_layers_after_their_conv():
    spec = {
        "layers": [
            {"name": "stem", "op": "conv", "kernel": 3, "channels": 8},
            {"name": "p", "op": "maxpool", "kernel": 2},
        ]
    }
    names = [layer["name"] for layer in with_layers(spec, act="relu", norm="bn", num_classes=3)["layers"]]
    assert names == ["stem", "stem_bn", "stem_relu", "p", "head_pool", "head"]


# ------------------------------------------------------------------ the command


def run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_cli_writes_atomically_stdout_and_never_the_input(outputs, tmp_path):
    path, _, full, ids = outputs["valid_target"]
    out = tmp_path / "models.py"
    res = run("export", path, "--top", 5, "--sort", "macs", "--where", "depth >= 3", "-o", out)
    assert res.exit_code == 0, res.output
    assert res.stderr == f"exported 5 models of {len(full):,} rows -> {out}\n"
    compile(out.read_text(), str(out), "exec")
    assert sorted(os.listdir(tmp_path)) == ["models.py"]
    res = run("export", path, "--to", "jsonl", "--ids", ",".join(map(str, ids[:3])), "-o", "-")
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 3
    before = open(path, "rb").read()
    res = run("export", path, "--top", 1, "-o", path)
    assert (
        res.exit_code == 2
        and res.stderr
        == f"error: field 'output': value \"{path}\": is an input of this command ({path}); write elsewhere\n"
    )
    assert open(path, "rb").read() == before
    # an error after the scan (an id the file does not hold) leaves the old output and no temporary file
    out.write_text("previous\n")
    res = run("export", path, "--ids", f"{ids[0]},{max(full.arch_id) + 1}", "-o", out)
    assert res.exit_code == 2 and "field 'ids'" in res.stderr
    assert out.read_text() == "previous\n" and sorted(os.listdir(tmp_path)) == ["models.py"]


def test_empty_selection_writes_an_empty_models_dict(outputs, monkeypatch):
    path, *_ = outputs["valid_target"]
    res = run("export", path, "--where", "params < 0")
    assert res.exit_code == 0 and run_source(res.stdout, monkeypatch) == {}
    assert res.stderr.startswith("exported 0 models of ")


@pytest.mark.parametrize(
    "args, line",
    [
        (["--where", "rf <<"], "error: field 'where': value \"rf <<\": expected a column or a number but found '<'"),
        (["--where", "kernel > 3"], "error: field 'where': value \"kernel > 3\": column 'kernel' holds lists"),
        (["--ids", "1,x"], "error: field 'ids': value \"1,x\": must be a comma-separated list"),
        (["--top", "0"], "error: field 'top': value 0: must be an integer >= 1"),
        (["--sort", "erf"], "error: field 'sort': value \"erf\": orders the --top N rows; give --top"),
        (["--num-classes", "0"], "error: field 'num-classes': value 0: must be an integer >= 1"),
        (["--to", "onnx"], "error: Invalid value for '--to': 'onnx' is not one of 'pytorch', 'jsonl'."),
        (["--act", "tanh"], "error: Invalid value for '--act'"),
    ],
)
def test_bad_input_is_one_line(outputs, args, line):
    path, *_ = outputs["same_pools"]
    res = run("export", path, *args)
    assert res.exit_code == 2 and res.stderr.startswith(line) and res.stderr.count("\n") == 1 and res.stdout == ""


def test_a_file_rfsweep_did_not_write_is_refused(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"arch_id": [1]}), plain)
    res = run("export", plain)
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: field 'file': value \"{plain}\": has no rfsweep.spec metadata")
    assert res.stderr.count("\n") == 1


def test_import_rfsweep_does_not_import_torch():
    code = (
        "import sys, rfsweep, rfsweep.torch, rfsweep.nas.export, rfsweep.output.select, rfsweep.cli.main; "
        "print('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_readme_export_example_is_what_export_writes(tmp_path, monkeypatch):
    """The README's setup commands run, and the builder its export section shows is the export of that
    arch_id, line for line."""
    import re
    import shlex

    monkeypatch.chdir(tmp_path)
    for line in docs_pages.recipe("setup").splitlines():
        args = shlex.split(line)
        assert args[0] == "rfsweep"
        res = run(*args[1:])
        assert res.exit_code == 0, res.output
    shown = docs_pages.code_block(docs_pages.section("rfsweep export"), "python") + "\n"
    arch_id = int(re.search(r"def arch_(\d+)", shown).group(1))
    assert shown in _source("candidates.parquet", selection=Selection(ids=[arch_id]))


def test_export_writes_through_devices_and_links_and_keeps_them(tmp_path, monkeypatch):
    """The output rule every command shares: `-o /dev/full` is one line and a non-zero exit, the device is
    never replaced (was: "exported 20 specs", exit 0, and /dev/full a regular file); `-o link.py` writes the
    link's target and the link stays a link; nothing else is left behind."""
    import stat

    monkeypatch.chdir(tmp_path)
    res = run("search", "--depth", "2", "--kernels", "1,3", "--input-size", "16", "-o", "c.parquet")
    assert res.exit_code == 0, res.output
    if os.path.exists("/dev/full"):
        res = run("export", "c.parquet", "--to", "jsonl", "-o", "/dev/full")
        assert res.exit_code == 2, res.output
        assert res.stderr.startswith(
            "error: field 'output': value \"/dev/full\": write failed (No space left on device)"
        )
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    target = tmp_path / "real.py"
    os.symlink(target, tmp_path / "link.py")
    res = run("export", "c.parquet", "--top", "2", "-o", "link.py")
    assert res.exit_code == 0, res.output
    assert os.path.islink(tmp_path / "link.py") and "def arch_" in target.read_text()
    assert sorted(os.listdir(tmp_path)) == ["c.parquet", "link.py", "real.py"]


@pytest.mark.parametrize("command", ["export", "show"])
def test_a_damaged_data_page_is_one_line(tmp_path, monkeypatch, command):
    """A file whose data pages are damaged (the footer intact): one line naming the file, exit 2, no
    pyarrow traceback (export once printed "Couldn't deserialize thrift" with a traceback)."""
    monkeypatch.chdir(tmp_path)
    res = run("search", "--depth", "3", "--kernels", "1,3", "--input-size", "16", "-o", "c.parquet")
    assert res.exit_code == 0, res.output
    meta = pq.ParquetFile("c.parquet").metadata
    data = bytearray((tmp_path / "c.parquet").read_bytes())
    for i in range(meta.num_columns):  # every column chunk's first page header overwritten
        start = meta.row_group(0).column(i).data_page_offset
        data[start : start + 12] = b"\xff" * 12
    (tmp_path / "c.parquet").write_bytes(bytes(data))
    args = ["export", "c.parquet", "--to", "jsonl"] if command == "export" else ["show", "c.parquet", "5"]
    res = run(*args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("error: field 'file': value \"c.parquet\"")
        and "Traceback" not in res.stderr
    )
