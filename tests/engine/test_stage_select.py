"""Exact selections and samples on spaces of stages (rfsweep.engine.stage_select, rfsweep.engine.stage_sample).

The reference is the walk: the same search with the dynamic programmes switched off
(``stage_select.applicable`` answering a reason), whose TopK, Front and CountedPlan are themselves
checked against brute force in test_sweep.py and test_pareto_sample.py. Best k and fronts must give
the walk's rows exactly (values, order, ties) on random budgets, rf windows, keys and k; samples must
give the walk's rows where both draw the same ranks, and otherwise be distinct survivors whose
proposal is an exact bijection from ranks (checked over every rank) and whose frequencies pass a
chi-square test.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from rfsweep import api as sweep
from rfsweep.cli.main import main
from rfsweep.core.errors import RFSweepError
from rfsweep.engine import run as engine
from rfsweep.engine import stage_sample, stage_select
from rfsweep.kernels import layer_math as lm
from rfsweep.space import build_space, latency, stage_graph, stages

# channel choices between stages (a bottleneck stage outputs 16 or 32), SE on and off in one stage:
# (8 + 64) x (2 + 4) x 2 x 2 = 1,728 candidates
CHANNELS = {
    "input_size": 32,
    "in_channels": 3,
    "stem": [{"op": "conv", "kernel": 3, "stride": 2, "channels": 8, "act": "hardswish"}],
    "head": [
        {"op": "conv", "kernel": 1, "channels": 32},
        {"op": "global_pool"},
        {"op": "linear", "channels": 10, "act": "none"},
    ],
    "stages": [
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [1, 3], "channels": 16, "stride": 2,
         "se": [False, True], "act": "relu"},
        {"block": "bottleneck", "depth": [1, 2], "kernel": 3, "expand": ["1/4", "1/2"], "channels": [16, 32],
         "stride": 2},
        {"block": "mbconv", "depth": [1, 2], "kernel": 3, "expand": 2, "channels": 32, "stride": 1},
    ],
}  # fmt: skip

# a small Once-for-All: fixed widths, kernel and expand choices, SE in the second stage, an OFA-like stem
# and head: 20 x 20 x 12 = 4,800 candidates
MINI_OFA = {
    "input_size": 64,
    "in_channels": 3,
    "stem": [
        {"op": "conv", "kernel": 3, "stride": 2, "channels": 8, "act": "hardswish"},
        {"op": "mbconv", "kernel": 3, "stride": 1, "expand": 1, "channels": 8},
    ],
    "head": [
        {"op": "conv", "kernel": 1, "channels": 96, "act": "hardswish"},
        {"op": "global_pool"},
        {"op": "conv", "kernel": 1, "channels": 128, "bn": False, "act": "hardswish"},
        {"op": "linear", "channels": 10, "act": "none"},
    ],
    "stages": [
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [3, 4], "channels": 16, "stride": 2},
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [3, 6], "channels": 24, "stride": 2,
         "se": True},
        {"block": "mbconv", "depth": 1, "kernel": [3, 5, 7], "expand": [3, 6], "channels": 32, "stride": 2,
         "se": [False, True], "act": "hardswish"},
    ],
}  # fmt: skip

# peaks set by the stages (a small stem, expansions and channels to choose), 16 distinct: fronts with
# peak_act spread over several peak values: 26,208 candidates
PEAKY = {
    "input_size": 16,
    "in_channels": 3,
    "stem": [{"op": "conv", "kernel": 3, "stride": 1, "channels": 4}],
    "head": [{"op": "global_pool"}, {"op": "linear", "channels": 10, "act": "none"}],
    "stages": [
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [1, 3, 6], "channels": [8, 16], "stride": 1},
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [2, 4, 6], "channels": [16, 24], "stride": 2,
         "se": [False, True]},
    ],
}  # fmt: skip

SPACES = {"channels": CHANNELS, "mini_ofa": MINI_OFA}  # the spaces the random settings draw from
SIZES = {"channels": 1728, "mini_ofa": 4800, "peaky": 26208}


def _space(name: str, **extra) -> object:
    return build_space({**json.loads(json.dumps({**SPACES, "peaky": PEAKY}[name])), **extra})


@contextlib.contextmanager
def walk_only():
    """The walk, with the dynamic programmes switched off."""
    saved = stage_select.applicable
    stage_select.applicable = lambda space, selection: "switched off by the test"
    try:
        yield
    finally:
        stage_select.applicable = saved


def walk(space, **selection):
    with walk_only():
        stats = engine.Stats()
        return sweep.search(space, stats=stats, **selection), stats


def exact(space, **selection):
    """The dispatcher's answer, which must come from the programmes."""
    assert stage_select.applicable(space, selection) is None, stage_select.applicable(space, selection)
    stats = engine.Stats()
    return sweep.search(space, stats=stats, **selection), stats


_ALL: dict[str, object] = {}


def everything(name: str):
    """Every candidate's rf, params, MACs (the walk with no constraint), once per space."""
    if name not in _ALL:
        df, _ = walk(_space(name), sample=10**6, seed=0)
        _ALL[name] = df
    return _ALL[name]


@st.composite
def settings(draw, name=None):
    """A space and random constraints: budgets at quantiles of its candidates, an rf window or none."""
    name = name or draw(st.sampled_from(sorted(SPACES)))
    df = everything(name)
    extra = {}
    for field, col in (("max_params", "params"), ("max_macs", "macs")):
        if draw(st.booleans()):
            extra[field] = int(np.quantile(df[col], draw(st.sampled_from([0.0, 0.02, 0.2, 0.5, 0.9]))))
    if draw(st.booleans()):  # the peak-activation budget: a filter of each position's choices
        extra["max_peak_act"] = int(np.quantile(df["peak_act"], draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))))
    rfs = sorted(set(df["rf"]))
    window = draw(st.sampled_from(["none", "min", "max", "both", "target"]))
    lo = draw(st.sampled_from(rfs))
    hi = draw(st.sampled_from([r for r in rfs if r >= lo]))
    if window in ("min", "both"):
        extra["rf_min"] = lo
    if window in ("max", "both"):
        extra["rf_max"] = hi
    if window == "target":
        extra["target_rf"], extra["tolerance"] = lo + 1, draw(st.integers(0, 6))
    return name, extra


def test_spaces_are_the_sizes_their_comments_say():
    for name, size in SIZES.items():
        assert _space(name).size == size == (len(everything(name)) if name in SPACES else size)
    assert everything("channels")["params"].nunique() > 50 and everything("mini_ofa")["macs"].nunique() > 500


# ---------------------------------------------------------------- best k


@given(case=settings(), sort=st.sampled_from(["params", "macs", "erf", "rf_error"]), k=st.integers(1, 60))
def test_best_k_equals_the_walk(case, sort, k):
    name, extra = case
    space = _space(name, **extra)
    if sort == "rf_error" and space.rf_min == 1 and space.rf_max is None:
        sort = "macs"  # rf_error needs a target or a window
    expected, _ = walk(space, limit=k, sort=sort)
    got, stats = exact(space, limit=k, sort=sort)
    assert got.equals(expected), (extra, sort, k)
    assert stats.space_size == stats.covered == space.size and stats.kept == len(got)


@pytest.mark.parametrize("sort", ["params", "macs", "erf", "rf_error"])
def test_best_k_with_many_ties_and_k_past_the_survivors(sort):
    # rf_error with a window: whole final states tie, the arch_ids decide; k beyond every survivor
    space = _space("channels", rf_min=40, rf_max=70)
    for k in (1, 7, 400, 5000):
        expected, _ = walk(space, limit=k, sort=sort)
        got, _ = exact(space, limit=k, sort=sort)
        assert got.equals(expected), (sort, k)


def test_best_k_under_a_budget_on_another_quantity_is_exact():
    # the skyline case: the fewest MACs under a tight params budget, the largest ERF under a MACs budget (and
    # a params budget too), the rf closest to a target under both budgets
    df = everything("mini_ofa")
    cases = [("macs", {"max_params": "params"}), ("erf", {"max_macs": "macs"}),
             ("erf", {"max_macs": "macs", "max_params": "params"}),
             ("rf_error", {"max_macs": "macs", "max_params": "params", "target_rf": None})]  # fmt: skip
    for sort, fields in cases:
        for q in (0.01, 0.1, 0.3):
            extra = {f: int(np.quantile(df[c], q)) for f, c in fields.items() if c is not None}
            if "target_rf" in fields:
                extra["target_rf"] = int(np.median(df["rf"]))
            space = _space("mini_ofa", **extra)
            expected, _ = walk(space, limit=25, sort=sort)
            got, _ = exact(space, limit=25, sort=sort)
            assert got.equals(expected), (sort, q, extra)


# ---------------------------------------------------------------- Pareto fronts

NAMES = [c for r in (2, 3) for c in itertools.combinations(["params", "macs", "rf_error", "erf"], r)]


@given(case=settings(), names=st.sampled_from(NAMES))
def test_front_equals_the_walk(case, names):
    name, extra = case
    space = _space(name, **extra)
    if "rf_error" in names and space.rf_min == 1 and space.rf_max is None:
        names = tuple(n for n in names if n != "rf_error") + (("params",) if len(names) == 2 else ())
        names = tuple(dict.fromkeys(names)) if len(set(names)) > 1 else ("params", "macs")
    expected, _ = walk(space, pareto=",".join(names))
    got, stats = exact(space, pareto=",".join(names))
    assert got.equals(expected), (extra, names)
    assert stats.kept == len(got)


def test_front_keeps_every_tie():
    # rf_error alone against MACs: many candidates share a final rf, and equal MACs are all kept
    space = _space("channels", rf_min=30)
    for names in ("macs,rf_error", "params,rf_error", "erf,rf_error"):
        expected, _ = walk(space, pareto=names)
        got, _ = exact(space, pareto=names)
        assert got.equals(expected) and len(got) >= 2


def test_front_too_large_is_one_line(monkeypatch):
    monkeypatch.setattr(stage_select, "MAX_FRONT_ROWS", 1)
    with pytest.raises(RFSweepError, match="candidates lie on the front"):
        stage_select.front(_space("mini_ofa"), ("params", "erf"))
    monkeypatch.setattr(stage_select, "MAX_PAIRS", 10)
    with pytest.raises(RFSweepError, match="partial"):
        stage_select.top_k(_space("mini_ofa"), 50, "macs")


# ---------------------------------------------------------------- latency tables (issue 25)

_LUTS: dict[str, str] = {}


def _lut(name: str) -> str:
    """A latency table for a test space: made-up times (ms, 4 decimals, so the rounding to whole
    microseconds matters) for every distinct block, written once per session."""
    if name not in _LUTS:
        base = _space(name)
        rng = np.random.default_rng(len(name))
        entries = {b.key: {"median_ms": round(float(rng.uniform(0.01, 0.3)), 4)} for b in latency.distinct_blocks(base)}
        folder = Path(tempfile.mkdtemp(prefix="rfsweep-lut-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / f"{name}.json"
        path.write_text(json.dumps({"format": latency.FORMAT, "entries": entries}))
        _LUTS[name] = str(path)
    return _LUTS[name]


_ALL_LAT: dict[str, object] = {}


def everything_with_latency(name: str):
    if name not in _ALL_LAT:
        df, _ = walk(_space(name, latency_lut=_lut(name)), sample=10**6, seed=0)
        _ALL_LAT[name] = df
    return _ALL_LAT[name]


@st.composite
def latency_settings(draw):
    """settings() with a latency table, and a --max-latency-ms at a quantile of the candidates' or none."""
    name, extra = draw(settings())
    extra = {**extra, "latency_lut": _lut(name)}
    if draw(st.booleans()):
        ms = everything_with_latency(name)["latency_ms"]
        extra["max_latency_ms"] = float(np.quantile(ms, draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))))
    return name, extra


def _rf_error_needs_a_window(space, names):
    """rf_error needs a target or a window: without one, macs in its place."""
    if "rf_error" not in names or space.rf_min != 1 or space.rf_max is not None:
        return names
    return tuple(dict.fromkeys(n if n != "rf_error" else "macs" for n in names))


@given(case=latency_settings(), sort=st.sampled_from(["latency_ms", "params", "macs", "erf", "rf_error", "peak_act"]),
       k=st.integers(1, 60))  # fmt: skip
def test_best_k_with_latency_equals_the_walk(case, sort, k):
    name, extra = case
    space = _space(name, **extra)
    if sort == "rf_error" and space.rf_min == 1 and space.rf_max is None:
        sort = "latency_ms"
    expected, _ = walk(space, limit=k, sort=sort)
    got, stats = exact(space, limit=k, sort=sort)
    assert got.equals(expected), (extra, sort, k)
    assert stats.kept == len(got)


_ADDITIVE = ["params", "macs", "rf_error", "erf", "latency_ms"]
LATENCY_NAMES = [c for r in (2, 3) for c in itertools.combinations(_ADDITIVE, r) if "latency_ms" in c]
LATENCY_NAMES += [("params", "latency_ms", "macs"), ("latency_ms", "peak_act")]


@given(case=latency_settings(), names=st.sampled_from(LATENCY_NAMES))
def test_front_with_latency_equals_the_walk(case, names):
    name, extra = case
    space = _space(name, **extra)
    names = _rf_error_needs_a_window(space, names)
    expected, _ = walk(space, pareto=",".join(names))
    got, stats = exact(space, pareto=",".join(names))
    assert got.equals(expected), (extra, names)
    assert stats.kept == len(got)


PEAK_NAMES = [("peak_act", *c) for c in itertools.combinations(_ADDITIVE, 2)] + [("rf_error", "peak_act")]


@given(case=latency_settings(), names=st.sampled_from(PEAK_NAMES))
def test_front_with_peak_and_two_objectives_equals_the_walk(case, names):
    # by the fronts of the other two per peak level (and rf_error beside peak_act alone)
    name, extra = case
    space = _space(name, **extra)
    names = _rf_error_needs_a_window(space, names)
    if len(names) == 2 and "rf_error" not in names:
        names = ("peak_act", "erf", "params")
    expected, _ = walk(space, pareto=",".join(names))
    got, stats = exact(space, pareto=",".join(names))
    assert got.equals(expected), (extra, names)
    assert stats.kept == len(got)


def test_front_with_peak_and_two_objectives_has_many_peak_levels():
    # fronts spread over several peak values (16 in the space), with and without budgets
    df = everything_with_latency("peaky")
    assert df["peak_act"].nunique() == 16
    budgets = {
        "max_latency_ms": float(np.quantile(df["latency_ms"], 0.6)),
        "max_macs": int(np.quantile(df["macs"], 0.8)),
    }
    cases = [({}, "peak_act,macs,latency_ms", 3), ({}, "erf,latency_ms,peak_act", 5),
             (budgets, "erf,latency_ms,peak_act", 2), ({"rf_min": 20}, "peak_act,rf_error", 1)]  # fmt: skip
    for extra, names, levels in cases:
        space = _space("peaky", latency_lut=_lut("peaky"), **extra)
        expected, _ = walk(space, pareto=names)
        got, _ = exact(space, pareto=names)
        assert got.equals(expected), names
        assert expected["peak_act"].nunique() >= levels, (names, extra, expected["peak_act"].nunique())


def test_three_budgets_and_pairs_past_the_cap(monkeypatch):
    df = everything_with_latency("mini_ofa")
    for q in (0.3, 0.6, 0.9):
        extra = {"latency_lut": _lut("mini_ofa"), "max_latency_ms": float(np.quantile(df["latency_ms"], q)),
                 "max_macs": int(np.quantile(df["macs"], q + 0.05)),
                 "max_params": int(np.quantile(df["params"], q + 0.1))}  # fmt: skip
        space = _space("mini_ofa", **extra)
        # a budget on the key and two others, or three budgets besides the key (dominance in three columns)
        for sort, k in (("latency_ms", 30), ("macs", 30), ("erf", 40), ("peak_act", 7), ("erf", 1)):
            expected, _ = walk(space, limit=k, sort=sort)
            assert exact(space, limit=k, sort=sort)[0].equals(expected), (q, sort, k)
        expected, _ = walk(space, pareto="erf,peak_act")
        assert exact(space, pareto="erf,peak_act")[0].equals(expected), q
    expected, _ = walk(space, pareto="erf,latency_ms")
    assert exact(space, pareto="erf,latency_ms")[0].equals(expected) and len(expected) > 1
    plain = _space("mini_ofa")
    assert "--latency-lut" in stage_select.applicable(plain, {"pareto": ("macs", "latency_ms")})
    monkeypatch.setattr(stage_select, "MAX_PAIRS", 10)
    with pytest.raises(RFSweepError, match="partial vectors"):
        stage_select.front(space, ("macs", "latency_ms"))


# ---------------------------------------------------------------- samples


@given(case=settings(), n=st.sampled_from([1, 10, 100, 1000, 10**6]), seed=st.integers(0, 2**63 - 1))
def test_sample_equals_the_walk_where_both_draw_the_same_ranks(case, n, seed):
    name, extra = case
    space = _space(name, **extra)
    if space.max_params is not None and space.max_macs is not None:
        assert stage_select.applicable(space, {"sample": n}) is not None
        return
    expected, walked = walk(space, sample=n, seed=seed)
    got, stats = exact(space, sample=n, seed=seed)
    assert stats.extra["sampled_from"] == walked.extra["sampled_from"]
    total = walked.extra["sampled_from"]
    assert len(got) == min(n, total)
    if n < total and total > stage_sample.ENUM_SMALL and stage_sample.ENUM_SHARE * n < total:
        return  # drawn by rejection: checked below
    assert got.equals(expected)


def test_sample_seed_decides(monkeypatch):
    space = _space("mini_ofa", max_macs=int(np.quantile(everything("mini_ofa")["macs"], 0.3)))
    monkeypatch.setattr(stage_sample, "ENUM_SMALL", 0)  # the rejection path
    monkeypatch.setattr(stage_sample, "ENUM_SHARE", 0)
    a, _ = exact(space, sample=20, seed=7)
    b, _ = exact(space, sample=20, seed=7)
    c, _ = exact(space, sample=20, seed=8)
    assert a.equals(b) and not a.equals(c)


@pytest.mark.parametrize("q", [0.2, 0.6])
def test_rejection_samples_are_distinct_survivors_in_arch_id_order(monkeypatch, q):
    df = everything("mini_ofa")
    space = _space("mini_ofa", max_macs=int(np.quantile(df["macs"], q)), rf_min=int(np.median(df["rf"])))
    survivors, walked = walk(space, sample=10**6, seed=0)
    monkeypatch.setattr(stage_sample, "ENUM_SMALL", 0)  # rejection whenever the sample is not all of them
    monkeypatch.setattr(stage_sample, "ENUM_SHARE", 0)
    n = len(survivors) - 1
    assert n > 100
    got, stats = exact(space, sample=n, seed=3)
    assert len(got) == n == got["arch_id"].nunique()
    assert list(got["arch_id"]) == sorted(got["arch_id"])
    rows = survivors.set_index("arch_id")
    assert set(got["arch_id"]) <= set(rows.index)
    assert got.set_index("arch_id").equals(rows.loc[got["arch_id"]])  # the kernels' rows
    assert stats.extra["sampled_from"] == walked.extra["sampled_from"] == len(survivors)
    assert stats.evaluated >= stats.kept >= n


@pytest.mark.parametrize("quantity", ["macs", "params"])
def test_bucketed_proposal_is_a_bijection_from_ranks(monkeypatch, quantity):
    """Every rank of the bucketed superset unranks to a different candidate, and they are exactly the
    candidates in the rf window whose buckets sum within the budget's: a uniform rank is a uniform
    candidate of the superset, and the superset holds every survivor."""
    df = everything("channels")
    budget = int(np.quantile(df[quantity], 0.4))
    space = _space("channels", **{f"max_{quantity}": budget, "rf_min": 40})
    monkeypatch.setattr(stage_sample, "BUCKET_WORK", 0)  # the fewest buckets: a loose superset
    graph = stage_graph.build(space)
    counts = stage_sample.Counts(graph, quantity, lex=False)
    assert counts.w > 1  # buckets, not exact costs
    ranks = np.arange(counts.total, dtype=np.uint64)
    drawn = counts.unrank((np.zeros_like(ranks), ranks))
    assert len(np.unique(drawn, axis=0)) == counts.total
    # the superset from its definition, candidate by candidate
    offsets = [min(int(t.metric(quantity)[t.ok].min()) for t in per.values()) for per in graph.tables]
    expected = set()
    for idx in itertools.product(*[range(n) for n in space.radices]):
        cin, rf, buckets = space.in_channels, 1, 0
        for p, c in enumerate(idx):
            t = graph.tables[p][cin]
            rf += int(t.drf[c])
            buckets += (int(t.metric(quantity)[c]) - offsets[p]) // counts.w
            cin = int(t.cout[c])
        if rf >= 40 and buckets <= counts.R:
            expected.add(idx)
    assert {tuple(r) for r in drawn.tolist()} == expected
    survivors, _ = walk(space, sample=10**6, seed=0)
    ids = {space.encode(list(r)) for r in expected}
    assert set(survivors["arch_id"]) <= ids and len(ids) > len(survivors)


@pytest.mark.parametrize("field", ["max_macs", "max_params"])
def test_walk_of_survivors_resumes_chunk_after_chunk(field):
    df = everything("channels")
    space = _space("channels", **{field: int(np.quantile(df[field[4:]], 0.6)), "rf_min": 40})
    survivors, walked = walk(space, sample=10**6, seed=0)
    graph = stage_graph.build(space)
    assert stage_sample.LexWalk(graph).count() == len(survivors) == walked.extra["sampled_from"]
    walker = stage_sample.LexWalk(graph)
    ranks = np.arange(len(survivors))
    chunks = [walker.take(part) for part in (ranks[:5], ranks[5:6], ranks[7:300:3], ranks[300:])]
    got = [space.encode(list(r)) for r in np.concatenate(chunks).tolist()]
    assert got == [a for i, a in enumerate(survivors["arch_id"]) if i != 6 and not (7 <= i < 300 and (i - 7) % 3)]
    with pytest.raises(ValueError):
        walker.take(ranks[:1])


def test_lexicographic_unranking_is_arch_id_order():
    space = _space("channels", rf_min=40)
    counts = stage_sample.Counts(stage_graph.build(space), None, lex=True)
    ranks = np.arange(counts.total, dtype=np.uint64)
    drawn = counts.unrank((np.zeros_like(ranks), ranks))
    survivors, _ = walk(space, sample=10**6, seed=0)
    assert [space.encode(list(r)) for r in drawn.tolist()] == list(survivors["arch_id"])


def test_rejection_samples_are_uniform(monkeypatch):
    """Chi-square over single survivors: 60 samples of half the survivors (about 200) by rejection."""
    df = everything("mini_ofa")
    space = _space("mini_ofa", max_macs=int(np.quantile(df["macs"], 0.04)))
    survivors, _ = walk(space, sample=10**6, seed=0)
    m = len(survivors)
    assert 100 < m < 400
    monkeypatch.setattr(stage_sample, "ENUM_SMALL", 0)
    monkeypatch.setattr(stage_sample, "ENUM_SHARE", 0)
    index = {a: i for i, a in enumerate(survivors["arch_id"])}
    seen = np.zeros(m)
    rng = np.random.default_rng(2024)
    draws, n = 60, m // 2
    for _ in range(draws):
        batches = list(stage_sample.sample(space, n, int(rng.integers(2**62))))
        ids = [int(a) for b in batches for a in b.out[0]]
        assert len(set(ids)) == n
        seen[[index[a] for a in ids]] += 1
    expected = draws * n / m
    chi2 = float(((seen - expected) ** 2 / expected).sum())
    # m - 1 degrees of freedom: mean m - 1, sd sqrt(2 (m - 1)); 5 sd is a 1e-6 false alarm
    assert chi2 < (m - 1) + 5 * math.sqrt(2 * (m - 1)), chi2


def test_sample_two_budgets_goes_to_the_walk():
    space = _space("channels", max_macs=10**7, max_params=10**6)
    assert "both" in stage_select.applicable(space, {"sample": 5})
    got, _ = walk(space, sample=5, seed=1)
    assert sweep.search(space, sample=5, seed=1).equals(got) and len(got) == 5


@pytest.mark.parametrize(
    "extra", [{"rf_min": 10_000}, {"max_macs": 10}, {"jump": [8]}, {"jump": [16, 32]}, {"min_out_size": 4},
              {"min_out_size": 5}, {"max_rf_ratio": 1.5, "max_params": 30_000}],
)  # fmt: skip
def test_empty_windows_jumps_and_out_sizes_equal_the_walk(extra):
    space = _space("channels", **extra)
    for selection in (dict(limit=5, sort="macs"), dict(limit=5, sort="rf_error", rf_min=30), dict(pareto="params,erf"),
                      dict(sample=5, seed=1)):  # fmt: skip
        selection = dict(selection)
        if "rf_min" in selection:
            space2 = _space("channels", **{**extra, "rf_min": max(extra.get("rf_min", 0), selection.pop("rf_min"))})
        else:
            space2 = space
        expected, walked = walk(space2, **selection)
        got, stats = exact(space2, **selection)
        assert got.equals(expected), (extra, selection)
        assert stats.extra.get("sampled_from") == walked.extra.get("sampled_from")


# ---------------------------------------------------------------- what goes to the walk


def test_what_the_programmes_refuse_goes_to_the_walk():
    space = _space("channels", min_convs=3)
    assert "--min-convs" in stage_select.applicable(space, {"limit": 5, "sort": "macs"})
    plain = _space("channels")
    assert "--where" in stage_select.applicable(plain, {"limit": 5, "sort": "macs", "where": "params < 1e5"})
    assert stage_select.applicable(plain, {"limit": 5}) is not None  # the first N: the walk stops early
    assert stage_select.applicable(plain, {"pareto": ("macs", "depth")}) is not None
    where, _ = walk(plain, limit=5, sort="macs", where="params < 30000")
    assert len(where) == 5 and sweep.search(plain, limit=5, sort="macs", where="params < 30000").equals(where)
    with pytest.raises(RFSweepError, match="depth"):
        sweep.search(plain, pareto="macs,depth")


# ---------------------------------------------------------------- the command line


def _cli(args, tmp_path):
    from rfsweep.network.spec_io import to_toml

    path = tmp_path / "small.toml"
    path.write_text(to_toml(CHANNELS))
    res = CliRunner().invoke(main, ["search", "--space", str(path), *args])
    assert res.exit_code == 0, res.output
    return res


@pytest.mark.parametrize(
    "args",
    [
        ["--sort", "macs", "--limit", "5"],
        ["--sort", "rf_error", "--limit", "8", "--target-rf", "51", "--max-macs", "2e6"],
        ["--pareto", "macs,rf_error", "--rf-min", "40"],
        ["--sample", "10", "--seed", "1"],
        ["--sample", "10", "--seed", "1", "--max-params", "2e4"],
    ],
)
def test_cli_search_equals_the_walk(tmp_path, args):
    got = _cli(args, tmp_path)
    with walk_only():
        expected = _cli(args, tmp_path)
    assert got.stdout == expected.stdout and got.stdout.count("\n") >= 3
    summary = json.loads(_cli([*args, "--json", "-o", str(tmp_path / "o.parquet")], tmp_path).stdout)
    assert summary["space_size"] == 1728 and summary["pruned"] == 1728 - summary["evaluated"]


def test_cli_latency_budget_beside_another_equals_the_walk(tmp_path):
    # two budgets, one of them on latency: the summary has no 'matching' count (no method counts this
    # exactly) instead of the count's refusal
    ms = float(np.quantile(everything_with_latency("channels")["latency_ms"], 0.5))
    for args in (["--sort", "latency_ms", "--limit", "6"], ["--pareto", "macs,latency_ms"]):
        args = [*args, "--latency-lut", _lut("channels"), "--max-latency-ms", str(ms), "--max-macs", "2e6"]
        got = _cli(args, tmp_path)
        with walk_only():
            expected = _cli(args, tmp_path)
        assert got.stdout == expected.stdout and got.stdout.count("\n") >= 3
        summary = json.loads(_cli([*args, "--json", "-o", str(tmp_path / "o.parquet")], tmp_path).stdout)
        assert summary["kept"] >= 1 and "matching" not in summary
    # latency_ms without a table: one line naming the option, before any walk
    from rfsweep.network.spec_io import to_toml

    (tmp_path / "plain.toml").write_text(to_toml(CHANNELS))
    for args in (["--pareto", "macs,latency_ms"], ["--sort", "latency_ms", "--limit", "3"]):
        res = CliRunner().invoke(main, ["search", "--space", str(tmp_path / "plain.toml"), *args])
        assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
        assert f"field '{args[0][2:]}'" in res.output and "--latency-lut" in res.output


# ---------------------------------------------------------------- Once-for-All


@pytest.mark.slow
def test_ofa_best_five_by_macs_are_right_and_unbeaten():
    import rfsweep

    space = build_space({**stages.load("ofa_mbv3"), "rf_min": 400, "max_macs": 300e6})
    top = stage_select.top_k(space, 5, "macs")
    assert len(top) == 5
    for i in range(5):
        idx = [int(c) for c in top.choice[:, i]]
        frame = rfsweep.analyze(space.network_spec(idx))
        assert int(frame["macs"].sum()) == top.out[lm.O_MACS, i]
        assert int(frame["params"].sum()) == top.out[lm.O_PARAMS, i]
        spatial = [rf for rf in frame["rf"] if rf[0] is not None]
        assert int(spatial[-1][0]) == top.out[lm.O_RF, i] >= 400
    fifth = int(top.out[lm.O_MACS, 4])
    rng = np.random.default_rng(0)
    choice = np.stack([rng.integers(0, n, 100_000) for n in space.radices], axis=1)
    batch, mask = engine.evaluate(space, choice)
    assert mask.sum() > 1000
    assert int(batch.out[lm.O_MACS].min()) >= fifth
