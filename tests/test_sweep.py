"""The sweep engine against the plain-Python enumerator (second part of tests/naive.py), on small spaces."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naive import evaluate_candidate, level_tap, naive_search
from rfsweep import analyze, sweep
from rfsweep.cli import main
from rfsweep.engine import Stats, iter_batches
from rfsweep.errors import RFSweepError
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


def _rows(space, **kw):
    batches = list(iter_batches(space, **kw))
    if not batches:
        return np.zeros((0, 9), np.int64), np.zeros((0, space.depth_max), np.int16)
    return np.concatenate([b.out for b in batches]), np.concatenate([b.choice for b in batches])


def _assert_same_as_naive(space, df):
    expected = naive_search(space)
    assert list(df["arch_id"]) == [aid for aid, _, _ in expected]
    for row, (aid, idx, m) in zip(df.itertuples(index=False), expected):
        layers = space.layers(idx)
        assert row.depth == len(idx)
        assert list(row.op) == [layer["op"] for layer in layers]
        assert list(row.kernel) == [layer["kernel"] for layer in layers]
        assert list(row.stride) == [layer["stride"] for layer in layers]
        assert list(row.dilation) == [layer.get("dilation", 1) for layer in layers]
        assert list(row.padding) == [space.padding] * len(idx)
        for col in ("rf", "jump", "eff_padding", "out_size", "params", "macs"):
            assert getattr(row, col) == m[col], (col, aid)
        assert row.center == m["center"]
        assert math.isclose(row.erf_sigma, m["erf_sigma"], rel_tol=1e-12, abs_tol=1e-12)
        for lv in space.levels:
            tap = level_tap(space, m, lv)
            assert getattr(row, f"s{lv.stride}_tap") == tap
            assert getattr(row, f"s{lv.stride}_rf") == m["layers"][tap].rf
            assert math.isclose(
                getattr(row, f"s{lv.stride}_erf_sigma"), math.sqrt(m["layers"][tap].erf_var), rel_tol=1e-12
            )


@pytest.mark.parametrize("name", sorted(SPACES))
def test_search_rows_equal_naive_enumerator(name):
    space = build_space(SPACES[name])
    df = sweep.search(space)
    assert len(df) > 0, "each test space must keep something"
    _assert_same_as_naive(space, df)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_count_equals_rows_written(name):
    space = build_space(SPACES[name])
    n = len(naive_search(space))
    assert sweep.count(space) == n
    assert sweep.count(space, method="enumerate") == n


def test_channels_column_matches_layers():
    space = build_space(SPACES["width_rule"])
    df = sweep.search(space)
    for row in df.itertuples(index=False):
        idx = space.decode(row.arch_id)
        expected = []
        cin = space.in_channels
        for layer in space.layers(idx):
            cin = layer.get("channels", cin)
            expected.append(cin)
        assert list(row.channels) == expected


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
    batches = list(iter_batches(space, slab_rows=7))
    assert max(len(b) for b in batches) <= 7
    assert np.array_equal(np.concatenate([b.out for b in batches]), a_out)
    assert np.array_equal(np.concatenate([b.choice for b in batches]), a_ch)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
        channels=[2, 3],
        anchor_rf=anchor_rf,
        anchor_erf=anchor_erf,
        anchors=None if anchors is None else [list(a) for a in anchors],
        min_convs=min_convs,
    )
    space = build_space(settings_)
    df = sweep.search(space)
    _assert_same_as_naive(space, df)
    assert sweep.count(space) == len(df)


def test_topk_is_the_best_k_of_the_naive_rows():
    space = build_space(SPACES["budgets"])
    expected = sorted(naive_search(space), key=lambda r: (r[2]["params"], r[0]))[:15]
    df = sweep.search(space, limit=15, sort="params")
    assert list(df["arch_id"]) == [r[0] for r in expected]
    first = sweep.search(space, limit=5)
    assert list(first["arch_id"]) == [r[0] for r in naive_search(space)[:5]]


def test_rf_error_and_erf_sorts():
    space = build_space(dict(SPACES["valid_target"]))
    rows = naive_search(space)
    df = sweep.search(space, limit=10, sort="rf_error")
    assert list(df["arch_id"]) == [r[0] for r in sorted(rows, key=lambda r: (abs(r[2]["rf"] - 9), r[0]))[:10]]
    df = sweep.search(space, limit=10, sort="erf")
    assert list(df["arch_id"]) == [r[0] for r in sorted(rows, key=lambda r: (-r[2]["erf_sigma"], r[0]))[:10]]


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


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    space = build_space(SPACES["conv_pools_same"])
    path = tmp_path / "out.parquet"

    def boom(*a, **k):
        yield from ()
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "iter_tables", boom)
    with pytest.raises(KeyboardInterrupt):
        sweep.search_to_parquet(str(path), space)
    assert os.listdir(tmp_path) == []


def test_count_dp_is_exact_on_a_huge_space():
    space = build_space(
        dict(
            depth=12,
            ops=["conv"],
            kernels=[1, 3, 5, 7],
            strides=[1, 2],
            dilations=[1, 2, 3],
            channels=[32],
            target_rf=224,
            tolerance=1,
        )
    )
    assert space.size == 20**12
    res = sweep.count_details(space)
    assert res.method == "dp"
    # the same number from the histogram of the whole window, summed differently
    hist = sweep.rf_histogram(space, 1, 300)
    assert res.count == hist[223] + hist[224] + hist[225]


def test_exact_recovers_counts_beyond_uint64():
    big = 3 * (1 << 64) + 12345
    assert sweep._exact(big % (1 << 64), float(big)) == big


def test_unrepresentable_space_is_refused():
    with pytest.raises(RFSweepError, match="does not fit in int64"):
        build_space(dict(depth=30, kernels=[1, 3, 5, 7], strides=[1, 2, 3], dilations=[1, 2, 3]))


@pytest.mark.parametrize(
    "args, field",
    [
        (["--kernels", "0"], "kernels"),
        (["--depth", "5-2"], "depth"),
        (["--depth", "40"], "depth"),
        (["--ops", "conv,lstm"], "ops"),
        (["--target-rf", "abc"], "target_rf"),
        (["--rf-min", "50", "--rf-max", "10"], "rf_max"),
        (["--max-params", "-5"], "max_params"),
        (["--jump", "2,x"], "jump"),
        (["--sort", "params"], "sort"),
        (["--limit", "0"], "limit"),
        (["--anchors", "32@8,64@8"], "anchors"),
        (["--anchors", "32-8"], "anchors"),
        (["--anchors", "32@8", "--anchor-rf", "4:1"], "anchor_rf"),
        (["--anchors", "32@8", "--anchor-erf", "x"], "anchor_erf"),
    ],
)
def test_bad_flags_give_one_line_errors(args, field):
    res = CliRunner().invoke(
        main, ["search", "--depth", "2", *args] if args[0] != "--depth" else ["search", *args], catch_exceptions=False
    )
    if field == "sort":
        res = CliRunner().invoke(main, ["search", "--depth", "2", "--sort", "params", "-o", "x.parquet"])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and field in lines[0], res.stderr
    assert "Traceback" not in res.output


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


def test_space_file_and_flags(tmp_path):
    toml = tmp_path / "space.toml"
    toml.write_text(
        'depth = "2-3"\nkernels = [1, 3]\nstrides = [1, 2]\ninput_size = 32\nrf_min = 9\n'
        '[[positions]]\nindex = 0\nops = ["conv"]\nkernels = [7]\nstrides = [2]\n'
    )
    res = CliRunner().invoke(main, ["count", "--space", str(toml), "--rf-max", "40", "--json"])
    assert res.exit_code == 0, res.output
    expected = build_space(
        dict(
            depth="2-3",
            kernels=[1, 3],
            strides=[1, 2],
            input_size=32,
            rf_min=9,
            rf_max=40,
            positions=[{"index": 0, "ops": ["conv"], "kernels": [7], "strides": [2]}],
        )
    )
    assert json.loads(res.stdout)["count"] == len(naive_search(expected))
    toml.write_text("depth = 2\nbogus = 1\n")
    res = CliRunner().invoke(main, ["count", "--space", str(toml)])
    assert res.exit_code == 2 and "bogus" in res.stderr


def test_search_cli_writes_parquet_and_summary(tmp_path):
    out = tmp_path / "c.parquet"
    res = CliRunner().invoke(
        main,
        [
            "search",
            "--depth",
            "2-3",
            "--kernels",
            "1,3",
            "--input-size",
            "32",
            "--rf-min",
            "5",
            "--rf-max",
            "9",
            "-o",
            str(out),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["kept"] == summary["written"] == pq.read_metadata(out).num_rows > 0
    assert summary["evaluated"] + summary["pruned"] == summary["space_size"]


def test_naive_evaluates_every_layer_like_the_analyzer():
    space = build_space(SPACES["valid_target"])
    for arch in range(0, space.size, 97):
        idx = space.decode(arch)
        m = evaluate_candidate(space, idx)
        if m is None:
            continue
        last = analyze(space.network_spec(idx)).iloc[-1]
        assert last["rf"][0] == m["rf"] and last["out_size"][0] == m["out_size"]


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
        [
            "search",
            "--depth",
            "2-4",
            "--kernels",
            "1,3,5",
            "--input-size",
            "64",
            "--anchors",
            "8@2,16@4",
            "--anchor-rf",
            "1:3",
            "--anchor-erf",
            "0.5",
            "-o",
            str(out),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert {"s2_tap", "s2_rf", "s2_erf_sigma", "s4_tap", "s4_rf", "s4_erf_sigma"} <= set(table.column_names)
    assert table.num_rows == json.loads(res.stdout)["kept"] > 0
    df = table.to_pandas()
    assert ((df["s2_rf"] >= 8) & (df["s2_rf"] <= 24) & (2 * df["s2_erf_sigma"] >= 4 - 1e-12)).all()


def test_readme_search_examples_run(tmp_path):
    """The README's space file builds, and its Python API lines run."""
    import re
    from pathlib import Path

    import rfsweep

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## rfsweep search") : text.index("## rfsweep count")]
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "space.toml"
    path.write_text(toml)
    res = CliRunner().invoke(main, ["count", "--space", str(path), "--depth", "4-5", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["method"] == "enumerate"  # max_params needs the enumeration
    assert callable(rfsweep.search) and callable(rfsweep.count) and callable(rfsweep.search_to_parquet)
    assert rfsweep.count(depth=3, kernels=[1, 3], rf_min=5, rf_max=9) == sweep.count(
        build_space(dict(depth=3, kernels=[1, 3], rf_min=5, rf_max=9))
    )


def test_ctrl_c_leaves_no_file(tmp_path):
    """SIGINT in the middle of a real search: exit code 130, one line, no output and no temporary file."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r7.parquet"
    cmd = [
        sys.executable,
        "-c",
        "from rfsweep.cli import main; main()",
        "search",
        "--depth",
        "7",
        "--ops",
        "conv",
        "--kernels",
        "1,3,5,7",
        "--strides",
        "1,2",
        "--dilations",
        "1,2,3",
        "--channels",
        "32",
        "--rf-min",
        "200",
        "--rf-max",
        "250",
        "-o",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".rfsweep-*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    time.sleep(0.5)  # let it write a slab or two
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "interrupted"
    assert list(tmp_path.iterdir()) == []


def test_every_setting_has_a_flag_and_every_flag_reaches_the_space():
    """No flag parsed and ignored: each search/count option is a setting (or a run option), and back."""
    from rfsweep.space import DEFAULTS

    run_options = {"space_file", "device", "threads", "as_json", "output", "limit", "sort", "columns", "method"}
    for command in ("search", "count"):
        params = {p.name for p in main.commands[command].params} - {"help"}
        assert set(DEFAULTS) - {"positions"} <= params, command
        assert params - set(DEFAULTS) <= run_options, command


def test_output_has_the_permissions_of_any_new_file(tmp_path):
    """The temporary name must not leave the result private (mkstemp's 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "out.parquet"
    sweep.search_to_parquet(str(path), build_space(SPACES["min_out"]))
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("name", ["head", "head_from_depth_1"])
def test_head_sets_the_last_layer_of_every_candidate(name):
    from naive import depth_first, is_candidate

    space = build_space(SPACES[name])
    assert space.has_head
    candidates = [idx for idx in depth_first(space) if is_candidate(space, idx)]
    assert space.size == len(candidates) < space.id_space
    head = {(c["op"], c.get("channels")) for c in [{"op": "conv", "channels": 10}, {"op": "avgpool"}]}
    df = sweep.search(space)
    for row in df.itertuples(index=False):
        layers = space.layers(space.decode(row.arch_id))
        if name == "head":
            assert (layers[-1]["op"], layers[-1].get("channels")) in head
            assert layers[0]["kernel"] == 5 or len(layers) == 1
        else:
            assert layers[-1]["kernel"] == 1 and layers[-1]["channels"] == 7
            assert all(layer["kernel"] == 3 for layer in layers[:-1])
    bad_id = next(i for i in range(space.id_space) if not is_candidate(space, space.digits(i)))
    with pytest.raises(RFSweepError, match="not a candidate"):
        space.decode(bad_id)
