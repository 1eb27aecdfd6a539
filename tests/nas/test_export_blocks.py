"""`rfsweep export` of a space of stages, without torch: JSONL specs and PyTorch source against the rows.

The JSONL lines are the analyzer's expansion of each candidate's blocks (a DAG of residual adds and SE
gates); at their ``feature_layer`` (the map before the head's global pool) the analyzer gives the row's rf,
jump, eff_padding, center, out_size and erf_sigma, and over all layers its params and MACs. The generated
source runs against a stand-in for torch that records every constructor call; the parameters of the
recorded modules, counted from their arguments, are the row's. (tests/nas/test_torch_blocks.py runs the
same source on real torch.)
"""

from __future__ import annotations

import io
import json
import sys
import types

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rfsweep import api as sweep
from rfsweep.cli.main import main
from rfsweep.core.errors import RFSweepError
from rfsweep.nas.export import block_classes_source, export
from rfsweep.nas.torch_modules import block_modules
from rfsweep.network.analyze import evaluate
from rfsweep.network.spec import parse_network
from rfsweep.output.select import Selection
from rfsweep.space import build_space

# every block kind, SE on and off, expansion 1 and not, a residual and a projection, an even stem kernel
# (a pad module), a max pool, and a head with a conv before and after its global pool
SPACE = {
    "input_size": 27,
    "in_channels": 3,
    "stem": [
        {"op": "conv", "kernel": 4, "stride": 2, "channels": 8, "act": "hardswish"},
        {"op": "maxpool", "kernel": 3, "stride": 1},
    ],
    "stages": [
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [1, 3], "channels": [8, 16], "stride": 2,
         "se": [False, True], "act": "relu"},
        {"block": "bottleneck", "depth": [1, 2], "kernel": 3, "expand": ["1/4", "1/2"], "channels": [16, 24],
         "stride": 2},
        {"block": "basic", "depth": 1, "kernel": [1, 3], "dilation": [1, 2], "channels": 24, "stride": 1},
    ],
    "head": [
        {"op": "conv", "kernel": 1, "channels": 32, "act": "relu6"},
        {"op": "global_pool"},
        {"op": "conv", "kernel": 1, "channels": 40, "bn": False, "act": "hardswish"},
        {"op": "linear", "channels": 10, "act": "none"},
    ],
}  # fmt: skip
SAMPLE = 60


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    """(path of the compact search output, space, rows, sampled arch_ids)."""
    space = build_space(SPACE)
    path = str(tmp_path_factory.mktemp("blocks") / "stages.parquet")
    sweep.search_to_parquet(path, space, columns="compact")
    rows = pq.read_table(path).to_pandas().set_index("arch_id", drop=False)
    return path, space, rows, [int(a) for a in rows.arch_id[:: max(1, len(rows) // SAMPLE)]]


def _export(path, **kw) -> str:
    buf = io.StringIO()
    export(path, None, stdout=buf, **kw)
    return buf.getvalue()


def test_jsonl_specs_analyze_to_the_rows(output):
    path, _, rows, ids = output
    lines = _export(path, to="jsonl", selection=Selection(ids=ids)).splitlines()
    assert len(lines) == len(ids)
    kinds = set()
    for line in lines:
        spec = json.loads(line)
        row = rows.loc[int(spec["name"])]
        results = evaluate(parse_network(spec))
        names = [r.layer.name for r in results]
        feature = results[names.index(spec["feature_layer"])]
        assert results[names.index(spec["feature_layer"]) + 1].layer.name == "head.1.pool"
        a = feature.axes[0]
        assert (a.rf, a.jump, a.eff_padding, a.size, float(a.center)) == (
            row.rf,
            row.jump,
            row.eff_padding,
            row.out_size,
            row.center,
        )
        assert float(a.erf_var) ** 0.5 == pytest.approx(row.erf_sigma, rel=1e-12)
        assert sum(r.params for r in results) == row.params and sum(r.macs for r in results) == row.macs
        kinds |= {r.layer.op for r in results}
    assert {"add", "gate", "global_pool", "hardsigmoid", "hardswish", "relu6"} <= kinds


# ------------------------------------------------------------------ the source, on a torch stand-in


class Recorded:
    def __init__(self, cls, args, kwargs):
        self.cls, self.args, self.kwargs = cls, args, kwargs


def fake_torch(monkeypatch):
    """torch and torch.nn whose every class records (class name, args, kwargs); subclassable."""

    class FakeNN(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)

            def init(obj, *a, **k):
                Recorded.__init__(obj, name, a, k)

            cls = type(name, (Recorded,), {"__init__": init})
            setattr(self, name, cls)
            return cls

    nn = FakeNN("torch.nn")
    torch = types.ModuleType("torch")
    torch.nn = nn
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.nn", nn)


def params_of(obj) -> int:
    """Parameters of a recorded module and everything it holds, from the constructor arguments."""
    if not isinstance(obj, Recorded):
        return 0
    a, k = obj.args, obj.kwargs
    own = 0
    if obj.cls == "Conv2d":
        kernel = a[2]
        own = kernel * kernel * a[0] // k.get("groups", 1) * a[1] + (a[1] if k.get("bias", True) else 0)
    elif obj.cls == "BatchNorm2d":
        own = 2 * a[0]
    elif obj.cls == "Linear":
        own = a[0] * a[1] + (a[1] if k.get("bias", True) else 0)
    children = [v for v in vars(obj).values() if isinstance(v, Recorded)]
    children += [v for arg in a if isinstance(arg, dict) for v in arg.values()]
    return own + sum(params_of(c) for c in children)


def test_source_builds_the_rows_params_one_module_a_block(output, monkeypatch):
    path, space, rows, ids = output
    source = _export(path, selection=Selection(ids=ids))
    assert "import rfsweep" not in source and "from torch import nn" in source
    assert block_classes_source() in source  # the classes build() uses, copied whole
    fake_torch(monkeypatch)
    namespace: dict = {}
    exec(compile(source, "models.py", "exec"), namespace)
    assert sorted(namespace["MODELS"]) == sorted(ids)
    seen = set()
    for arch_id, builder in namespace["MODELS"].items():
        model = builder()
        assert type(model).__name__ == "BlockNet"
        assert params_of(model) == rows.loc[arch_id].params
        data = block_modules(space, space.decode(arch_id))
        for part, modules in (("features", data.features), ("head", data.head)):
            built = getattr(model, part).args[0]
            assert list(built) == [m.name for m in modules]
            assert [type(m).__name__ for m in built.values()] == [m.cls for m in modules]
        seen |= classes_in(model)
    assert {"ConvBNAct", "ZeroPad2d", "MaxPool2d", "MBConv", "SqueezeExcite", "Identity", "Bottleneck", "Basic"} <= seen


def classes_in(obj) -> set[str]:
    if not isinstance(obj, Recorded):
        return set()
    children = [v for v in vars(obj).values() if isinstance(v, Recorded)]
    children += [v for arg in obj.args if isinstance(arg, dict) for v in arg.values()]
    return {type(obj).__name__}.union(*(classes_in(c) for c in children))


def test_builders_read_as_blocks(output):
    path, _, rows, ids = output
    source = _export(path, selection=Selection(ids=ids[-1:]))
    body = source[source.index(f"def arch_{ids[-1]}()") : source.index("MODELS:")].strip().splitlines()
    assert body[:4] == [
        f"def arch_{ids[-1]}() -> BlockNet:",
        "    features = [",
        '        ("stem_0", ConvBNAct(3, 8, kernel_size=4, stride=2, act="hardswish")),',
        '        ("stem_1", nn.MaxPool2d(kernel_size=3, stride=1, padding=1)),',
    ]
    assert body[-7:-1] == [
        "    head = [",
        '        ("head_1", nn.AdaptiveAvgPool2d(1)),',
        '        ("head_2", ConvBNAct(32, 40, kernel_size=1, bn=False, act="hardswish")),',
        '        ("head_3_flatten", nn.Flatten()),',
        '        ("head_3", nn.Linear(40, 10)),',
        "    ]",
    ]
    assert body[-1] == "    return BlockNet(features, head)"


def test_options_are_refused_for_a_space_of_stages(output):
    path, *_ = output
    for option in (dict(act="relu"), dict(norm="bn")):
        with pytest.raises(RFSweepError, match="applies to chain spaces"):
            _export(path, **option)
    res = CliRunner().invoke(main, ["export", path, "--norm", "bn"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "applies to chain spaces" in res.stderr
    res = CliRunner().invoke(main, ["export", path, "--num-classes", "0"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "num-classes" in res.stderr


def test_num_classes_sets_the_heads_logits_and_lines_carry_their_metrics(output):
    """Issue 25, item 6: --num-classes on a space of stages (its head's linear layer gets K outputs), and
    each JSONL line carries its arch_id and the row's metrics."""
    path, space, rows, ids = output
    for line in _export(path, to="jsonl", selection=Selection(ids=ids[:3]), num_classes=7).splitlines():
        spec = json.loads(line)
        row = rows.loc[spec["arch_id"]]
        assert spec["name"] == str(spec["arch_id"])
        assert spec["metrics"] == {
            k: (float(row[k]) if k in ("center", "erf_sigma") else int(row[k]))
            for k in ("rf", "jump", "eff_padding", "center", "out_size", "params", "macs", "erf_sigma", "peak_act",
                      "peak_act_bytes")
        }  # fmt: skip
        fc = next(layer for layer in spec["layers"] if layer["name"] == "head.3.fc")
        assert fc["channels"] == 7
        results = evaluate(parse_network(spec))
        # Linear(40, 10) became Linear(40, 7): (7 - 10) x (40 + 1) parameters
        assert sum(r.params for r in results) - row.params == (7 - 10) * (40 + 1)
        assert "parameters with the added layers" in spec["description"]


def test_cli_exports_a_space_of_stages(output, tmp_path):
    path, _, rows, ids = output
    out = tmp_path / "models.py"
    res = CliRunner().invoke(main, ["export", path, "--top", "4", "--sort", "macs", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stderr == f"exported 4 models of {len(rows):,} rows -> {out}\n"
    compile(out.read_text(), str(out), "exec")
    res = CliRunner().invoke(main, ["export", path, "--to", "jsonl", "--ids", ",".join(map(str, ids[:3]))])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 3
