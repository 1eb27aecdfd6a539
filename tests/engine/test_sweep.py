"""The sweep engine against the plain-Python enumerator (second part of tests/naive.py), on small spaces.

naive.py re-derives each search from its raw settings (choice lists, numbering, width rule, metrics)
without importing rfsweep, so the engine is never checked against its own rules.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import docs_pages
import naive
from naive import naive_search
from rfsweep import analyze
from rfsweep import api as sweep
from rfsweep.cli.main import main
from rfsweep.core.errors import RFSweepError
from rfsweep.engine.run import Stats, iter_batches
from rfsweep.kernels import layer_math as lm
from rfsweep.output.batches import selected_batches
from rfsweep.space import build_space

SPACES = {
    "conv_pools_same": dict(
        depth="1-3",
        kernels=[1, 3, 5],
        strides=[1, 2],
        dilations=[1, 2],
        channels=[4, 8],
        pool_kernels=[2, 3],
        ops=["conv", "maxpool", "avgpool"],
        input_size=20,
        rf_min=5,
        rf_max=30,
    ),
    "valid_target": dict(
        depth="2-3", kernels=[1, 3], strides=[1, 2, 3], padding="valid", input_size=17, target_rf=9, tolerance=2
    ),
    "tf_same_jumps": dict(
        depth="1-3", kernels=[2, 3], strides=[1, 2], padding="tf_same", input_size=15, rf_min=6, jump=[2, 4]
    ),
    "min_out": dict(depth="1-3", kernels=[1, 3], strides=[1, 2], input_size=16, min_out_size=4),
    "peak_budget": dict(
        depth="1-3",
        kernels=[1, 3],
        strides=[1, 2],
        channels=[4, 16],
        ops=["conv", "maxpool"],
        input_size=16,
        max_peak_act=2500,
        act_dtype="int8",
    ),
    "budgets": dict(
        depth="1-3",
        kernels=[1, 3, 5],
        strides=[1, 2],
        channels=[8, 16],
        input_size=24,
        max_params=3000,
        max_macs=400_000,
        bias=False,
    ),
    "unproductive": dict(
        depth="1-4",
        kernels=[3, 5],
        strides=[1, 2],
        ops=["conv", "maxpool"],
        input_size=9,
        no_unproductive=True,
        rf_min=7,
    ),
    "width_rule": dict(
        depth="2-3",
        kernels=[1, 3],
        strides=[1, 2],
        width=4,
        max_width=16,
        input_size=32,
        rf_max=20,
        ops=["conv", "avgpool"],
    ),
    "positions": dict(
        depth="2-4",
        kernels=[1, 3],
        strides=[1, 2],
        input_size=32,
        rf_min=9,
        rf_max=40,
        positions=[
            {"index": 0, "ops": ["conv"], "kernels": [7], "strides": [2]},
            {"index": 3, "ops": ["maxpool"], "pool_kernels": [2, 3]},
        ],
    ),
    "anchors": dict(
        depth="2-4",
        kernels=[1, 3, 5],
        strides=[1, 2],
        ops=["conv", "maxpool"],
        pool_kernels=[2, 3],
        input_size=64,
        anchors="8@2,16@4",
        anchor_rf="1:3",
        anchor_erf="0.5",
    ),
    "anchors_open_max": dict(
        depth="1-4",
        kernels=[3, 5],
        strides=[1, 2],
        input_size=32,
        anchors="4@1,8@2",
        anchor_rf="1.5:",
        anchor_erf="0.25",
        rf_max=40,
    ),
    "head": dict(
        depth="2-4",
        kernels=[1, 3],
        strides=[1, 2],
        ops=["conv", "maxpool"],
        pool_kernels=[2],
        input_size=32,
        rf_min=5,
        rf_max=30,
        positions=[
            {"index": 0, "ops": ["conv"], "kernels": [5], "strides": [2]},
            {
                "index": -1,
                "ops": ["conv", "avgpool"],
                "kernels": [1, 3],
                "pool_kernels": [3],
                "strides": [1],
                "channels": [10],
            },
        ],
    ),
    "head_from_depth_1": dict(
        depth="1-3",
        kernels=[3],
        strides=[1, 2],
        ops=["conv"],
        input_size=16,
        rf_max=20,
        positions=[{"index": -1, "kernels": [1], "channels": [7]}],
    ),
    "min_convs": dict(
        depth="2-4",
        kernels=[1, 3],
        strides=[1, 2],
        ops=["conv", "maxpool", "avgpool"],
        pool_kernels=[2, 3],
        input_size=32,
        min_convs=2,
        rf_min=6,
        rf_max=30,
    ),
    "ratio_valid_pools": dict(
        depth="1-3",
        kernels=[3],
        pool_kernels=[2],
        strides=[1, 2],
        padding="valid",
        input_size=12,
        max_rf_ratio=0.75,
        ops=["conv", "maxpool"],
    ),
}


_NAIVE: dict[str, list] = {}


def _naive_rows(settings):
    """naive_search, once per settings within this module (it is the slow part of the top-N tests)."""
    key = json.dumps(settings, sort_keys=True)
    if key not in _NAIVE:
        _NAIVE[key] = naive_search(settings)
    return _NAIVE[key]


def _rows(space, **kw):
    batches = [b.copy() for b in iter_batches(space, **kw)]
    if not batches:
        return np.zeros((space.out_width, 0), np.int64), np.zeros((space.depth_max, 0), np.int16)
    return np.concatenate([b.out for b in batches], axis=1), np.concatenate([b.choice for b in batches], axis=1)


def assert_same_as_naive(settings, df, layout="lists"):
    """Every row, in order, with every per-layer value and metric, equal to the naive enumerator's; the
    per-layer values as list columns or as the wide layout's per-position columns."""
    expected = naive_search(settings)
    s = naive.NaiveSpace(settings).s
    assert list(df["arch_id"]) == [aid for aid, _, _ in expected]
    wide = {}
    if layout == "wide":
        dmax = naive.NaiveSpace(settings).dmax
        for f in ("op", "kernel", "stride", "dilation", "channels"):
            wide[f] = [df[f"{f}_{p}"].tolist() for p in range(dmax)]
    for i, (row, (aid, idx, m)) in enumerate(zip(df.itertuples(index=False), expected)):
        layers = m["layers"]
        assert row.depth == len(idx)
        for k, f in enumerate(("op", "kernel", "stride", "dilation", "channels")):
            want = [x[k] for x in layers]
            if layout == "wide":
                got = [wide[f][p][i] for p in range(len(wide[f]))]
                assert got[: len(idx)] == want, (f, aid)
                assert all(v is None or v != v for v in got[len(idx) :]), (f, aid)  # null (NaN) beyond depth
            else:
                assert list(getattr(row, f)) == want, (f, aid)
        if layout == "wide":
            assert row.padding == s["padding"]
        else:
            assert list(row.padding) == [s["padding"]] * len(idx)
        for col in ("rf", "jump", "eff_padding", "out_size", "params", "macs", "peak_act"):
            assert getattr(row, col) == m[col], (col, aid)
        assert row.peak_act_bytes == m["peak_act"] * naive.ACT_BYTES[s.get("act_dtype") or "float32"]
        assert row.center == m["center"]
        assert math.isclose(row.erf_sigma, m["erf_sigma"], rel_tol=1e-12, abs_tol=1e-12)
        for anchor, stride in naive.levels(s):
            tap = naive.level_tap(s, m, anchor, stride)
            assert getattr(row, f"s{stride}_tap") == tap
            assert getattr(row, f"s{stride}_rf") == m["per_layer"][tap]["rf"]
            erf = math.sqrt(m["per_layer"][tap]["erf12"] / 12)
            assert math.isclose(getattr(row, f"s{stride}_erf_sigma"), erf, rel_tol=1e-12)


@pytest.mark.parametrize("name", sorted(SPACES))
@pytest.mark.parametrize("layout", ["lists", "wide"])
def test_search_rows_equal_naive_enumerator(name, layout):
    df = sweep.search(build_space(SPACES[name]), columns=layout)
    assert len(df) > 0, "each test space must keep something"
    assert_same_as_naive(SPACES[name], df, layout)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_count_equals_naive_count_both_methods(name):
    space = build_space(SPACES[name])
    n = naive.naive_count(SPACES[name])
    assert sweep.count(space) == n
    assert sweep.count(space, method="enumerate") == n


def test_space_size_and_numbering_equal_naive():
    for name, settings in SPACES.items():
        space = build_space(settings)
        ns = naive.NaiveSpace(settings)
        candidates = list(ns.candidates())
        assert space.size == len(candidates), name
        for idx in candidates[:: max(1, len(candidates) // 50)]:
            assert space.encode(idx) == ns.arch_id(idx), name
            assert space.decode(ns.arch_id(idx)) == idx, name


@given(
    layers=st.lists(
        st.tuples(
            st.sampled_from(["conv", "maxpool", "avgpool"]),
            st.integers(1, 5),
            st.integers(1, 3),
            st.integers(1, 2),
        ),
        min_size=1,
        max_size=4,
    ),
    n=st.integers(1, 30),
    padding=st.sampled_from(["same", "valid", "tf_same"]),
)
def test_naive_recurrences_equal_index_sets(layers, n, padding):
    """The sweep reference's closed forms against the index-set model of naive.py's first part."""
    chain = [(op, k, s, d if op == "conv" else 1, 4) for op, k, s, d in layers]
    res = naive.evaluate_layers(chain, n, padding, 3, True)
    spec = [{"op": op, "kernel": k, "stride": s, "dilation": d, "padding": padding} for op, k, s, d, _ in chain]
    sizes = naive.sizes(spec, n)
    if res is None:
        assert min(sizes[1:]) < 1
        return
    per_layer = res[0]
    for i, x in enumerate(per_layer):
        sub = spec[: i + 1]
        assert x["out_size"] == sizes[i + 1]
        support = naive.impulse_support(sub, n, [0, 1])
        first, last = naive.hull(support[0])
        assert (x["rf"], x["eff_padding"]) == (last - first + 1, -first)
        assert x["jump"] == naive.hull(support[1])[0] - first
        _, var = naive.moments(naive.impulse_gradient(sub, n, unit=0))
        assert 12 * var == x["erf12"]


def test_metrics_identical_to_analyze_on_the_same_stack():
    space = build_space(SPACES["conv_pools_same"])
    df = sweep.search(space)
    for row in df.iloc[:: max(1, len(df) // 40)].itertuples(index=False):
        table = analyze(space.network_spec(space.decode(row.arch_id)))
        last = table.iloc[-1]
        assert last["rf"] == (row.rf, row.rf)
        assert last["jump"] == (row.jump, row.jump)
        assert last["eff_padding"] == (row.eff_padding, row.eff_padding)
        assert last["center"] == (row.center, row.center)
        assert last["out_size"] == (row.out_size, row.out_size)
        assert table["params"].sum() == row.params
        assert table["macs"].sum() == row.macs
        assert math.isclose(last["erf_sigma"][0], row.erf_sigma, rel_tol=1e-12)


def test_arch_id_round_trips():
    space = build_space(SPACES["positions"])
    for arch in range(0, space.size, 7):
        assert space.encode(space.decode(arch)) == arch


def test_one_and_two_threads_give_identical_rows():
    space = build_space(dict(SPACES["conv_pools_same"], depth="1-4"))
    a_out, a_ch = _rows(space, threads=1)
    b_out, b_ch = _rows(space, threads=2)
    assert np.array_equal(a_out, b_out) and np.array_equal(a_ch, b_ch)


def test_small_slabs_split_tasks_and_keep_order():
    space = build_space(SPACES["conv_pools_same"])
    a_out, a_ch = _rows(space)
    batches = [b.copy() for b in iter_batches(space, slab_rows=50)]
    assert max(len(b) for b in batches) <= 50 and len(batches) > 3
    assert np.array_equal(np.concatenate([b.out for b in batches], axis=1), a_out)
    assert np.array_equal(np.concatenate([b.choice for b in batches], axis=1), a_ch)


@given(
    space_name=st.sampled_from(["conv_pools_same", "min_convs", "positions"]),
    align=st.integers(1, 600),
    slab_rows=st.integers(20, 800),
    limit=st.one_of(st.none(), st.integers(1, 5000)),
    reuse=st.booleans(),
)
def test_aligned_batches_are_whole_multiples_but_the_last(space_name, align, slab_rows, limit, reuse):
    """With ``align`` (a sink's row group) the same rows in the same order, every batch but the last a
    multiple of ``align`` rows, the last one marked unless a limit cut it; with or without reused buffers
    (whose choices past a row's depth are left from earlier rows: compared up to the depth)."""
    space = build_space(SPACES[space_name])
    want_out, want_ch = _rows(space, limit=limit)
    batches = [(b.copy(), b.last) for b in iter_batches(space, align=align, slab_rows=slab_rows, limit=limit,
                                                         reuse_buffers=reuse)]  # fmt: skip
    assert all(len(b) % align == 0 and not last for b, last in batches[:-1])
    assert all(len(b) > 0 for b, _ in batches)
    if batches and len(batches[-1][0]) % align:
        assert batches[-1][1] or sum(len(b) for b, _ in batches) == limit
    got_out = np.concatenate([b.out for b, _ in batches], axis=1) if batches else want_out[:, :0]
    got_ch = np.concatenate([b.choice for b, _ in batches], axis=1) if batches else want_ch[:, :0]
    assert np.array_equal(got_out, want_out)
    reached = np.arange(got_ch.shape[0])[:, None] < got_out[lm.O_DEPTH][None, :]
    assert np.array_equal(np.where(reached, got_ch, 0), np.where(reached, want_ch, 0))


@given(
    depth=st.tuples(st.integers(1, 3), st.integers(0, 1)),
    kernels=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    strides=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    dilations=st.lists(st.integers(1, 2), min_size=1, max_size=2),
    ops=st.lists(st.sampled_from(["conv", "maxpool", "avgpool"]), min_size=1, max_size=2),
    padding=st.sampled_from(["same", "valid", "tf_same"]),
    n=st.integers(4, 40),
    rf=st.tuples(st.integers(1, 30), st.integers(0, 30)),
    min_out=st.integers(1, 4),
    jump=st.one_of(st.none(), st.lists(st.sampled_from([1, 2, 3, 4, 6, 8]), min_size=1, max_size=2)),
    max_params=st.one_of(st.none(), st.integers(0, 2000)),
    unprod=st.booleans(),
    anchors=st.one_of(
        st.none(),
        st.lists(
            st.tuples(st.integers(1, 12), st.sampled_from([1, 2, 3, 4, 6])),
            min_size=1,
            max_size=2,
            unique_by=lambda a: a[1],
        ),
    ),
    anchor_rf=st.sampled_from(["1:4", "0.5:2", "2:", "0:1.5"]),
    anchor_erf=st.sampled_from(["0", "0.25", "1/3", "1"]),
    min_convs=st.integers(0, 3),
    width=st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(0, 3))),
)
def test_random_spaces_match_naive(
    depth,
    kernels,
    strides,
    dilations,
    ops,
    padding,
    n,
    rf,
    min_out,
    jump,
    max_params,
    unprod,
    anchors,
    anchor_rf,
    anchor_erf,
    min_convs,
    width,
):
    settings_ = dict(
        depth=[depth[0], depth[0] + depth[1]],
        kernels=kernels,
        pool_kernels=kernels,
        strides=strides,
        dilations=dilations,
        ops=ops,
        padding=padding,
        input_size=n,
        rf_min=rf[0],
        rf_max=rf[0] + rf[1],
        min_out_size=min_out,
        jump=jump,
        max_params=max_params,
        no_unproductive=unprod,
        anchor_rf=anchor_rf,
        anchor_erf=anchor_erf,
        anchors=None if anchors is None else [list(a) for a in anchors],
        min_convs=min_convs,
    )
    if width is None:
        settings_["channels"] = [2, 3]
    else:
        settings_.update(width=width[0], max_width=width[0] * 2 ** width[1])
    space = build_space(settings_)
    df = sweep.search(space, columns="lists")
    assert_same_as_naive(settings_, df)
    assert sweep.count(space) == len(df)
    assert_same_as_naive(settings_, sweep.search(space), "wide")


def test_topk_is_the_best_k_of_the_naive_rows():
    space = build_space(SPACES["budgets"])
    rows = naive_search(SPACES["budgets"])
    expected = sorted(rows, key=lambda r: (r[2]["params"], r[0]))[:15]
    df = sweep.search(space, limit=15, sort="params")
    assert list(df["arch_id"]) == [r[0] for r in expected]
    first = sweep.search(space, limit=5)
    assert list(first["arch_id"]) == [r[0] for r in rows[:5]]


@pytest.mark.parametrize("sort", ["params", "macs", "rf_error", "erf"])
@pytest.mark.parametrize("limit", [1, 7, 60])
def test_topk_with_pruning_by_the_kth_best_equals_sorting_everything(sort, limit):
    """The top-N walk narrows its own constraints to the N-th best; the result must not change."""
    settings = dict(
        depth="1-4", kernels=[1, 3, 5], strides=[1, 2], channels=[4, 8], input_size=32, target_rf=15, tolerance=8
    )
    rows = _naive_rows(settings)
    key = {
        "params": lambda r: r[2]["params"],
        "macs": lambda r: r[2]["macs"],
        "rf_error": lambda r: abs(2 * r[2]["rf"] - 30),
        "erf": lambda r: -r[2]["erf_sigma"],
    }[sort]
    expected = [r[0] for r in sorted(rows, key=lambda r: (key(r), r[0]))[:limit]]
    stats = Stats()
    df = sweep.search(build_space(settings), limit=limit, sort=sort, stats=stats)
    assert list(df["arch_id"]) == expected


@given(
    depth=st.tuples(st.integers(1, 3), st.integers(0, 2)),
    kernels=st.lists(st.integers(1, 5), min_size=1, max_size=3, unique=True),
    strides=st.lists(st.integers(1, 3), min_size=1, max_size=2, unique=True),
    channels=st.sampled_from([[4], [2, 8]]),
    sort=st.sampled_from(["params", "macs", "rf_error"]),
    limit=st.integers(1, 200),
    max_params=st.one_of(st.none(), st.integers(0, 3000)),
)
def test_topk_on_random_spaces_with_ties_equals_sorting_everything(depth, kernels, strides, channels, sort, limit,
                                                                  max_params):  # fmt: skip
    """The top-N walk seeds its bound with the walk's first N rows and, once the N-th best row is of the
    least depth, prunes ties too (they come later, so they lose on arch_id): strides and fixed widths make
    ties by the thousand; the rows must still be the first N of (key, arch_id) over every survivor."""
    settings = dict(
        depth=[depth[0], depth[0] + depth[1]], kernels=kernels, strides=strides, channels=channels,
        input_size=32, target_rf=9, tolerance=6, max_params=max_params,
    )  # fmt: skip
    rows = _naive_rows(settings)
    key = {
        "params": lambda r: r[2]["params"],
        "macs": lambda r: r[2]["macs"],
        "rf_error": lambda r: abs(2 * r[2]["rf"] - 18),
    }[sort]
    expected = [r[0] for r in sorted(rows, key=lambda r: (key(r), r[0]))[:limit]]
    stats = Stats()
    df = sweep.search(build_space(settings), limit=limit, sort=sort, stats=stats)
    assert list(df["arch_id"]) == expected
    assert stats.evaluated + stats.pruned + stats.not_walked == stats.space_size
    # one task a full-depth prefix: many chunks, so the bound tightens many times between them
    space = build_space(settings)
    got = [b.out[lm.O_ARCH].copy() for b in selected_batches(space, limit=limit, sort=sort, q=space.depth_max)]
    assert list(np.concatenate(got)) == expected


def test_rf_error_and_erf_sorts():
    space = build_space(dict(SPACES["valid_target"]))
    rows = naive_search(SPACES["valid_target"])
    df = sweep.search(space, limit=10, sort="rf_error")
    assert list(df["arch_id"]) == [r[0] for r in sorted(rows, key=lambda r: (abs(r[2]["rf"] - 9), r[0]))[:10]]
    df = sweep.search(space, limit=10, sort="erf")
    assert list(df["arch_id"]) == [r[0] for r in sorted(rows, key=lambda r: (-r[2]["erf_sigma"], r[0]))[:10]]


def test_limit_without_sort_stops_early_and_the_summary_adds_up():
    """--limit N alone walks only what the first N rows need; evaluated + pruned + not walked = space."""
    space = build_space(dict(depth="1-8", kernels=[1, 3, 5, 7], strides=[1, 2], channels=[8]))
    stats = Stats()
    df = sweep.search(space, limit=3, stats=stats)
    assert len(df) == 3 and stats.stopped_early
    assert stats.covered < space.size / 100
    assert stats.evaluated + stats.pruned + stats.not_walked == space.size
    assert stats.kept >= 3
    full = Stats()
    list(iter_batches(build_space(SPACES["min_out"]), stats=full))
    assert full.not_walked == 0 and full.evaluated + full.pruned == full.space_size


@pytest.mark.parametrize("name", ["budgets", "anchors", "head", "conv_pools_same"])
@given(limit=st.integers(1, 400))
def test_limit_without_sort_is_the_first_n_rows_of_the_walk(name, limit):
    """Each task stops at the rows a --limit still needs (ctl[CTL_CAP]): the rows must be the walk's first N,
    the summary must still add up, and the cap must not outlive the run."""
    from rfsweep.engine import steer

    rows = _naive_rows(SPACES[name])
    space = build_space(SPACES[name])
    stats = Stats()
    df = sweep.search(space, limit=limit, stats=stats)
    assert list(df["arch_id"]) == [r[0] for r in rows[:limit]]
    assert stats.evaluated + stats.pruned + stats.not_walked == space.size
    assert stats.kept >= len(df)
    assert steer.control()[steer.CTL_CAP] == 0


def test_limit_without_sort_caps_tasks_a_table_cannot_count():
    """A budget keeps the counting programme out: without the cap, every task of the first chunk would be
    walked whole before the first N rows could be written."""
    space = build_space(dict(depth="10", kernels=[1, 3, 5, 7], strides=[1, 2], channels=[8], max_params=10**6))
    stats = Stats()
    df = sweep.search(space, limit=5, stats=stats)
    assert len(df) == 5 and stats.kept < 1000
    assert stats.evaluated + stats.pruned + stats.not_walked == space.size


def test_parquet_metadata_round_trips_and_show_decodes(tmp_path):
    space = build_space(SPACES["positions"])
    path = tmp_path / "out.parquet"
    stats = sweep.search_to_parquet(str(path), space)
    table = pq.read_table(path)
    assert table.num_rows == stats.kept == sweep.count(space)
    spec = json.loads(table.schema.metadata[b"rfsweep.spec"])
    assert spec["space"] == space.settings
    assert "version" in spec
    rebuilt = build_space(spec["space"])
    assert rebuilt.size == space.size and rebuilt.positions == space.positions
    arch = int(table.column("arch_id")[3].as_py())
    res = CliRunner().invoke(main, ["show", str(path), str(arch), "--format", "json"])
    assert res.exit_code == 0, res.output
    layers = json.loads(res.output)
    assert layers[-1]["rf"] == [table.column("rf")[3].as_py()] * 2
    assert not [p for p in os.listdir(tmp_path) if p != "out.parquet"]


def test_show_refuses_ids_not_in_the_file(tmp_path):
    """A decodable id that is not a row of FILE is refused, naming what the file holds."""
    space = build_space(SPACES["head"])
    path = tmp_path / "h.parquet"
    sweep.search_to_parquet(str(path), space, limit=5)
    ids = set(pq.read_table(path).column("arch_id").to_pylist())
    other = next(i for i in range(space.id_space) if i not in ids and space.is_candidate(space.digits(i)))
    for bad in (other, space.id_space + 5):
        res = CliRunner().invoke(main, ["show", str(path), str(bad)])
        assert res.exit_code == 2, res.output
        line = res.stderr.strip()
        assert line.startswith("error: field 'arch_id'") and "is not a row" in line and "\n" not in line
        assert f"from {min(ids)} to {max(ids)}" in line and "head" in line


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    space = build_space(SPACES["conv_pools_same"])
    path = tmp_path / "out.parquet"

    def boom(*a, **k):
        yield from ()
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "selected_batches", boom)
    with pytest.raises(KeyboardInterrupt):
        sweep.search_to_parquet(str(path), space)
    assert os.listdir(tmp_path) == []


def test_unrepresentable_space_is_refused_naming_the_field():
    with pytest.raises(RFSweepError, match="field 'depth'.*more than the 38 digits"):
        build_space(dict(depth=30, kernels=[1, 3, 5, 7], strides=[1, 2, 3], dilations=[1, 2, 3]))
    with pytest.raises(RFSweepError, match="field 'strides'.*does not fit in int64"):
        build_space(dict(depth=30, kernels=[255], strides=[255], dilations=[255]), for_search=False)


def test_int64_guard_takes_the_real_maxima_and_budgets():
    """Spaces whose real params/MACs fit are accepted; a budget bounds what the walk accumulates."""
    wide = dict(depth=12, kernels=[7], strides=[1], channels=[1 << 16], input_size=1 << 12)
    with pytest.raises(RFSweepError, match="field 'max_macs'"):
        build_space(wide, for_search=False)
    build_space({**wide, "max_macs": 10**15}, for_search=False)  # budget + one layer fits
    # width rule 32 -> 512 at input 224: the old crude bound (512^2 channels at every layer, full
    # resolution) refused deep stacks whose real MACs are far below 2^62
    build_space(dict(depth=20, kernels=[1, 3, 5, 7], strides=[1, 2]), for_search=False)


@pytest.mark.parametrize(
    "args, field",
    [
        (["--kernels", "0"], "kernels"),
        (["--depth", "5-2"], "depth"),
        (["--depth", "40"], "depth"),
        (["--depth", "-1"], "depth"),
        (["--ops", "conv,lstm"], "ops"),
        (["--target-rf", "abc"], "target_rf"),
        (["--target-rf", "1e30"], "target_rf"),
        (["--rf-min", "50", "--rf-max", "10"], "rf_max"),
        (["--max-params", "-5"], "max_params"),
        (["--max-params", "1e30"], "max_params"),
        (["--jump", "2,x"], "jump"),
        (["--jump", "1" + "0" * 30], "jump"),
        (["--width", "1" + "0" * 30], "width"),
        (["--input-size", "1" + "0" * 30], "input_size"),
        (["--max-rf-ratio", "inf"], "max_rf_ratio"),
        (["--tolerance", "3"], "tolerance"),
        (["--threads", "0"], "threads"),
        (["--limit", "0"], "limit"),
        (["--anchors", "32@8,64@8"], "anchors"),
        (["--anchors", "32-8"], "anchors"),
        (["--anchors", "32@" + "1" * 31], "anchors"),
        (["--anchors", "32@8", "--anchor-rf", "4:1"], "anchor_rf"),
        (["--anchors", "32@8", "--anchor-erf", "x"], "anchor_erf"),
        (["--sort", "params", "-o", "x.parquet"], "sort"),
        (["-o", "x.csv"], "output"),
        (["-o", ""], "output"),
    ],
)
def test_bad_flags_give_one_line_errors(args, field, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["search"] if args[0] == "--depth" else ["search", "--depth", "2"]
    res = CliRunner().invoke(main, base + args, catch_exceptions=False)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and f"'{field}'" in lines[0], res.stderr
    assert "Traceback" not in res.output
    assert os.listdir(tmp_path) == []


def test_nothing_matches_names_nearest_rfs():
    res = CliRunner().invoke(
        main, ["search", "--depth", "2-4", "--ops", "conv", "--kernels", "3", "--target-rf", "12", "--json"]
    )
    assert res.exit_code == 0
    summary = json.loads(res.stdout)
    assert summary["kept"] == 0
    assert summary["nearest_rf_below"][0] == 11 and summary["nearest_rf_above"][0] == 13
    res = CliRunner().invoke(main, ["search", "--depth", "2-4", "--ops", "conv", "--kernels", "3", "--target-rf", "12"])
    assert "odd" in res.stderr and "11" in res.stderr


def test_nothing_matches_because_of_a_budget_says_so():
    """rf 13 is reachable; a budget removed every candidate with it: say that, not 'nearest 11, 15'."""
    args = ["search", "--depth", "2-4", "--ops", "conv", "--kernels", "3,5", "--target-rf", "13", "--channels", "8"]
    res = CliRunner().invoke(main, [*args, "--max-params", "10", "--json"])
    summary = json.loads(res.stdout)
    assert summary["kept"] == 0 and summary["in_rf_window"] > 0
    assert "--max-params removed every one" in summary["why"]
    assert "nearest_rf_below" not in summary


def test_space_file_and_flags(tmp_path):
    toml = tmp_path / "space.toml"
    toml.write_text(
        'depth = "2-3"\nkernels = [1, 3]\nstrides = [1, 2]\ninput_size = 32\nrf_min = 9\n'
        '[[positions]]\nindex = 0\nops = ["conv"]\nkernels = [7]\nstrides = [2]\n'
    )
    res = CliRunner().invoke(main, ["count", "--space", str(toml), "--rf-max", "40", "--json"])
    assert res.exit_code == 0, res.output
    expected = dict(
        depth="2-3",
        kernels=[1, 3],
        strides=[1, 2],
        input_size=32,
        rf_min=9,
        rf_max=40,
        positions=[{"index": 0, "ops": ["conv"], "kernels": [7], "strides": [2]}],
    )
    assert json.loads(res.stdout)["count"] == naive.naive_count(expected)
    toml.write_text("depth = 2\nbogus = 1\n")
    res = CliRunner().invoke(main, ["count", "--space", str(toml)])
    assert res.exit_code == 2 and "bogus" in res.stderr


def test_search_cli_writes_parquet_and_summary(tmp_path):
    out = tmp_path / "c.parquet"
    res = CliRunner().invoke(
        main,
        ["search", "--depth", "2-3", "--kernels", "1,3", "--input-size", "32"]
        + ["--rf-min", "5", "--rf-max", "9", "-o", str(out), "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["kept"] == summary["written"] == pq.read_metadata(out).num_rows > 0
    assert summary["evaluated"] + summary["pruned"] + summary["not_walked"] == summary["space_size"]


def test_stats_count_evaluated_candidates():
    space = build_space(SPACES["min_out"])
    stats = Stats()
    list(iter_batches(space, stats=stats))
    assert 0 < stats.evaluated <= space.size
    assert stats.pruned == space.size - stats.evaluated


def test_anchor_levels_prune_inside_the_kernel():
    """Levels cut the walk itself: far fewer candidates are evaluated than without them."""
    base = dict(depth="2-5", kernels=[1, 3, 5], strides=[1, 2], input_size=64, rf_max=80)
    plain, levels = Stats(), Stats()
    list(iter_batches(build_space(base), stats=plain))
    list(iter_batches(build_space(dict(base, anchors="8@2,16@4", anchor_rf="1:3", anchor_erf="0.5")), stats=levels))
    assert levels.evaluated < plain.evaluated / 2


def test_search_cli_with_anchors_writes_level_columns(tmp_path):
    out = tmp_path / "a.parquet"
    res = CliRunner().invoke(
        main,
        ["search", "--depth", "2-4", "--kernels", "1,3,5", "--input-size", "64", "--anchors", "8@2,16@4"]
        + ["--anchor-rf", "1:3", "--anchor-erf", "0.5", "-o", str(out), "--json"],
    )
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert {"s2_tap", "s2_rf", "s2_erf_sigma", "s4_tap", "s4_rf", "s4_erf_sigma"} <= set(table.column_names)
    assert table.num_rows == json.loads(res.stdout)["kept"] > 0
    df = table.to_pandas()
    assert ((df["s2_rf"] >= 8) & (df["s2_rf"] <= 24) & (2 * df["s2_erf_sigma"] >= 4 - 1e-12)).all()


def test_readme_search_examples_run(tmp_path):
    """The README's space file builds, and its Python API lines run."""

    import rfsweep

    toml = docs_pages.code_block(docs_pages.section("rfsweep search"), "toml") + "\n"
    path = tmp_path / "space.toml"
    path.write_text(toml)
    res = CliRunner().invoke(main, ["count", "--space", str(path), "--depth", "4-5", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["method"] == "enumerate"  # max_params needs the enumeration
    assert callable(rfsweep.search) and callable(rfsweep.count) and callable(rfsweep.search_to_parquet)
    assert rfsweep.count(depth=3, kernels=[1, 3], rf_min=5, rf_max=9) == naive.naive_count(
        dict(depth=3, kernels=[1, 3], rf_min=5, rf_max=9)
    )


def test_every_setting_has_a_flag_and_every_flag_reaches_the_space():
    """No flag parsed and ignored: each search/count option is a setting (or a run option), and back."""
    from rfsweep.space.settings import SETTINGS

    DEFAULTS = {s.name: s.default for s in SETTINGS if s.kind != "toml"}  # TOML-only: positions, stages, ...
    run_options = {
        "space_file",
        "device",
        "threads",
        "as_json",
        "quiet",
        "output",
        "limit",
        "sort",
        "pareto",
        "sample",
        "seed",
        "where",
        "columns",
        "method",
        "cluster",  # the Dask options (rfsweep/distributed/cluster.py)
        "scheduler",
        "shards",
        "resume",
        "break_lock",  # the dataset's lock (rfsweep/output/dataset.py; tests/output/test_trust.py)
        "measure_missing",  # completes --latency-lut's table (tests/nas/test_latency_measure.py)
    }
    for command in ("search", "count"):
        params = {p.name for p in main.commands[command].params} - {"help"}
        assert set(DEFAULTS) <= params, command
        assert params - set(DEFAULTS) <= run_options, command


def test_help_defaults_come_from_the_settings_table():
    from rfsweep.space.settings import SETTINGS

    res = CliRunner().invoke(main, ["search", "--help"], terminal_width=400)
    text = " ".join(res.output.split())
    for s in SETTINGS:
        if s.default_text():
            assert re.search(rf"\[default: {re.escape(s.default_text())}[;\]]", text), s.name
    res = CliRunner().invoke(main, ["count", "--help"], terminal_width=400)
    text = " ".join(res.output.split())
    for flag in ("--max-params", "--max-macs", "--no-unproductive", "--anchors"):
        assert flag in text.split("Options:")[0], flag  # the description names what forces enumeration


def test_output_has_the_permissions_of_any_new_file(tmp_path):
    """The temporary name must not leave the result private (mkstemp's 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "out.parquet"
    sweep.search_to_parquet(str(path), build_space(SPACES["min_out"]))
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("name", ["head", "head_from_depth_1"])
def test_head_sets_the_last_layer_of_every_candidate(name):
    space = build_space(SPACES[name])
    assert space.has_head
    ns = naive.NaiveSpace(SPACES[name])
    assert space.size == len(list(ns.candidates())) < space.id_space
    df = sweep.search(space, columns="compact")
    for row in df.itertuples(index=False):
        layers = space.layers(space.decode(row.arch_id))
        if name == "head":
            assert (layers[-1]["op"], layers[-1].get("channels")) in {("conv", 10), ("avgpool", None)}
            assert layers[0]["kernel"] == 5 or len(layers) == 1
        else:
            assert layers[-1]["kernel"] == 1 and layers[-1]["channels"] == 7
            assert all(layer["kernel"] == 3 for layer in layers[:-1])
    bad_id = next(i for i in range(space.id_space) if not space.is_candidate(space.digits(i)))
    with pytest.raises(RFSweepError, match="not a candidate"):
        space.decode(bad_id)


@given(
    depth=st.tuples(st.integers(1, 4), st.integers(0, 2)),
    kernels=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    strides=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    padding=st.sampled_from(["same", "valid", "tf_same"]),
    n=st.integers(4, 40),
    rf=st.tuples(st.integers(1, 30), st.one_of(st.none(), st.integers(0, 30))),
    jump=st.one_of(st.none(), st.lists(st.sampled_from([1, 2, 4, 6, 8]), min_size=1, max_size=2)),
    min_convs=st.integers(0, 3),
    head=st.booleans(),
    q=st.integers(0, 3),
)
def test_task_counts_from_the_programme_equal_walking_them(depth, kernels, strides, padding, n, rf, jump, min_convs,
                                                            head, q):  # fmt: skip
    """Count passes look survivors up in the counting programme's suffix table where the constraints
    allow; every task's count (any prefix length, owned ancestors included) must equal the walk's. The
    search's "of N matching" (window_count, read from the same table) is the walk's total, and the
    modular programme's (count_dp)."""
    from rfsweep.engine import count as counting
    from rfsweep.engine.run import Plan, _Runner, prefixes

    settings_ = dict(
        depth=[depth[0], depth[0] + depth[1]], kernels=kernels, strides=strides, ops=["conv", "maxpool"],
        pool_kernels=[2, 3], padding=padding, input_size=n, rf_min=rf[0],
        rf_max=None if rf[1] is None else rf[0] + rf[1], jump=jump, min_convs=min_convs, channels=[4],
        positions=[{"index": -1, "ops": ["conv"], "kernels": [1]}] if head else [],
    )  # fmt: skip
    space = build_space(settings_)
    q = min(q, space.depth_max)
    tasks = prefixes(space, q, 0, math.prod(space.radices[:q]))
    plens = np.full(len(tasks), q, np.int64)
    stats = Stats()
    by_table = _Runner(space, "cpu", stats, None)
    got, _ = by_table.count_pass(tasks, plens)
    assert not by_table.walked
    want, _ = _Runner(space, "cpu", stats, None, use_table=False).count_pass(tasks, plens)
    assert list(got) == list(want)
    matching = counting.window_count(space)
    assert matching == sum(counting.rf_histogram(space, space.rf_min, space.rf_max)[space.rf_min :])
    assert matching == int(want.sum())  # the tasks of one prefix length cover the space
    # the first-cut tasks' weights (subtrees and owned ancestors) add up to the space, exactly
    plan = Plan(space, None, stats)
    first = prefixes(space, plan.q, 0, plan.total)
    assert plan.coverage.exact(*plan.coverage.weights(first)) == space.size


@pytest.mark.parametrize("name", ["conv_pools_same", "head", "budgets", "anchors"])
@pytest.mark.parametrize("q, shards", [(1, 3), (2, 5), (3, 7)])
def test_shards_in_order_are_the_whole_run(name, q, shards):
    """A shard is a contiguous range of first-cut tasks: consecutive shards' rows, in order, are the rows
    of the whole run, whatever the prefix length; counts and coverage add up."""
    from rfsweep.engine.run import first_cut_counts, plan_shards

    space = build_space(SPACES[name])
    q = min(q, space.depth_max)
    whole, _ = _rows(space)
    counts = first_cut_counts(space, q)
    ranges = plan_shards(counts, shards)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(counts)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    parts, sizes = [], 0
    for rng in ranges:
        stats = Stats()
        parts += [b.copy() for b in iter_batches(space, q=q, task_range=rng, stats=stats)]
        sizes += stats.space_size
        assert stats.kept == int(counts[rng[0] : rng[1]].sum())
        assert sweep.engine.count_by_enumeration(space, q=q, task_range=rng) == stats.kept
    assert sizes == space.size
    got = np.concatenate([p.out for p in parts], axis=1) if parts else np.zeros_like(whole)
    assert np.array_equal(got, whole)
