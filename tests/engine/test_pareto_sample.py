"""Pareto fronts, uniform samples and --where on survivors, against brute force over the naive rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import naive
from rfsweep import api as sweep
from rfsweep.cli.main import main
from rfsweep.engine import objectives
from rfsweep.engine import run as engine
from rfsweep.engine.sample import draw_ranks
from rfsweep.engine.select import Front
from rfsweep.space import build_space

SMALL = dict(
    depth="1-3",
    kernels=[1, 3, 5],
    strides=[1, 2],
    channels=[4, 8],
    ops=["conv", "maxpool"],
    pool_kernels=[2],
    input_size=32,
    target_rf=17,
    tolerance=10,
)  # fmt: skip (1,986 survivors)


def _key(m, name, t2):
    return {
        "params": m["params"], "macs": m["macs"], "rf_error": abs(2 * m["rf"] - t2), "erf": -m["erf_sigma"],
        "depth": len(m["layers"]),
    }[name]  # fmt: skip


def brute_front(rows, names, t2):
    """By the definition: keep a row unless another is no worse in every key and differs in one
    (numpy, all pairs)."""
    v = np.array([[_key(m, n, t2) for n in names] for _, _, m in rows], dtype=np.float64)
    no_worse = (v[:, None, :] <= v[None, :, :]).all(axis=2)  # [i, j]: row i is no worse than row j
    differs = (v[:, None, :] != v[None, :, :]).any(axis=2)
    dominated = (no_worse & differs).any(axis=0)
    return sorted((tuple(v[i]), rows[i][0]) for i in range(len(rows)) if not dominated[i])


_ROWS = []


def small_rows():
    if not _ROWS:
        _ROWS.append(naive.naive_search(SMALL))
    return _ROWS[0]


@pytest.mark.parametrize(
    "names", [("params", "macs"), ("rf_error", "params"), ("erf", "macs", "depth"), ("params", "macs", "rf_error")]
)
def test_pareto_front_equals_brute_force(names):
    rows = small_rows()
    t2 = 2 * 17
    expected = brute_front(rows, names, t2)
    # small slabs: the front is merged across many batches
    space = build_space(SMALL)
    front = Front(space, names)
    for batch in engine.iter_batches(space, slab_rows=50):
        front.add(batch)
    got = front.result()
    cols = objectives.survivor_columns(got.out, space)
    assert list(cols["arch_id"]) == [aid for _, aid in expected]
    df = sweep.search(space, pareto=",".join(names))
    assert list(df["arch_id"]) == [aid for _, aid in expected]


@given(
    a=st.lists(st.integers(0, 6), min_size=1, max_size=40),
    b=st.lists(st.integers(0, 6), min_size=1, max_size=40),
    c=st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=40),
    three=st.booleans(),
)
def test_front_mask_equals_quadratic_definition(a, b, c, three):
    n = min(len(a), len(b), len(c))
    keys = (
        [np.array(a[:n]), np.array(b[:n])] + ([np.array(c[:n])] for _ in range(1) if three).__next__()
        if False
        else None
    )
    keys = [np.array(a[:n]), np.array(b[:n])] + ([np.array(c[:n])] if three else [])
    got = objectives.front_mask(keys)
    vecs = list(zip(*keys))
    want = [not any(all(x <= y for x, y in zip(w, v)) and w != v for w in vecs) for v in vecs]
    assert list(got) == want


def test_sample_rows_are_survivors_distinct_and_sorted():
    space = build_space(SMALL)
    rows = {aid: m for aid, _, m in small_rows()}
    df = sweep.search(space, sample=60, seed=3)
    ids = list(df["arch_id"])
    assert len(ids) == len(set(ids)) == 60 and all(i in rows for i in ids)
    order = {aid: k for k, aid in enumerate(rows)}  # depth-first order
    assert [order[i] for i in ids] == sorted(order[i] for i in ids)
    for row in df.itertuples(index=False):
        assert (row.rf, row.params, row.macs) == (rows[row.arch_id]["rf"], rows[row.arch_id]["params"],
                                                  rows[row.arch_id]["macs"])  # fmt: skip
    assert list(sweep.search(space, sample=60, seed=3)["arch_id"]) == ids  # seeded: the same draw
    everything = sweep.search(space, sample=10**6, seed=1)
    assert list(everything["arch_id"]) == list(rows)


def _chi2_upper(dof: int, z: float = 3.29) -> float:
    """Wilson-Hilferty: the chi-square value a fraction ~5e-4 of draws exceeds."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def test_sample_is_uniform_over_subtrees():
    """Seeded draws of 40 survivors, 400 times: how often each first-layer subtree is hit matches its
    share of the survivors (chi-square, p ~ 5e-4 threshold); so does each single survivor."""
    space = build_space(SMALL)
    rows = small_rows()
    total = len(rows)
    first = {aid: idx[0] for aid, idx, _ in rows}
    share = {}
    for f in first.values():
        share[f] = share.get(f, 0) + 1
    plan = engine.CountedPlan(space)
    assert plan.total == total
    hits_sub = dict.fromkeys(share, 0)
    hits_row = np.zeros(total, np.int64)
    ids = np.array([aid for aid, _, _ in rows])
    pos = {aid: k for k, aid in enumerate(ids)}
    draws, n = 400, 40
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        for ranks in draw_ranks(plan.total, n, rng):
            for b in plan.rows_at(ranks):
                for aid in b.out[0]:
                    hits_sub[first[int(aid)]] += 1
                    hits_row[pos[int(aid)]] += 1
    assert sum(hits_sub.values()) == draws * n
    expected = {f: draws * n * c / total for f, c in share.items()}
    chi2 = sum((hits_sub[f] - e) ** 2 / e for f, e in expected.items())
    assert chi2 < _chi2_upper(len(share) - 1), (chi2, len(share))
    e_row = draws * n / total
    chi2_rows = float(((hits_row - e_row) ** 2 / e_row).sum())
    assert chi2_rows < _chi2_upper(total - 1), chi2_rows


def test_draw_ranks_every_subset_equally_likely():
    counts = {}
    for seed in range(6000):
        (chunk,) = list(draw_ranks(6, 3, np.random.default_rng(seed)))
        counts[tuple(chunk)] = counts.get(tuple(chunk), 0) + 1
    assert len(counts) == math.comb(6, 3) and all(len(set(k)) == 3 for k in counts)
    e = 6000 / 20
    assert sum((c - e) ** 2 / e for c in counts.values()) < _chi2_upper(19)


def test_draw_ranks_large_population_by_rejection():
    chunks = list(draw_ranks(5 * 10**9, 1000, np.random.default_rng(0)))
    ranks = np.concatenate(chunks)
    assert len(ranks) == len(set(ranks.tolist())) == 1000 and ranks.max() < 5 * 10**9
    assert np.all(np.diff(ranks) > 0)


def test_sample_spans_many_chunks_exactly():
    """A sample larger than one chunk of ranks, from a space whose ranks span several chunks."""
    got = np.concatenate(list(draw_ranks(3 * (1 << 20) + 17, 1 << 20, np.random.default_rng(5))))
    assert len(got) == 1 << 20 and len(np.unique(got)) == 1 << 20 and got.max() < 3 * (1 << 20) + 17


@pytest.mark.parametrize(
    "text, pred",
    [
        ("params < 2000 and depth >= 3", lambda m: m["params"] < 2000 and len(m["layers"]) >= 3),
        ("rf == 17 or macs > 200000", lambda m: m["rf"] == 17 or m["macs"] > 200000),
        ("not (jump == 2) and erf_sigma > 3.5", lambda m: m["jump"] != 2 and m["erf_sigma"] > 3.5),
    ],
)
def test_where_on_survivors_equals_filtering_the_naive_rows(text, pred):
    space = build_space(SMALL)
    rows = [aid for aid, _, m in small_rows() if pred(m)]
    assert list(sweep.search(space, where=text)["arch_id"]) == rows
    assert list(sweep.search(space, where=text, limit=7)["arch_id"]) == rows[:7]
    best = sweep.search(space, where=text, limit=5, sort="params")
    ms = {aid: m for aid, _, m in small_rows()}
    assert list(best["arch_id"]) == sorted(rows, key=lambda a: (ms[a]["params"], a))[:5]


def test_cli_pareto_sample_where_and_their_errors(tmp_path):
    out = tmp_path / "f.parquet"
    base = ["search", "--depth", "1-4", "--kernels", "1,3,5", "--channels", "4,8", "--input-size", "32"]
    base += ["--target-rf", "17", "--tolerance", "10"]
    res = CliRunner().invoke(main, [*base, "--pareto", "params,macs", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["written"] == pq.read_metadata(out).num_rows > 0
    res = CliRunner().invoke(main, [*base, "--sample", "25", "--seed", "9", "-o", str(out), "--json"])
    summary = json.loads(res.stdout)
    assert summary["written"] == 25 and summary["sampled_from"] > 25
    for args, field in (
        (["--pareto", "params"], "pareto"),
        (["--pareto", "params,volume"], "pareto"),
        (["--pareto", "params,macs", "--limit", "3"], "pareto"),
        (["--sample", "0"], "sample"),
        (["--sample", "5", "--where", "rf > 3"], "sample"),
        (["--seed", "3"], "seed"),
        (["--where", "params <"], "where"),
        (["--where", "volume > 3"], "where"),
    ):
        res = CliRunner().invoke(main, [*base, *args, "-o", str(tmp_path / "e.parquet")], catch_exceptions=False)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and f"field '{field}'" in lines[0], (args, res.output)
    assert not (tmp_path / "e.parquet").exists()


@pytest.mark.parametrize("small", [1, 3, 50])
def test_rows_at_descends_to_exactly_the_ranked_rows(monkeypatch, small):
    """Tasks holding wanted ranks are split (one count pass a round) until small, then filled: the rows
    are exactly the survivors of those depth-first ranks."""
    monkeypatch.setattr(engine, "SMALL_TASK", small)
    space = build_space(SMALL)
    rows = small_rows()
    plan = engine.CountedPlan(space)
    rng = np.random.default_rng(11)
    ranks = np.sort(rng.choice(len(rows), size=97, replace=False))
    got = np.concatenate([b.out[0] for b in plan.rows_at(ranks, group_rows=20)])
    assert list(got) == [rows[r][0] for r in ranks]
