"""With PyTorch installed (marked `torch`, skipped without it): candidates of spaces of stages, built and
exported, measured against their rows.

On random small spaces of stages (MBConv with and without expansion and squeeze-and-excitation, ResNet
basic and bottleneck blocks, conv stages, dilations, strides up to 3, stems with even kernels and pools,
heads with and without a global pool) each sampled row's model must have the row's params as
sum(p.numel()) (head included), give out_size from ``model.features`` in a forward pass and logits from
``model``; a probe copy of its features with positive weights (every conv's weights 1 / (k x k x C_in per
group), so each conv passes on its gradient mass whole and a residual add weighs its two paths alike, as
the analyzer's add does; BatchNorm, activations and squeeze-and-excitation gates set to identities; max
pools as average pools, -inf pads as zero pads) measures rf, eff_padding, jump and erf_sigma by the
gradient of an interior output unit. The exported source and build() on a row make the same modules.

Run: pytest -m torch -q
"""

from __future__ import annotations

import copy
import io
import math
import random
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from rfsweep import api as sweep  # noqa: E402
from rfsweep.core.errors import RFSweepError  # noqa: E402
from rfsweep.nas.export import export  # noqa: E402
from rfsweep.nas.torch_blocks import SqueezeExcite  # noqa: E402
from rfsweep.output.select import Selection  # noqa: E402
from rfsweep.space import build_space  # noqa: E402
from rfsweep.torch import build  # noqa: E402

pytestmark = pytest.mark.torch
nn = torch.nn
torch.set_num_threads(1)  # tiny models (see tests/nas/test_torch.py)

ROWS_PER_SPACE = 8
SEEN: Counter = Counter()
ACTS = ["relu", "relu6", "hardswish", "silu", "none"]


@st.composite
def stage_spaces(draw):
    """Settings of a small space of stages (at most a few thousand candidates) and a seed for the rows."""
    stem = []
    if draw(st.booleans()):
        stem.append(
            dict(
                op="conv",
                kernel=draw(st.integers(1, 4)),
                stride=draw(st.integers(1, 2)),
                channels=draw(st.integers(2, 8)),
                act=draw(st.sampled_from(ACTS)),
                bn=draw(st.booleans()),
                bias=draw(st.booleans()),
            )
        )
    if draw(st.booleans()):
        stem.append(dict(op=draw(st.sampled_from(["maxpool", "avgpool"])), kernel=draw(st.integers(2, 3)), stride=2))
    stages = []
    for _ in range(draw(st.integers(1, 3))):
        block = draw(st.sampled_from(["mbconv", "mbconv", "basic", "bottleneck", "conv"]))
        odd = block != "conv"
        stage = dict(
            block=block,
            depth=draw(st.lists(st.integers(1, 3), min_size=1, max_size=2, unique=True)),
            kernel=draw(
                st.lists(st.sampled_from([1, 3, 5] if odd else [1, 2, 3]), min_size=1, max_size=2, unique=True)
            ),
            dilation=draw(st.sampled_from([[1], [1, 2]])),
            channels=draw(st.lists(st.integers(3, 12), min_size=1, max_size=2, unique=True)),
            stride=draw(st.integers(1, 3)),
            act=draw(st.sampled_from(ACTS)),
        )
        if block == "mbconv":
            stage["expand"] = draw(st.lists(st.sampled_from([1, 2, 3, "3/2"]), min_size=1, max_size=2, unique=True))
            stage["se"] = draw(st.sampled_from([False, True, [False, True]]))
        elif block == "bottleneck":
            stage["expand"] = draw(st.lists(st.sampled_from(["1/4", "1/2", 1]), min_size=1, max_size=2, unique=True))
        stages.append(stage)
    head = []
    if draw(st.booleans()):
        if draw(st.booleans()):
            head.append(dict(op="conv", kernel=1, channels=draw(st.integers(4, 16)), act=draw(st.sampled_from(ACTS))))
        head.append(dict(op="global_pool"))
        if draw(st.booleans()):
            head.append(dict(op="conv", kernel=1, channels=draw(st.integers(4, 16)), bn=False, act="hardswish"))
        head.append(dict(op="linear", channels=draw(st.integers(2, 10)), act=draw(st.sampled_from(["none", "relu"]))))
    space = dict(
        input_size=draw(st.integers(8, 40)),
        in_channels=draw(st.integers(1, 3)),
        stem=stem or None,
        stages=stages,
        head=head or None,
    )
    return {k: v for k, v in space.items() if v is not None}, draw(st.integers(0, 2**32 - 1))


def probe_of(features: nn.Module) -> nn.Module:
    """The features' geometry as a linear map with positive weights that conserves gradient mass."""
    probe = copy.deepcopy(features).double()

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, SqueezeExcite)):
                setattr(module, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                assert child.dilation in (1, (1, 1))
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
            elif isinstance(child, nn.ConstantPad2d):
                setattr(module, name, nn.ZeroPad2d(child.padding))
            elif isinstance(child, nn.Conv2d):
                kh, kw = child.kernel_size
                with torch.no_grad():
                    child.weight.fill_(1.0 / (kh * kw * child.in_channels // child.groups))
                    if child.bias is not None:
                        child.bias.zero_()
            else:
                swap(child)

    swap(probe)
    return probe


def support(probe, n: int, channels: int, unit: int):
    """Rows of the input that reach output unit (unit, unit) of every channel, and the mass per row."""
    x = torch.ones(1, channels, n, n, dtype=torch.float64, requires_grad=True)
    y = probe(x)
    assert y.shape[-1] > unit, (y.shape, unit)
    y[0, :, unit, unit].sum().backward()
    mass = x.grad[0].sum(0).sum(1)
    return torch.nonzero(mass > 1e-300).flatten().tolist(), mass


def check_row(model, row, space):
    n, cin = space.input_size, space.in_channels
    model.eval()
    with torch.no_grad():
        x = torch.zeros(2, cin, n, n)
        assert tuple(model.features(x).shape[-2:]) == (row.out_size, row.out_size)
        out = model(x)
    assert sum(p.numel() for p in model.parameters()) == row.params
    if len(model.head):
        assert out.dim() == 2 and out.shape[0] == 2
    rf, jump, pad = int(row.rf), int(row.jump), int(row.eff_padding)
    probe = probe_of(model.features)
    rows, _ = support(probe, n, cin, 0)  # unit 0 at the search's input size: within [-P, rf-1-P] and the input
    if rows:
        assert max(0, -pad) <= rows[0] and rows[-1] <= min(n - 1, rf - 1 - pad)
        assert (rows[0] == -pad or pad > 0) and (rows[-1] == rf - 1 - pad or rf - 1 - pad > n - 1)
    u = -(-pad // jump)  # an interior unit of a larger input shows the whole rf, the next one the jump
    big = (u + 1) * jump - pad + rf + jump
    rows, mass = support(probe, big, cin, u)
    assert rows[0] == u * jump - pad and rows[-1] - rows[0] + 1 == rf
    w = mass[rows[0] : rows[-1] + 1] / mass.sum()
    i = torch.arange(rows[0], rows[-1] + 1, dtype=torch.float64)
    mean = (w * i).sum()
    assert math.isclose(float((w * (i - mean) ** 2).sum()), row.erf_sigma**2, rel_tol=1e-9, abs_tol=1e-12)
    probe.zero_grad()
    rows, _ = support(probe, big, cin, u + 1)
    assert rows[0] == (u + 1) * jump - pad


def _structure(model):
    return str(model), [(name, tuple(p.shape)) for name, p in model.named_parameters()]


# half the profile's examples (tests/conftest.py: 25, or 60 with --slow), about 7 rows each: 12 spaces take
# 3.5 s on 2 cores (measured; building and probing the models is most of it)
@settings(max_examples=settings.default.max_examples // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(stage_spaces())
def test_random_block_rows_measure_as_their_row(case):
    settings_, seed = case
    try:
        space = build_space(settings_)
    except RFSweepError as e:  # e.g. too many configurations for one position
        assume(False, str(e))
    assume(space.size <= 3000)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "c.parquet")
        sweep.search_to_parquet(path, space, columns="compact")
        df = pq.read_table(path).to_pandas()
        picked = df.iloc[sorted(random.Random(seed).sample(range(len(df)), min(ROWS_PER_SPACE, len(df))))]
        source = io.StringIO()
        export(path, None, selection=Selection(ids=[int(a) for a in picked.arch_id]), stdout=source)
        namespace: dict = {}
        exec(compile(source.getvalue(), "models.py", "exec"), namespace)
        for _, row in picked.iterrows():
            model = build(row, space=path)
            assert _structure(model) == _structure(namespace["MODELS"][int(row.arch_id)]())
            check_row(model, row, space)
            SEEN["rows"] += 1
            text = str(model)
            for what in ("MBConv", "SqueezeExcite", "Basic", "Bottleneck", "ZeroPad2d", "dilation=(2, 2)"):
                SEEN[what] += what in text
            SEEN["residual MBConv"] += any(getattr(m, "residual", False) for m in model.modules())
            SEEN["projection"] += "shortcut): ConvBNAct" in text
            SEEN["head"] += len(model.head) > 0
            SEEN["stride 3"] += "stride=(3, 3)" in text


def test_random_block_rows_covered_every_case():
    """The previous test's rows: every block kind, SE, residuals, projections, pads, dilations, heads."""
    if not SEEN:
        pytest.skip("runs after test_random_block_rows_measure_as_their_row")
    print(f"random block rows checked: {dict(SEEN)}")
    assert SEEN["rows"] >= 60, SEEN
    for key in ("MBConv", "SqueezeExcite", "Basic", "Bottleneck", "ZeroPad2d", "dilation=(2, 2)", "residual MBConv",
                "projection", "head", "stride 3"):  # fmt: skip
        assert SEEN[key] >= 3, (key, SEEN)


def test_ofa_mbv3_largest_subnet_builds_with_its_params_and_logits():
    """The shipped OFA-MobileNetV3 space's largest subnet (a narrowed copy of the file, so that it can be
    searched): 7,664,760 parameters, 7x7 features, 1000 logits."""
    from rfsweep.space.stages import load

    s = load("ofa_mbv3")
    s["stages"] = [{**stage, "depth": 4, "kernel": 7, "expand": 6} for stage in s["stages"]]
    space = build_space(s)
    row = sweep.search(space, columns="compact").iloc[0]
    model = build(row, space=space).eval()
    assert sum(p.numel() for p in model.parameters()) == row.params == 7_664_760
    with torch.no_grad():
        x = torch.zeros(1, 3, 224, 224)
        assert model.features(x).shape == (1, 960, 7, 7) and model(x).shape == (1, 1000)
    assert [type(m).__name__ for m in model.head] == ["AdaptiveAvgPool2d", "ConvBNAct", "Flatten", "Linear"]


def test_options_and_branching_specs_are_refused_for_blocks():
    from rfsweep.space.stages import load

    s = load("ofa_resnet50_v15")
    s["stages"] = [{**stage, "depth": stage["depth"][0], "expand": "1/4", "channels": 256} for stage in s["stages"]]
    space = build_space(s)
    with pytest.raises(RFSweepError, match="field 'norm'.*applies to chain spaces"):
        build(0, space=space, norm="bn")
    spec = space.network_spec(space.decode(0))
    with pytest.raises(RFSweepError, match=r"field 'inputs'.*build\(arch_id, space=FILE\)"):
        build(spec)
