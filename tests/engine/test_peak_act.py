"""peak_act (issue 25, item 3): the peak activation memory of every row, its budget and its ranking.

The reference is tests/naive.py: for chains, the largest input + output of a layer; for spaces of stages,
:func:`naive.naive_peak_act`, a liveness pass over the candidate's expanded network spec (every tensor a
later layer reads stays alive), which knows nothing of the kernels' closed forms per block.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import naive
from rfsweep import api as sweep
from rfsweep.cli.main import main
from rfsweep.engine import count as counting
from rfsweep.engine import stage_count
from rfsweep.space import build_space

# the worked examples of docs/peak-memory.md, computed by hand there
CHAIN = {
    "input_size": 32,
    "in_channels": 3,
    "depth": 3,
    "positions": [
        {"index": 0, "ops": ["conv"], "kernels": [3], "strides": [2], "channels": [16]},
        {"index": 1, "ops": ["maxpool"], "pool_kernels": [2], "strides": [2]},
        {"index": 2, "ops": ["conv"], "kernels": [3], "strides": [1], "channels": [32]},
    ],
}
MBCONV_SKIP = {
    "input_size": 56,
    "in_channels": 24,
    "stages": [{"block": "mbconv", "depth": 1, "kernel": 3, "expand": 6, "channels": 24, "stride": 1}],
}
MBCONV_STRIDED = {
    "input_size": 56,
    "in_channels": 24,
    "stages": [{"block": "mbconv", "depth": 1, "kernel": 3, "expand": 6, "channels": 40, "stride": 2}],
}
# a small space of stages with every kind of block: residual and strided MBConvs with and without
# expansion and SE, bottlenecks with a projection shortcut, a stem and a head (2,016 candidates)
STAGES = {
    "input_size": 32,
    "in_channels": 3,
    "stem": [{"op": "conv", "kernel": 3, "stride": 2, "channels": 8, "act": "hardswish"}],
    "head": [
        {"op": "conv", "kernel": 1, "channels": 32},
        {"op": "global_pool"},
        {"op": "linear", "channels": 10, "act": "none"},
    ],
    "stages": [
        {"block": "mbconv", "depth": [1, 2], "kernel": 3, "expand": [1, 3, 6], "channels": [8, 16],
         "stride": 1, "se": [False, True]},
        {"block": "bottleneck", "depth": [1, 2], "kernel": 3, "expand": ["1/4", "1/2"], "channels": [16, 32],
         "stride": 2},
        {"block": "basic", "depth": [1, 2], "kernel": 3, "channels": 32, "stride": 1},
    ],
}  # fmt: skip


def _space(settings, **extra):
    return build_space({**json.loads(json.dumps(settings)), **extra})


def test_hand_computed_chain():
    """32x32x3 -> conv 3x3/2 to 16 (16x16) -> maxpool 2/2 (8x8) -> conv 3x3 to 32 (8x8):
    3072 + 4096 = 7168, 4096 + 1024 = 5120, 1024 + 2048 = 3072 elements: the peak is 7168."""
    df = sweep.search(_space(CHAIN))
    assert list(df["peak_act"]) == [7168]
    assert list(df["peak_act_bytes"]) == [4 * 7168]
    assert list(sweep.search(_space(CHAIN, act_dtype="float16"))["peak_act_bytes"]) == [2 * 7168]


def test_hand_computed_residual_mbconv():
    """MBConv 56x56x24, expand 6 (mid 144), 3x3 depthwise, stride 1, skip: expansion 24a + 144a, depthwise
    144a + 144a + 24a kept for the add, projection 144a + 24a + 24a (a = 56 x 56 = 3136): 312a = 978,432."""
    a = 56 * 56
    space = _space(MBCONV_SKIP)
    row = sweep.search(space).iloc[0]
    assert row["peak_act"] == 312 * a == 978_432
    assert row["peak_act_bytes"] == 4 * 978_432
    assert naive.naive_peak_act(space.network_spec(space.decode(0))) == 978_432
    # stride 2 to 40 channels: no skip; the depthwise conv's 144 x (3136 + 784) = 564,480 is the peak
    space = _space(MBCONV_STRIDED)
    assert sweep.search(space).iloc[0]["peak_act"] == 564_480
    assert naive.naive_peak_act(space.network_spec(space.decode(0))) == 564_480


@pytest.fixture(scope="module")
def brute():
    """(peak_act by the liveness reference, macs, rf) of every candidate of STAGES."""
    space = _space(STAGES)
    df = sweep.search(space, columns="compact")
    ref = [naive.naive_peak_act(space.network_spec(space.decode(a))) for a in range(space.size)]
    return space, df, np.array(ref, np.int64)


def test_every_stage_row_equals_the_liveness_reference(brute):
    space, df, ref = brute
    assert len(df) == space.size == 2016
    assert (df["peak_act"].to_numpy() == ref[df["arch_id"].astype(np.int64)]).all()
    assert len(np.unique(ref)) > 10  # the space exercises the peak


@pytest.mark.parametrize("quantile", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("macs", [None, 0.5])
def test_counts_under_a_peak_budget_equal_enumeration(brute, quantile, macs):
    space, df, ref = brute
    budget = int(np.quantile(ref, quantile))
    extra = {"max_peak_act": budget}
    ok = ref <= budget
    if macs is not None:
        extra["max_macs"] = int(np.quantile(df["macs"], macs))
        by_id = np.zeros(space.size, np.int64)
        by_id[df["arch_id"].astype(np.int64)] = df["macs"]
        ok &= by_id <= extra["max_macs"]
    sp = _space(STAGES, **extra)
    assert stage_count.applicable(sp) is None
    details = counting.count_details(sp)
    assert details.method == "stages"
    assert details.count == int(ok.sum())
    assert sweep.count(sp, method="enumerate") == int(ok.sum())
    rows = sweep.search(sp, sample=10**6, seed=1, columns="compact")  # every survivor, by the programmes
    assert sorted(rows["arch_id"].astype(np.int64)) == list(np.flatnonzero(ok))


@given(
    block=st.sampled_from(["mbconv", "basic", "bottleneck", "conv"]),
    kernel=st.sampled_from([1, 3, 5]),
    stride=st.sampled_from([1, 2]),
    expand=st.sampled_from([1, 2, 6, "1/4"]),
    se=st.booleans(),
    cin=st.sampled_from([8, 16]),
    cout=st.sampled_from([8, 16, 24]),
    size=st.integers(3, 20),
    depth=st.integers(1, 2),
)
def test_blocks_equal_the_liveness_reference(block, kernel, stride, expand, se, cin, cout, size, depth):
    """Random one-stage spaces (every block kind, residual or not, SE or not) against the reference."""
    if block in ("mbconv", "basic", "bottleneck") and kernel % 2 == 0:
        return
    stage = {"block": block, "depth": depth, "kernel": kernel, "channels": cout, "stride": stride}
    if block in ("mbconv", "bottleneck"):
        stage["expand"] = expand if block == "mbconv" or expand == "1/4" else 1
    if block == "mbconv":
        stage["se"] = se
    space = _space({"input_size": size, "in_channels": cin, "stages": [stage],
                    "head": [{"op": "global_pool"}, {"op": "linear", "channels": 5}]})  # fmt: skip
    df = sweep.search(space, columns="compact")
    for _, row in df.iterrows():
        spec = space.network_spec(space.decode(int(row["arch_id"])))
        assert row["peak_act"] == naive.naive_peak_act(spec)


def test_chain_budget_sort_and_front_equal_the_reference():
    settings = dict(depth="1-3", kernels=[1, 3], strides=[1, 2], channels=[4, 16], input_size=16, max_peak_act=3000)
    rows = naive.naive_search(settings)
    assert 0 < len(rows) < naive.naive_count({k: v for k, v in settings.items() if k != "max_peak_act"})
    assert sweep.count(_space(settings)) == len(rows)
    best = sorted(rows, key=lambda r: (r[2]["peak_act"], r[0]))[:7]
    got = sweep.search(_space(settings), limit=7, sort="peak_act")
    assert list(got["arch_id"]) == [r[0] for r in best]
    front = sweep.search(_space(settings), pareto="params,peak_act")
    keys = [(r[2]["params"], r[2]["peak_act"]) for r in rows]
    want = [r[0] for r, k in zip(rows, keys) if not any(o[0] <= k[0] and o[1] <= k[1] and o != k for o in keys)]
    assert sorted(front["arch_id"]) == sorted(want)


@pytest.mark.parametrize("k", [1, 9, 200, 5000])
def test_stage_sort_by_peak_equals_the_reference(brute, k):
    """The exact best k by peak on a space of stages (stage_select._top_k_by_peak, not the walk)."""
    from rfsweep.engine import stage_select

    space, _, ref = brute
    assert stage_select.applicable(space, {"limit": k, "sort": "peak_act"}) is None
    got = sweep.search(space, limit=k, sort="peak_act", columns="compact")
    want = sorted(range(space.size), key=lambda a: (ref[a], a))[:k]
    assert list(got["arch_id"].astype(np.int64)) == want


@pytest.mark.parametrize("quantile", [0.05, 0.5])
def test_stage_sort_by_peak_under_budgets_equals_the_walk(brute, quantile):
    from rfsweep.engine import stage_select

    space, df, ref = brute
    extra = {"max_macs": int(np.quantile(df["macs"], quantile)), "max_peak_act": int(np.quantile(ref, 0.8))}
    sp = _space(STAGES, **extra)
    rows = sweep.search(sp, columns="compact")  # every survivor, by the walk
    want = list(rows.sort_values(["peak_act", "arch_id"])["arch_id"][:25])
    assert stage_select.applicable(sp, {"limit": 25, "sort": "peak_act"}) is None
    assert list(sweep.search(sp, limit=25, sort="peak_act", columns="compact")["arch_id"]) == want


@pytest.mark.slow  # about 30 s on 2 cores: the split count under MACs
def test_ofa_counts_and_samples_under_a_peak_budget():
    """Once-for-All MobileNetV3 (2.2e19 subnets): a peak budget alone, and with a MACs budget: a sample
    drawn from the exact count under both (the count itself is not run a second time; counts under both
    budgets equal enumeration on small spaces: test_counts_under_a_peak_budget_equal_enumeration)."""
    from rfsweep.space.stages import load

    settings = load("ofa_mbv3")
    everything = sweep.count(build_space(settings))
    under = sweep.count(build_space({**settings, "max_peak_act": 1_000_000}))
    assert 0 < under < everything
    both = build_space({**settings, "max_peak_act": 1_000_000, "max_macs": 300_000_000})
    rows = sweep.search(both, sample=20, seed=3, columns="compact")
    assert len(rows) == 20 and (rows["peak_act"] <= 1_000_000).all() and (rows["macs"] <= 300_000_000).all()
    # docs/guide/peak-memory.md: the least peak, 802,816 elements (16 x 112^2 in + 48 x 112^2 expanded)
    best = sweep.search(build_space(settings), limit=3, sort="peak_act", columns="compact")
    assert list(best["peak_act"]) == [802_816] * 3 == [(16 + 48) * 112 * 112] * 3
    assert list(best["arch_id"]) == [0, 1, 2]
    # and its front by MACs and peak: one subnet, the smallest
    front = sweep.search(build_space(settings), pareto="macs,peak_act", columns="compact")
    assert [(int(a), m, p) for a, m, p in zip(front["arch_id"], front["macs"], front["peak_act"])] == [
        (0, 121_278_672, 802_816)
    ]


@pytest.mark.parametrize(
    "args, field",
    [
        (["--max-peak-act", "-5"], "max_peak_act"),
        (["--max-peak-act", "lots"], "max_peak_act"),
        (["--act-dtype", "float8"], "act-dtype"),
    ],
)
def test_bad_peak_options_are_one_line_exit_2(args, field):
    result = CliRunner().invoke(main, ["count", "--depth", "2", *args])
    assert result.exit_code == 2, result.output
    assert field in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3  # click's usage line + the error line


def test_guide_recipe_counts_and_runs():
    """docs/guide/peak-memory.md: the count it shows, and its chain search (the OFA sample is the slow test's)."""
    import shlex

    import docs_pages
    from rfsweep.engine import stage_sample
    from rfsweep.space import stage_graph
    from rfsweep.space.stages import load

    lines = docs_pages.recipe("peak-count").strip().splitlines()
    command, _, comment = lines[0].partition("#")
    result = CliRunner().invoke(main, [*shlex.split(command)[1:], "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)["count"]
    assert f"{got:,}" == comment.split()[0]
    # the same number by the sampler's own programme (paths of the filtered state graph), another method
    space = build_space({**load("ofa_mbv3"), "max_peak_act": 1_000_000})
    assert stage_sample.counts_for(stage_graph.build(space), None, lex=False).total == got
    result = CliRunner().invoke(main, [*shlex.split(lines[2])[1:], "-q"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("names", ["macs,peak_act", "peak_act,params", "erf,peak_act"])
@pytest.mark.parametrize("extra", [{}, {"max_macs": 0.5}, {"max_params": 0.3, "max_peak_act": 0.9}])
def test_stage_front_with_peak_equals_the_walk(brute, names, extra):
    """The exact front by peak and one additive objective (stage_select._front_with_peak): the walk's
    Front over every survivor, rows and order."""
    from rfsweep.engine import select, stage_select

    space, df, ref = brute
    settings = {}
    for key, quantile in extra.items():
        column = ref if key == "max_peak_act" else df[key[4:]]
        settings[key] = int(np.quantile(column, quantile))
    sp = _space(STAGES, **settings)
    assert stage_select.applicable(sp, {"pareto": tuple(names.split(","))}) is None
    got = sweep.search(sp, pareto=names, columns="compact")
    walk = select.Front(sp, tuple(names.split(",")))
    from rfsweep.engine.run import iter_batches

    for batch in iter_batches(sp):
        walk.add(batch.copy())
    want = walk.result()
    assert list(got["arch_id"]) == list(want.out[0]) and len(got) > 0
