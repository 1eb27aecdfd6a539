"""Spaces of stages (issue 12): exact counts with budgets against brute force over the analyzer.

The reference expands every candidate of a small stage space to its network spec and runs
``rfsweep.network.analyze`` on it (layer by layer, no kernel involved): its rf, params and MACs decide
membership, and the counts of every method must equal the brute-force counts exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import rfsweep
from rfsweep.cli.main import main
from rfsweep.core.errors import RFSweepError
from rfsweep.engine import count as counting
from rfsweep.engine import stage_count
from rfsweep.space import build_space, stages

SMALL = {
    "input_size": 32,
    "in_channels": 3,
    "stem": [{"op": "conv", "kernel": 3, "stride": 2, "channels": 8, "act": "hardswish"}],
    "head": [
        {"op": "conv", "kernel": 1, "channels": 32},
        {"op": "global_pool"},
        {"op": "linear", "channels": 10, "act": "none"},
    ],
    "stages": [
        {
            "block": "mbconv",
            "depth": [1, 2],
            "kernel": [3, 5],
            "expand": [1, 3],
            "channels": 16,
            "stride": 2,
            "se": [False, True],
            "act": "relu",
        },
        {
            "block": "bottleneck",
            "depth": [1, 2],
            "kernel": 3,
            "expand": ["1/4", "1/2"],
            "channels": [16, 32],
            "stride": 2,
        },
        {"block": "mbconv", "depth": [1, 2], "kernel": 3, "expand": 2, "channels": 32, "stride": 1},
    ],
}


def _final_rf(frame) -> int:
    spatial = [rf for rf in frame["rf"] if rf[0] is not None]
    return int(spatial[-1][0])


@pytest.fixture(scope="module")
def brute():
    """(rf, params, macs) of every candidate of SMALL, from the analyzer on its expansion."""
    space = build_space(json.loads(json.dumps(SMALL)), for_search=False)
    rows = []
    for arch in range(space.size):
        frame = rfsweep.analyze(space.network_spec(space.decode(arch)))
        rows.append((_final_rf(frame), int(frame["params"].sum()), int(frame["macs"].sum())))
    return np.array(rows, dtype=np.int64)


def _count(budget: dict, rf_min=None, rf_max=None, method="auto") -> counting.CountResult:
    settings = {**json.loads(json.dumps(SMALL)), **budget}
    if rf_min is not None:
        settings["rf_min"] = rf_min
    if rf_max is not None:
        settings["rf_max"] = rf_max
    return counting.count_details(settings, method=method)


def _expected(brute, budget: dict, rf_min, rf_max) -> int:
    ok = np.ones(len(brute), bool)
    if rf_min is not None:
        ok &= brute[:, 0] >= rf_min
    if rf_max is not None:
        ok &= brute[:, 0] <= rf_max
    if "max_params" in budget:
        ok &= brute[:, 1] <= budget["max_params"]
    if "max_macs" in budget:
        ok &= brute[:, 2] <= budget["max_macs"]
    return int(ok.sum())


def test_small_space_is_what_the_brute_force_walks(brute):
    space = build_space(json.loads(json.dumps(SMALL)), for_search=False)
    assert space.size == len(brute) == (8 + 64) * (2 + 4) * 2 * 2
    assert len(np.unique(brute[:, 0])) > 3 and len(np.unique(brute[:, 2])) > 100


@pytest.mark.parametrize("field", ["max_macs", "max_params"])
@pytest.mark.parametrize("quantile", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_split_method_equals_brute_force_at_budget_quantiles(brute, field, quantile):
    column = brute[:, 2 if field == "max_macs" else 1]
    budget = {field: int(np.quantile(column, quantile))}
    rf_mid = int(np.median(brute[:, 0]))
    for rf_min, rf_max in ((None, None), (rf_mid, None), (None, rf_mid), (rf_mid - 8, rf_mid + 8)):
        got = _count(budget, rf_min, rf_max)
        assert got.method == "stages"
        assert got.count == _expected(brute, budget, rf_min, rf_max), (budget, rf_min, rf_max)


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_split_method_in_bands_of_rows_equals_brute_force(brute, monkeypatch, rows):
    """The bucket table built a few rows at a time (what ProxylessNAS's fine cost resolution needs) counts
    the same: each band's partial sums give every G1 entry its partners among the band's rows."""
    from rfsweep.kernels import cpu

    shapes = []
    real = cpu.stage_buckets

    def spy(*args, **kw):
        shapes.append(next(a for a in args if getattr(a, "ndim", 0) == 2).shape)  # hist
        return real(*args, **kw)

    monkeypatch.setattr(cpu, "stage_buckets", spy)
    rf_mid = int(np.median(brute[:, 0]))
    budget = {"max_macs": int(np.median(brute[:, 2]))}
    for rf_min, rf_max in ((None, None), (rf_mid - 8, rf_mid + 8)):
        shapes.clear()
        monkeypatch.setattr(stage_count, "BAND_CELLS", 10**9)
        whole = _count(budget, rf_min, rf_max)
        assert whole.count == _expected(brute, budget, rf_min, rf_max)
        width, calls = shapes[0][1], len(shapes)
        shapes.clear()
        monkeypatch.setattr(stage_count, "BAND_CELLS", rows * width)
        got = _count(budget, rf_min, rf_max)
        assert got.method == "stages" and got.count == whole.count, (rows, rf_min, rf_max)
        assert len(shapes) > calls and all(r * w <= rows * width or r == 1 for r, w in shapes)  # in bands


@given(data=st.data())
def test_split_method_equals_brute_force_on_random_windows(brute, data):
    field = data.draw(st.sampled_from(["max_macs", "max_params"]))
    column = brute[:, 2 if field == "max_macs" else 1]
    budget = {field: data.draw(st.integers(int(column.min()) - 1, int(column.max()) + 1))}
    lo, hi = int(brute[:, 0].min()), int(brute[:, 0].max())
    rf_min = data.draw(st.none() | st.integers(lo - 2, hi + 2))
    rf_max = data.draw(st.none() | st.integers(rf_min or lo - 2, hi + 2))
    assert _count(budget, rf_min, rf_max).count == _expected(brute, budget, rf_min, rf_max)


def test_enumeration_agrees_and_no_budget_goes_to_the_programme(brute):
    budget = {"max_macs": int(np.median(brute[:, 2]))}
    assert _count(budget, 40, method="enumerate").count == _expected(brute, budget, 40, None)
    plain = _count({}, 40)
    assert plain.method == "dp" and plain.count == _expected(brute, {}, 40, None)


def test_split_method_refuses_what_it_cannot_count():
    with pytest.raises(RFSweepError, match="both --max-params and --max-macs"):
        _count({"max_macs": 10**7, "max_params": 10**5}, method="stages")
    assert _count({"max_macs": 10**7, "max_params": 10**5}).method == "enumerate"
    with pytest.raises(RFSweepError, match="method"):
        counting.count_details(dict(depth=3, kernels=[3], max_macs=10**6), method="stages")


@pytest.mark.slow
def test_ofa_mbv3_published_size_and_budget_count():
    settings = stages.load("ofa_mbv3")
    space = build_space(dict(settings), for_search=False)
    # Once-for-All: 5 stages x (3^2 ... each block kernel x expand = 9 choices; depth 2, 3 or 4)
    assert space.size == (9**2 + 9**3 + 9**4) ** 5
    plain = counting.count_details({**settings, "rf_min": 400})
    assert plain.method == "dp"
    # the split method with a budget every subnet meets is the programme's count
    macs_max = _ofa_extreme_macs(settings, largest=True)
    full = counting.count_details({**settings, "rf_min": 400, "max_macs": macs_max})
    assert full.method == "stages" and full.count == plain.count


def _ofa_extreme_macs(settings, largest: bool) -> int:
    """MACs of OFA's largest (or smallest) subnet from the analyzer on its expansion."""
    space = build_space(dict(settings), for_search=False)
    idx = [len(options) - 1 if largest else 0 for options in space.positions]
    frame = rfsweep.analyze(space.network_spec(idx))
    return int(frame["macs"].sum())


def test_count_cli_stage_space(tmp_path):
    path = tmp_path / "small.toml"
    from rfsweep.network.spec_io import to_toml  # the TOML writer the import command uses

    path.write_text(to_toml(SMALL))
    out = CliRunner().invoke(main, ["count", "--space", str(path), "--max-macs", "2e6", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["method"] == "stages"
    bad = CliRunner().invoke(main, ["count", "--space", "no_such_space", "--max-macs", "2e6"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert "ofa_mbv3" in bad.output  # names the shipped spaces
    assert stage_count.applicable(build_space(json.loads(json.dumps(SMALL)), for_search=False)) is not None


def test_anchor_taps_of_a_stage_space_equal_the_analyzer(tmp_path):
    """A level's tap is the last layer at its stride: its rf and ERF from the analyzer's expansion."""
    from rfsweep import api as sweep

    settings = {**json.loads(json.dumps(SMALL)), "anchors": "8@4,16@8", "anchor_rf": "1:8", "anchor_erf": "0.1"}
    space = build_space(json.loads(json.dumps(settings)))
    df = sweep.search(space)
    assert 0 < len(df) < space.size
    for _, row in df.sample(40, random_state=1).iterrows():
        frame = rfsweep.analyze(space.network_spec(space.decode(int(row["arch_id"]))))
        for stride in (4, 8):
            at = [i for i, j in enumerate(frame["jump"]) if j[0] == stride]
            rf = frame["rf"].iloc[at[-1]][0]
            sigma = frame["erf_sigma"].iloc[at[-1]]
            sigma = sigma[0] if isinstance(sigma, tuple) else sigma
            assert row[f"s{stride}_rf"] == rf
            assert row[f"s{stride}_erf_sigma"] == pytest.approx(sigma, rel=1e-9)


def test_search_rows_and_block_lists_equal_the_analyzer(brute):
    """Every row of a search over SMALL: metrics as the analyzer gives them, lists as its blocks are."""
    from rfsweep import api as sweep

    space = build_space(json.loads(json.dumps(SMALL)))
    df = sweep.search(space)  # a space of stages defaults to the per-block lists
    assert len(df) == space.size and "depth" not in df.columns
    for _, row in df.iterrows():
        arch = int(row["arch_id"])
        assert (row["rf"], row["params"], row["macs"]) == tuple(brute[arch])
        blocks = [(p, b) for p in space.stage_positions for b in space.positions[p][space.decode(arch)[p]].blocks]
        assert list(row["depths"]) == [len(space.positions[p][space.decode(arch)[p]].blocks) for p in (1, 2, 3)]
        assert list(row["op"]) == [b.op for _, b in blocks]
        assert list(row["kernel"]) == [b.kernel for _, b in blocks]
        assert list(row["stride"]) == [b.stride for _, b in blocks]
        assert list(row["expand"]) == [float(b.expand) for _, b in blocks]
        assert list(row["se"]) == [b.se for _, b in blocks]
        assert list(row["channels"]) == [b.channels for _, b in blocks]
    with pytest.raises(RFSweepError, match="field 'columns'"):
        sweep.search(space, columns="wide")


@pytest.mark.parametrize(
    "name, budget, expected",
    [
        ("ofa_resnet50_v15", 4e9, 118_010_972_741),
        # ProxylessNAS's G1 sums need 1/392 of the budget's resolution: the bucket table in two bands (~10 s a
        # pass). Its count, 3,981,099,732,664,117, is shown and so compared by docs/guide/stages.md (tests/
        # test_docs.py), as is ofa_mbv3's sample under 300M MACs with its count, 856,295,841,105,991,212: here
        # the sample only, not the same ~10-20 s programmes a second time (the suite's 10 minutes)
        pytest.param("ofa_proxyless", 450e6, None, marks=pytest.mark.slow),
    ],
)
def test_every_shipped_space_counts_and_samples_under_a_macs_budget(name, budget, expected):
    """Issue 25, item 6: `count --space ofa_proxyless --max-macs 450e6` (and --sample) refused with 'no split of
    the stages keeps the exact count within reach'; every shipped space is counted and sampled under a budget."""
    from rfsweep import api as sweep

    assert sorted(stages.shipped_spaces()) == ["ofa_mbv3", "ofa_proxyless", "ofa_resnet50_v15"]
    space = build_space({**stages.load(name), "max_macs": budget})
    if expected is not None:
        details = counting.count_details(space)
        assert details.method == "stages" and details.count == expected
    rows = sweep.search(space, sample=5, seed=1, columns="compact")
    assert len(rows) == 5 and (rows["macs"] <= budget).all() and rows["arch_id"].is_unique
