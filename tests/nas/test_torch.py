"""With PyTorch installed (marked `torch`, skipped without it): the built and exported models measured.

On random small spaces of every padding rule (even kernels, dilations, strides up to 3, max and average
pools) each sampled row's model must give the row's out_size in a forward pass and its params as
sum(p.numel()); a probe copy with positive weights (every conv all ones without bias, max pools as
average pools, -inf pads as zero pads, pointwise layers dropped: a linear map whose input gradient
reaches exactly the receptive field) measures rf, eff_padding, jump and erf_sigma by the gradient of
an interior output unit. The exported source, build() on a row and build() on the JSONL spec make the
same modules.

Run: pytest -m torch -q
"""

from __future__ import annotations

import io
import json
import math
import random
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import docs_pages  # noqa: E402
from rfsweep import api as sweep  # noqa: E402
from rfsweep.nas.export import export  # noqa: E402
from rfsweep.output.select import Selection  # noqa: E402
from rfsweep.space import build_space  # noqa: E402
from rfsweep.torch import build  # noqa: E402

pytestmark = pytest.mark.torch
nn = torch.nn
# One intra-op thread: these models are tiny, and on a busy 2-core machine OpenMP's barriers made a
# 20-step training loop take 11 s instead of 0.4 s (measured).
torch.set_num_threads(1)

ROWS_PER_SPACE = 10
SEEN: Counter = Counter()  # what the random rows covered (checked by the last test)


@st.composite
def small_spaces(draw):
    padding = draw(st.sampled_from(["same", "valid", "tf_same"]))
    ops = ["conv"] + draw(st.lists(st.sampled_from(["maxpool", "avgpool"]), unique=True, max_size=2))
    dmax = draw(st.integers(1, 4))
    settings_ = dict(
        depth=f"{draw(st.integers(1, dmax))}-{dmax}",
        ops=ops,
        kernels=draw(st.lists(st.integers(1, 5), min_size=1, max_size=3, unique=True)),
        pool_kernels=draw(st.lists(st.integers(2, 4), min_size=1, max_size=2, unique=True)),
        strides=draw(st.lists(st.integers(1, 3), min_size=1, max_size=2, unique=True)),
        dilations=draw(st.lists(st.integers(1, 3), min_size=1, max_size=2, unique=True)),
        padding=padding,
        input_size=draw(st.integers(5, 29)),
        in_channels=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
    )
    if draw(st.booleans()):
        settings_["channels"] = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2, unique=True))
    else:
        settings_.update(width=2, max_width=6)
    return settings_, draw(st.integers(0, 2**32 - 1))


def probe_of(model: nn.Sequential) -> nn.Sequential:
    """The same geometry on one channel with positive weights: a linear map whose gradient support is the RF."""
    layers = []
    for m in model:
        if isinstance(m, nn.Conv2d):
            # one channel: with all-ones weights the channel counts only scale the gradient
            conv = nn.Conv2d(1, 1, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation, bias=False)
            nn.init.ones_(conv.weight)
            layers.append(conv)
        elif isinstance(m, nn.MaxPool2d):
            assert m.dilation in (1, (1, 1))  # the search's pools are never dilated
            layers.append(nn.AvgPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode))
        elif isinstance(m, nn.AvgPool2d):
            layers.append(m)
        elif isinstance(m, (nn.ZeroPad2d, nn.ConstantPad2d)):
            layers.append(nn.ZeroPad2d(m.padding))
    return nn.Sequential(*layers).double()


def support(probe, n: int, unit: int):
    """Rows of the input that reach output unit (unit, unit), and the gradient mass per row."""
    x = torch.ones(1, 1, n, n, dtype=torch.float64, requires_grad=True)
    y = probe(x)
    assert y.shape[-1] > unit, (y.shape, unit)
    y[0, :, unit, unit].sum().backward()
    mass = x.grad[0].sum(0).sum(1)
    rows = torch.nonzero(mass).flatten().tolist()
    return rows, mass


def check_row(model, row, space):
    n, cin = space.input_size, space.in_channels
    with torch.no_grad():
        y = model(torch.zeros(1, cin, n, n))
    assert tuple(y.shape[-2:]) == (row.out_size, row.out_size)
    assert sum(p.numel() for p in model.parameters()) == row.params
    rf, jump, pad = int(row.rf), int(row.jump), int(row.eff_padding)
    probe = probe_of(model)
    # at the row's input size: unit 0 reaches within [-P, rf-1-P] clipped to the input, and each end of
    # that span that lies inside the input (dilations leave holes: a unit may even see padding only)
    rows, _ = support(probe, n, 0)
    if rows:
        assert max(0, -pad) <= rows[0] and rows[-1] <= min(n - 1, rf - 1 - pad)
        assert (rows[0] == -pad or pad > 0) and (rows[-1] == rf - 1 - pad or rf - 1 - pad > n - 1)
    else:
        assert "dilation=(" in str(model)  # only dilated taps can all land in the padding
    # on a larger input (the same pads), an interior unit shows the whole RF, the next one the jump
    u = -(-pad // jump)
    big = (u + 1) * jump - pad + rf + jump
    rows, mass = support(probe, big, u)
    assert rows[0] == u * jump - pad and rows[-1] - rows[0] + 1 == rf
    w = mass[rows[0] : rows[-1] + 1] / mass.sum()
    i = torch.arange(rows[0], rows[-1] + 1, dtype=torch.float64)
    mean = (w * i).sum()
    assert math.isclose(float((w * (i - mean) ** 2).sum()), row.erf_sigma**2, rel_tol=1e-9, abs_tol=1e-12)
    probe.zero_grad()
    rows, _ = support(probe, big, u + 1)
    assert rows[0] == (u + 1) * jump - pad


def _structure(model):
    return str(model), [(name, tuple(p.shape)) for name, p in model.named_parameters()]


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(small_spaces())
def test_random_rows_measure_as_their_row(case):
    settings_, seed = case
    space = build_space(settings_)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "c.parquet")
        sweep.search_to_parquet(path, space, columns="compact")
        df = pq.read_table(path).to_pandas()
        if df.empty:
            return
        picked = df.iloc[sorted(random.Random(seed).sample(range(len(df)), min(ROWS_PER_SPACE, len(df))))]
        ids = [int(a) for a in picked.arch_id]
        source, specs = io.StringIO(), io.StringIO()
        export(path, None, selection=Selection(ids=ids), stdout=source)
        export(path, None, to="jsonl", selection=Selection(ids=ids), stdout=specs)
        namespace: dict = {}
        exec(compile(source.getvalue(), "models.py", "exec"), namespace)
        models = namespace["MODELS"]
        lines = {int(json.loads(line)["name"]): json.loads(line) for line in specs.getvalue().splitlines()}
        for _, row in picked.iterrows():
            model = build(row, space=path)
            assert _structure(model) == _structure(models[int(row.arch_id)]()) == _structure(build(lines[row.arch_id]))
            check_row(model, row, space)
            SEEN["rows"] += 1
            SEEN[space.padding] += 1
            text = str(model)
            SEEN["pad modules"] += "Pad2d" in text
            SEEN["even pool kernels"] += bool(re.search(r"Pool2d\(kernel_size=[24]", text))
            SEEN["dilated convs"] += bool(re.search(r"dilation=\(?[23]", text))
            SEEN["stride 3"] += "stride=3" in text


def test_random_rows_covered_every_case():
    """The previous test's rows: hundreds, of all three paddings, even pools, dilations, strides, pads."""
    if not SEEN:
        pytest.skip("runs after test_random_rows_measure_as_their_row")
    print(f"random rows checked: {dict(SEEN)}")
    assert SEEN["rows"] >= 300, SEEN
    for key in ("same", "valid", "tf_same", "pad modules", "even pool kernels", "dilated convs", "stride 3"):
        assert SEEN[key] >= 10, SEEN


def test_options_give_the_documented_parameters_and_logits(tmp_path):
    space = build_space(dict(depth="2-3", kernels=[2, 3], strides=[1, 2], channels=[3, 5], input_size=12))
    df = sweep.search(space, columns="lists")  # the row's op and channels lists
    for _, row in df.iloc[::37].iterrows():
        model = build(row, space=space, act="silu", norm="bn", num_classes=4)
        convs = [c for o, c in zip(row.op, row.channels) if o == "conv"]
        assert sum(p.numel() for p in model.parameters()) == row.params + 2 * sum(convs) + row.channels[-1] * 4 + 4
        model.eval()
        assert model(torch.zeros(2, 3, 12, 12)).shape == (2, 4)
        assert [type(m).__name__ for m in model][-3:] == ["AdaptiveAvgPool2d", "Flatten", "Linear"]


def _readme_block(marker: str) -> str:
    return docs_pages.recipe(marker)


@pytest.fixture
def exported(tmp_path, monkeypatch):
    """The README's setup commands (search, export), run in a temporary directory."""
    import shlex

    from click.testing import CliRunner

    from rfsweep.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "models", raising=False)
    for line in _readme_block("setup").splitlines():
        args = shlex.split(line)
        assert args[0] == "rfsweep"
        res = CliRunner().invoke(main, args[1:])
        assert res.exit_code == 0, res.output
    return tmp_path


@pytest.mark.parametrize("recipe", ["plain", "optuna", "ray"])
def test_readme_recipes_run(exported, recipe, capsys):
    """Each NAS recipe of the README runs as written (optuna and ray where installed)."""
    if recipe != "plain":
        pytest.importorskip(recipe)
    exec(compile(_readme_block(recipe), f"README recipe {recipe}", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip()
