"""Latency tables (issue 25): keys in Once-for-All's format, a candidate's prediction as the sum of its
entries (each in whole microseconds), exact counts under --max-latency-ms against enumeration, and the
one-line refusals (missing key, another space's table, negative or NaN times, malformed files, chains).

The reference (tests/naive.py: naive_latency_keys) writes each candidate's keys out block by block.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rfsweep
import rfsweep.engine.run
from naive import naive_latency_keys, naive_latency_us, naive_proxyless_keys
from rfsweep.cli.main import main
from rfsweep.core.errors import RFSweepError
from rfsweep.engine import count as counting
from rfsweep.engine import stage_select
from rfsweep.space import build_space, latency, stages

REFERENCE = Path(__file__).resolve().parent.parent / "reference"
OFA_YAML = REFERENCE / "ofa_mbv3_latency_fabricated.yaml"

TINY = {
    "name": "tiny",
    "input_size": 32,
    "in_channels": 3,
    "stem": [{"op": "conv", "kernel": 3, "stride": 2, "channels": 8, "act": "hardswish"}],
    "head": [
        {"op": "conv", "kernel": 1, "channels": 32, "act": "hardswish"},
        {"op": "global_pool"},
        {"op": "linear", "channels": 10, "act": "none"},
    ],
    "stages": [
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [3, 6], "channels": [8, 16], "stride": 2,
         "se": [False, True]},
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [3, 4], "channels": 24, "stride": 2,
         "act": "hardswish"},
    ],
}  # fmt: skip


def _entries(space) -> dict[str, float]:
    """Made-up times (ms, 4 decimals: not whole microseconds, so the rounding matters) for every key."""
    rng = np.random.default_rng(7)
    return {b.key: round(float(rng.uniform(0.01, 0.3)), 4) for b in latency.distinct_blocks(space)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = build_space(dict(TINY))
    entries = _entries(base)
    path = tmp_path_factory.mktemp("lut") / "tiny.json"
    path.write_text(json.dumps({"format": latency.FORMAT, "space": {"name": "tiny"},
                                "entries": {k: {"median_ms": v} for k, v in entries.items()}}))  # fmt: skip
    rows = rfsweep.search({**TINY, "latency_lut": str(path)}, columns="lists")
    rows["naive_us"] = [naive_latency_us(base, base.decode(int(a)), entries) for a in rows["arch_id"]]
    return base, entries, str(path), rows


def test_ofa_mbv3_keys_are_ofa_keys():
    sp = build_space(stages.load("ofa_mbv3"))
    blocks = latency.distinct_blocks(sp)
    assert len(blocks) == 96  # stem conv and first block, 5 stages x 2 shapes x 9 (kernel, expand), 4 head
    keys = [b.short or b.key for b in blocks]
    assert keys[0] == "Conv-input:224x224x3-output:112x112x16"
    assert keys[1] == "expanded_conv-input:112x112x16-output:112x112x16-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0"
    assert "expanded_conv-input:28x28x40-output:28x28x40-expand:120-kernel:5-stride:1-idskip:1-se:1-hs:0" in keys
    assert keys[-4:] == [
        "Conv_1-input:7x7x160-output:7x7x960",
        "AvgPool2D-input:7x7x960-output:1x1x960",
        "Conv_2-input:1x1x960-output:1x1x1280",
        "Logits-input:1x1x1280-output:1000",
    ]


def test_prediction_is_the_sum_of_the_entries(tiny):
    base, entries, _, rows = tiny
    assert len(rows) == base.size
    for arch_id, ms in zip(rows["arch_id"][::37], rows["latency_ms"][::37]):
        idx = base.decode(int(arch_id))
        keys = naive_latency_keys(base, idx)
        assert ms == naive_latency_us(base, idx, entries) / 1000
        assert math.isclose(ms, sum(entries[k] for k in keys), abs_tol=0.0005 * len(keys))


@settings(suppress_health_check=list(HealthCheck))
@given(budget=st.integers(300, 1500), rf_min=st.sampled_from([1, 30, 40]))
def test_count_under_a_latency_budget_equals_enumeration(tiny, budget, rf_min):
    base, entries, path, rows = tiny
    us = rows["naive_us"].to_numpy()
    want = int(((us <= budget) & (rows["rf"].to_numpy() >= rf_min)).sum())
    res = counting.count_details({**TINY, "latency_lut": path, "max_latency_ms": budget / 1000, "rf_min": rf_min})
    assert res.method == "stages"
    assert res.count == want


def test_search_under_a_latency_budget_keeps_exactly_those_rows(tiny, tmp_path):
    base, entries, path, rows = tiny
    budget = float(np.median(rows["latency_ms"]))
    out = tmp_path / "kept.parquet"
    res = CliRunner().invoke(main, ["search", "--space", _toml(tmp_path), "--latency-lut", path,
                                    "--max-latency-ms", str(budget), "-o", str(out), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    kept = pd.read_parquet(out)
    want = rows[rows["latency_ms"] <= budget]
    assert kept["arch_id"].tolist() == want["arch_id"].tolist()
    assert json.loads(res.output)["kept"] == len(want)
    # the best k by latency: the exact selection on the state graph (no walk), ties to the smaller arch_id
    sp = build_space({**TINY, "latency_lut": path})
    assert stage_select.applicable(sp, {"limit": 7, "sort": "latency_ms"}) is None
    for macs in (None, 250_000):
        top = rfsweep.search({**TINY, "latency_lut": path, "max_macs": macs}, sort="latency_ms", limit=7)
        pool = rows if macs is None else rows[rows["macs"] <= macs]
        want = pool.sort_values(["latency_ms", "arch_id"]).head(7)
        assert top["arch_id"].tolist() == want["arch_id"].tolist()
    front = rfsweep.search({**TINY, "latency_lut": path}, pareto=("latency_ms", "params"))
    assert len(front) and all(((rows["latency_ms"] <= r.latency_ms) & (rows["params"] < r.params)).sum() == 0
                              and ((rows["latency_ms"] < r.latency_ms) & (rows["params"] <= r.params)).sum() == 0
                              for r in front.itertuples())  # fmt: skip


def _toml(tmp_path) -> str:
    path = tmp_path / "tiny.toml"
    lines = ['name = "tiny"', "input_size = 32", "in_channels = 3"]
    lines.append("stem = " + _inline(TINY["stem"]))
    lines.append("head = " + _inline(TINY["head"]))
    for s in TINY["stages"]:
        lines.append("[[stages]]")
        lines += [f"{k} = {_value(v)}" for k, v in s.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _inline(blocks):
    return "[" + ", ".join("{" + ", ".join(f"{k} = {_value(v)}" for k, v in b.items()) + "}" for b in blocks) + "]"


def test_ofa_yaml_counts_ofa_mbv3_under_a_budget():
    space = {**stages.load("ofa_mbv3"), "latency_lut": str(OFA_YAML)}
    sp = build_space(space)
    table = latency.read_table(str(OFA_YAML))
    stem_head = [k for k in table.entries if not k.startswith("expanded_conv-input:56")]
    assert len(table.entries) == 96 and stem_head
    # the least candidate: each stage's cheapest configuration; the budget one microsecond below it counts 0
    least = sum(int(min(u.min() for u in per.values())) for per in sp.latency.units)
    assert counting.count({**space, "max_latency_ms": (least - 1) / 1000}) == 0
    assert counting.count({**space, "max_latency_ms": least / 1000}) >= 1


PROXYLESS_LIKE = {
    "name": "proxyless_like",
    "input_size": 32,
    "in_channels": 3,
    "stem": [{"op": "conv", "kernel": 3, "stride": 2, "channels": 8, "act": "relu6"},
             {"op": "mbconv", "kernel": 3, "expand": 1, "channels": 8, "act": "relu6"}],
    "head": [
        {"op": "conv", "kernel": 1, "channels": 32, "act": "relu6"},
        {"op": "global_pool"},
        {"op": "linear", "channels": 10, "act": "none"},
    ],
    "stages": [
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [3, 6], "channels": 16, "stride": 2,
         "act": "relu6"},
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [3, 4], "channels": 24, "stride": 2,
         "act": "relu6"},
    ],
}  # fmt: skip


def test_ofa_proxylessnas_yaml_keys_predict_every_candidate(tmp_path):
    """A table in the format of OFA's ProxylessNASLatencyTable (expand ratios, no se/hs; one Logits entry for
    the pool and the classifier) prices every candidate of a ProxylessNAS-like space as the sum of the
    entries OFA's own query would look up for it (tests/naive.py, written from OFA's key format)."""
    sp = build_space(dict(PROXYLESS_LIKE))
    everyone = list(itertools.product(*[range(len(pos)) for pos in sp.positions]))
    keys = sorted({k for idx in everyone for k in naive_proxyless_keys(sp, idx)})
    assert "expanded_conv-input:16x16x8-output:8x8x16-expand:3-kernel:3-stride:2-idskip:0" in keys
    assert "Logits-input:4x4x32-output:10" in keys
    rng = np.random.default_rng(11)
    entries = {k: round(float(rng.uniform(0.01, 0.3)), 4) for k in keys}
    path = tmp_path / "proxyless.yaml"
    path.write_text("".join(f"{k}:\n  count: 1\n  mean: {v}\n  std: 0.0\n" for k, v in entries.items()))
    costs = latency.costs_of(sp, latency.read_table(str(path)))
    choice = np.array(everyone, np.int64).T
    got = costs.row_units(choice, sp.in_channels)
    want = [sum(round(entries[k] * 1000) for k in naive_proxyless_keys(sp, idx)) for idx in everyone]
    assert got.tolist() == want


def _run(*args):
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


@pytest.mark.parametrize(
    "content, says",
    [
        ('{"format": "rfsweep latency table", "entries": {"k": {"median_ms": -1}}}', "must be a finite time >= 0"),
        ('{"format": "rfsweep latency table", "entries": {"k": {"median_ms": NaN}}}', "must be a finite time >= 0"),
        ('{"format": "rfsweep latency table", "entries": {}}', "has no entry for block"),
        ('{"entries": {}}', "is not a latency table"),
        ("{not json", "is not JSON"),
    ],
)
def test_bad_tables_are_one_line_exit_2(tmp_path, content, says):
    path = tmp_path / "lut.json"
    path.write_text(content)
    code, out = _run("count", "--space", _toml(tmp_path), "--latency-lut", str(path), "--max-latency-ms", "1")
    assert code == 2 and says in out and len(out.strip().splitlines()) == 1, out


def test_bad_yaml_and_other_space_and_chain_are_refused(tmp_path, tiny):
    bad = tmp_path / "lut.yaml"
    bad.write_text("Conv-input:1x1x3-output:1x1x8:\n  mean: fast\n")
    with pytest.raises(RFSweepError, match="line 2: mean 'fast' is not a number"):
        latency.read_table(str(bad))
    bad.write_text("- a list\n")
    with pytest.raises(RFSweepError, match="expected 'KEY:'"):
        latency.read_table(str(bad))
    bad.write_text("Conv-input:1x1x3-output:1x1x8:\n  mean: -0.5\n")
    with pytest.raises(RFSweepError, match="must be a finite time >= 0"):
        latency.read_table(str(bad))
    code, out = _run("count", "--space", "ofa_mbv3", "--latency-lut", tiny[2])
    assert code == 2 and "was measured for space 'tiny', not 'ofa_mbv3'" in out and len(out.strip().splitlines()) == 1
    code, out = _run("count", "--depth", "3", "--latency-lut", tiny[2])
    assert code == 2 and "applies to spaces of stages" in out
    code, out = _run("count", "--space", _toml(tmp_path), "--max-latency-ms", "3")
    assert code == 2 and "needs a latency table" in out
    code, out = _run("search", "--space", _toml(tmp_path), "--latency-lut", tiny[2], "--max-latency-ms", "x",
                     "-o", str(tmp_path / "x.parquet"))  # fmt: skip
    assert code == 2 and "max_latency_ms" in out and not (tmp_path / "x.parquet").exists()


def test_export_carries_the_predicted_latency_and_sorts_by_it(tiny, tmp_path):
    base, entries, path, rows = tiny
    pool = tmp_path / "pool.parquet"
    code, out = _run("search", "--space", _toml(tmp_path), "--latency-lut", path, "-o", str(pool), "-q")
    assert code == 0, out
    Path(path).rename(path + ".moved")  # exporting needs no table: the rows carry latency_ms
    try:
        code, out = _run("export", str(pool), "--to", "jsonl", "--top", "2", "--sort", "latency_ms")
    finally:
        Path(path + ".moved").rename(path)
    assert code == 0, out
    specs = [json.loads(line) for line in out.strip().splitlines() if line.startswith("{")]
    best = rows.sort_values(["latency_ms", "arch_id"]).head(2)
    assert [s["name"] for s in specs] == [str(a) for a in best["arch_id"]]
    for s, ms in zip(specs, best["latency_ms"]):
        assert f"latency_ms {ms:.6g}" in s["description"]


def test_sample_under_a_latency_budget_draws_only_survivors(tiny):
    base, entries, path, rows = tiny
    for budget in (0.9, 1.05):
        ok = set(rows.loc[rows["naive_us"] <= budget * 1000, "arch_id"])
        stats = rfsweep.engine.run.Stats()
        drawn = rfsweep.search({**TINY, "latency_lut": path, "max_latency_ms": budget}, sample=40, seed=1,
                               stats=stats)  # fmt: skip
        assert len(drawn) == 40 and set(drawn["arch_id"]) <= ok and stats.extra["sampled_from"] == len(ok)
        every = rfsweep.search({**TINY, "latency_lut": path, "max_latency_ms": budget}, sample=10**4, seed=1)
        assert set(every["arch_id"]) == ok and len(every) == len(ok)
    with pytest.raises(RFSweepError, match="both --max-macs and --max-latency-ms are set"):
        rfsweep.search({**TINY, "latency_lut": path, "max_latency_ms": 1, "max_macs": 10**6}, sample=3)
