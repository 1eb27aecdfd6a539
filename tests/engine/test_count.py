"""Exact counting: the dynamic programme against plain Python integers, at sizes beyond 2^63, with
'valid' padding at large inputs, and the method (and its reason) each space gets."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import naive
from rfsweep.cli.main import main
from rfsweep.engine import count as counting
from rfsweep.engine import dp
from rfsweep.space import build_space


def test_primes_are_prime_and_crt_rebuilds_any_integer():
    ps = dp.primes(3)
    assert all(p < 2**62 and dp._is_prime(p) for p in ps)
    assert not dp._is_prime(ps[0] - 2) or ps[0] - 2 in ps  # the largest first
    for value in (0, 1, 2**63 + 5, 3 * 2**64 + 12345, 10**40 + 7, 2**150 - 1):
        mods = dp.moduli_for(value)
        assert dp.crt([value % m for m in mods], mods) == value


@pytest.mark.parametrize(
    "settings, rf_max",
    [
        # 20^18 = 2.6e23 candidates: three primes' worth
        (dict(depth=18, ops=["conv"], kernels=[1, 3, 5, 7], strides=[1, 2], dilations=[1, 2, 3], channels=[8]), 60),
        # 12^18 = 2.7e19, beyond 2^64, with pools, a head and min-convs
        (
            dict(
                depth="17-19",
                kernels=[1, 3, 5, 7],
                strides=[1, 2],
                min_convs=3,
                positions=[{"index": -1, "ops": ["conv"], "kernels": [1], "channels": [10]}],
            ),
            40,
        ),
    ],
)
def test_count_beyond_2_63_equals_python_integers(settings, rf_max):
    space = build_space({**settings, "rf_max": rf_max}, for_search=False)
    assert space.size > 2**64
    expected = naive.count_by_rf(settings, rf_max)
    hist = counting.rf_histogram(space, 1, rf_max)
    assert hist[1:] == expected[1:]
    # the rest of the space, rf > rf_max, in one saturating bucket: together, exactly the space
    rest = counting.count_details(build_space({**settings, "rf_min": rf_max + 1}, for_search=False))
    assert rest.method == "dp" and rest.count > 2**63
    if "min_convs" not in settings:  # every candidate has some rf: the two parts make the whole space
        assert rest.count + sum(expected) == space.size


def test_huge_space_is_counted_but_not_searched_beyond_38_digits():
    settings = dict(depth=18, kernels=[1, 3, 5, 7], strides=[1, 2], target_rf=224, tolerance=1)
    res = CliRunner().invoke(main, ["count", "--depth", "18", "--target-rf", "224", "--tolerance", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["method"] == "dp" and out["space_size"] > 2**63 and out["count"] > 0
    assert settings  # the same space
    # 24^29 ~ 2.2e38 arch_ids pass the 38 digits a search writes: refused, counted
    big = ["--depth", "29", "--ops", "conv", "--kernels", "1,3,5,7,9,11", "--strides", "1", "--dilations", "1,2,3,4"]
    big += ["--rf-max", "40"]
    res = CliRunner().invoke(main, ["search", *big, "--limit", "1"])
    assert res.exit_code == 2 and "field 'depth'" in res.stderr and "count" in res.stderr
    assert CliRunner().invoke(main, ["count", *big]).exit_code == 0


@given(
    n=st.integers(20, 200),
    kernels=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    strides=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    depth=st.integers(1, 5),
    min_out=st.integers(1, 5),
    rf=st.tuples(st.integers(1, 60), st.integers(0, 40)),
)
def test_valid_padding_programme_equals_python(n, kernels, strides, depth, min_out, rf):
    """'valid' padding: the out size follows from (jump, rf); no out-size dimension, no fallback."""
    settings = dict(
        depth=f"1-{depth}",
        ops=["conv", "maxpool"],
        kernels=kernels,
        pool_kernels=[2, 3],
        strides=strides,
        padding="valid",
        input_size=n,
        min_out_size=min_out,
        channels=[4],
        rf_min=rf[0],
        rf_max=rf[0] + rf[1],
    )
    space = build_space(settings, for_search=False)
    assert counting.count_method(space)[0] == "dp"
    expected = naive.count_by_rf({**settings, "rf_min": None, "rf_max": None}, rf[0] + rf[1])
    assert counting.count(space) == sum(expected[rf[0] :])


@pytest.mark.slow
def test_valid_padding_at_large_input_uses_the_programme():
    """Issue: 8.9e12 candidates at --padding valid --input-size 4096 fell back to a 277 s enumeration."""
    res = CliRunner().invoke(
        main,
        ["count", "--depth", "12", "--padding", "valid", "--input-size", "4096", "--target-rf", "501", "--json"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["method"] == "dp" and out["seconds"] < 30
    settings = dict(depth=12, padding="valid", input_size=4096, rf_max=501)
    assert out["count"] == naive.count_by_rf(settings, 501)[501]


@pytest.mark.parametrize(
    "extra, method, words",
    [
        ({}, "dp", "dynamic programme"),
        ({"min_convs": 2}, "dp", "dynamic programme"),
        ({"max_params": 10**6}, "enumerate", "--max-params needs the whole prefix"),
        ({"max_macs": 10**9, "no_unproductive": True}, "enumerate", "--max-macs, --no-unproductive need"),
        ({"anchors": "32@8"}, "enumerate", "--anchors needs"),
    ],
)
def test_count_says_which_method_and_why(extra, method, words):
    space = build_space(dict(depth="2-4", target_rf=31, tolerance=4, **extra))
    res = counting.count_details(space)
    assert res.method == method and words in res.reason
    assert res.count == naive.naive_count(dict(depth="2-4", target_rf=31, tolerance=4, **extra))
    cli = CliRunner().invoke(main, ["count", "--depth", "2-4", "--target-rf", "31", "--tolerance", "4"])
    assert "dp: dynamic programme" in cli.stderr


def test_method_dp_refused_where_the_programme_cannot_count():
    res = CliRunner().invoke(main, ["count", "--depth", "3", "--max-params", "1e5", "--method", "dp"])
    assert res.exit_code == 2 and "--max-params" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_threads_checked_for_both_methods():
    for method in ("dp", "enumerate"):
        for bad in ("0", "5", "-1"):
            res = CliRunner().invoke(main, ["count", "--depth", "3", "--threads", bad, "--method", method])
            assert res.exit_code == 2 and "field 'threads'" in res.stderr, (method, bad, res.output)


def test_count_works_at_every_depth_the_help_allows():
    """A count needs no ERF variance: depth 32 (the help's limit) counts, where the ERF of the deepest
    candidates would not fit in int64; a search of the same space is refused naming --depth, the option
    the user gave, not --dilations."""
    res = CliRunner().invoke(main, ["count", "--depth", "32", "--json"])
    assert res.exit_code == 0, res.output
    # every candidate but the pool-only ones: 12 choices a layer (4 of them pools), one conv needed by default
    assert json.loads(res.stdout)["count"] == 12**32 - 4**32
    res = CliRunner().invoke(main, ["search", "--depth", "32", "--limit", "1"])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: field 'depth'") and "effective-RF variance" in res.stderr
