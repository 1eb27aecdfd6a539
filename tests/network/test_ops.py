"""The ops real networks need beside conv/pool: adaptive pools, channel slices, space/depth blocks, gates,
and the pointwise layers with parameters. Geometry against tests/naive.py (the property tests of
test_arithmetic.py mix these ops into random chains); here worked examples, the effective-RF model of
adaptive pooling, channels, parameters and errors."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from rfsweep import SpecError, analyze
from rfsweep.network import arithmetic as ar
from rfsweep.network.erf import distributions
from rfsweep.network.zoo import resolve


def net(layers, size=16, channels=8):
    return {"name": "t", "input": {"size": size, "channels": channels}, "layers": layers}


def row(frame, name):
    return frame[frame["name"] == name].iloc[0]


# --------------------------------------------------------------------------- adaptive pooling


def test_adaptive_windows_are_pytorchs():
    """(start, stop) of each window as torch 2.14 computes them: adaptive_avg_pool1d of one-hot rows."""
    assert [ar.adaptive_window(7, 6, i) for i in range(6)] == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7)]
    # 5 -> 6 (alexnet's avgpool at input 193): more units than inputs, windows of 1 and 2
    assert [ar.adaptive_window(5, 6, i) for i in range(6)] == [(0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 5)]
    assert [ar.adaptive_window(10, 7, i) for i in range(7)] == [
        (0, 2),
        (1, 3),
        (2, 5),
        (4, 6),
        (5, 8),
        (7, 9),
        (8, 10),
    ]


def test_adaptive_dividing_is_the_pool():
    """out | n: kernel = stride = n/out, exactly the plain pool (rf, jump, centre, erf)."""
    a = ar.conv_axis(ar.input_axis(28), 3, 2, 1, 1, 1)
    pooled, adaptive = ar.conv_axis(a, 2, 2, 1, 0, 0), ar.adaptive_axis(a, 7)
    assert adaptive == pooled


def test_adaptive_examples_against_the_naive_model():
    # after a 3x3/s2 conv (rf 3, jump 2, centre 0): 7 -> 6 windows of 2 units: rf 3 + 1*2 = 5, jump 7/6*2
    for n, out in ((7, 6), (5, 6), (10, 7), (13, 1), (3, 8)):
        chain = [{"op": "conv", "kernel": 3, "stride": 2, "padding": 1}, {"op": "adaptive_avgpool", "output": out}]
        size = 2 * n  # the conv halves it
        a = ar.adaptive_axis(ar.conv_axis(ar.input_axis(size), 3, 2, 1, 1, 1), out)
        support = naive.impulse_support(chain, size)
        widest = max(ar.adaptive_window(n, out, i)[1] - ar.adaptive_window(n, out, i)[0] for i in range(out))
        assert a.rf == max(max(px) - min(px) + 1 for px in support.values()) == 3 + (widest - 1) * 2
        assert a.jump == Fraction(2 * n, out) and a.size == out
        for u, px in support.items():
            assert a.hull(u) == naive.hull(px)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 2)),
        min_size=0,
        max_size=3,
    ),
    st.integers(4, 40),
    st.integers(1, 12),
)
def test_adaptive_erf_is_the_phase_averaged_gradient(convs, n, out):
    """erf_var (arithmetic) and the exact distribution (rfsweep.network.erf) of an adaptive pool at the end of a
    conv chain: the equal mixture, over one period of units, of each unit's normalised input gradient
    (the naive all-ones impulse), each placed relative to its reference point center + u·jump."""
    chain = [{"op": "conv", "kernel": k, "stride": s, "dilation": d, "padding": "same"} for k, s, d in convs]
    size = naive.sizes(chain, n)[-1]
    chain.append({"op": "adaptive_avgpool", "output": out})
    a = ar.input_axis(n)
    for k, s, d in convs:
        keff = ar.effective_kernel(k, d)
        a = ar.conv_axis(a, k, s, d, *ar.same_padding(keff))
    a = ar.adaptive_axis(a, out)
    period = out // math.gcd(size, out)
    mixture: dict[Fraction, Fraction] = {}
    for u in range(period):
        ref = a.center + u * a.jump
        for pixel, w in naive.impulse_gradient(chain, n, unit=u).items():
            mixture[pixel - ref] = mixture.get(pixel - ref, Fraction(0)) + w / period
    mean, var = naive.moments(mixture)
    assert mean == 0
    assert var == a.erf_var

    spec = net(
        [
            {"name": f"c{i}", "op": "conv", "kernel": k, "stride": s, "dilation": d, "padding": "same", "channels": 4}
            for i, (k, s, d) in enumerate(convs)
        ]
        + [{"name": "ap", "op": "adaptive_avgpool", "output": out}],
        size=n,
    )
    dist = distributions(resolve(spec), ["ap"])["ap"][0]
    lib = dict(zip((Fraction(x).limit_denominator(10**6) for x in dist.positions()), dist.probs))
    for pos, w in mixture.items():
        assert math.isclose(lib.pop(pos), float(w), rel_tol=1e-9)
    assert all(abs(p) < 1e-15 for p in lib.values())


def test_adaptive_needs_the_input_size():
    spec = net([{"name": "ap", "op": "adaptive_avgpool", "output": 6}], size=None)
    with pytest.raises(SpecError, match=r"layer 'ap': field 'output'.*needs the input size"):
        analyze(spec)
    assert analyze(spec, input_size=12).iloc[0]["out_size"] == (6, 6)


def test_adaptive_non_square_output_and_global_input():
    frame = analyze(
        net(
            [
                {"name": "ap", "op": "adaptive_maxpool", "output": [3, 2]},
                {"name": "g", "op": "global_pool"},
                {"name": "ap2", "op": "adaptive_avgpool", "output": 1},
            ],
            size=[12, 10],
        )
    )
    ap = row(frame, "ap")
    assert ap["out_size"] == (3, 2) and ap["rf"] == (4, 5) and ap["jump"] == (4, 5) and ap["params"] == 0
    assert bool(row(frame, "ap2")["global"])


# --------------------------------------------------------------------------- space/depth


def test_space_to_depth_and_back():
    frame = analyze(
        net(
            [
                {"name": "s2d", "op": "space_to_depth", "block": 2},
                {"name": "c", "op": "conv", "kernel": 3, "padding": 1, "channels": 8},
                {"name": "d2s", "op": "depth_to_space", "block": 2},
            ],
            size=16,
            channels=3,
        )
    )
    s2d, c, d2s = (row(frame, n) for n in ("s2d", "c", "d2s"))
    assert s2d["channels"] == 12 and s2d["out_size"] == (8, 8) and s2d["rf"] == (2, 2) and s2d["jump"] == (2, 2)
    assert s2d["center"] == (0.5, 0.5) and s2d["params"] == 0
    assert c["rf"] == (6, 6) and c["params"] == 3 * 3 * 12 * 8 + 8
    # depth-to-space: units 2t and 2t+1 are channel groups of unit t (hull of t, rf 6), jump 1
    assert d2s["channels"] == 2 and d2s["out_size"] == (16, 16) and d2s["jump"] == (1, 1) and d2s["rf"] == (6, 6)
    chain = [
        {"op": "space_to_depth", "block": 2},
        {"op": "conv", "kernel": 3, "padding": 1},
        {"op": "depth_to_space", "block": 2},
    ]
    a = ar.depth_to_space_axis(ar.conv_axis(ar.space_to_depth_axis(ar.input_axis(16), 2), 3, 1, 1, 1, 1), 2)
    for u, px in naive.impulse_support(chain, 16).items():
        assert a.hull(u) == naive.hull(px)


def test_space_to_depth_needs_divisible_size_and_depth_to_space_channels():
    with pytest.raises(SpecError, match=r"layer 's': field 'block': value 2: must divide the input size"):
        analyze(net([{"name": "s", "op": "space_to_depth", "block": 2}], size=[16, 15]))
    with pytest.raises(SpecError, match=r"layer 'd': field 'block': value 2: block² must divide the input channels"):
        analyze(net([{"name": "d", "op": "depth_to_space", "block": 2}], channels=6))
    with pytest.raises(SpecError, match=r"layer 'd': field 'block'.*needs a block size"):
        analyze(net([{"name": "d", "op": "depth_to_space"}]))


# --------------------------------------------------------------------------- channel slices


def test_slice_channels_and_geometry():
    frame = analyze(
        net(
            [
                {"name": "c", "op": "conv", "kernel": 3, "padding": 1, "channels": 16},
                {"name": "a", "op": "slice", "stop": 8, "inputs": ["c"]},
                {"name": "b", "op": "slice", "start": 8, "inputs": ["c"]},
                {"name": "b2", "op": "conv", "kernel": 3, "padding": 1, "channels": 8},
                {"name": "cat", "op": "concat", "inputs": ["a", "b2"]},
            ]
        )
    )
    assert row(frame, "a")["channels"] == 8 and row(frame, "b")["channels"] == 8
    assert row(frame, "a")["rf"] == row(frame, "c")["rf"] == (3, 3)
    assert row(frame, "cat")["channels"] == 16 and row(frame, "cat")["rf"] == (5, 5)


def test_slice_outside_the_channels_is_refused():
    with pytest.raises(SpecError, match=r"layer 's': field 'stop': value 9: the slice \[2, 9\) must lie inside"):
        analyze(net([{"name": "s", "op": "slice", "start": 2, "stop": 9}]))
    with pytest.raises(SpecError, match=r"layer 's': field 'stop': value 2: must be larger than start"):
        analyze(net([{"name": "s", "op": "slice", "start": 2, "stop": 2}]))


# --------------------------------------------------------------------------- gates


def se_block(gate_channels=8):
    return net(
        [
            {"name": "c", "op": "conv", "kernel": 3, "stride": 2, "padding": 1, "channels": 8},
            {"name": "squeeze", "op": "global_pool", "inputs": ["c"]},
            {"name": "fc1", "op": "conv", "kernel": 1, "channels": 2},
            {"name": "relu", "op": "relu"},
            {"name": "fc2", "op": "conv", "kernel": 1, "channels": gate_channels},
            {"name": "sig", "op": "sigmoid"},
            {"name": "scale", "op": "gate", "inputs": ["c", "sig"]},
            {"name": "next", "op": "conv", "kernel": 3, "padding": 1, "channels": 8},
        ]
    )


def test_gate_keeps_the_maps_geometry_and_is_flagged():
    frame = analyze(se_block())
    scale, c = row(frame, "scale"), row(frame, "c")
    for col in ("out_size", "jump", "rf", "eff_padding", "center", "erf_sigma"):
        assert scale[col] == c[col]
    assert scale["channels"] == 8 and scale["params"] == 0 and scale["flags"] == "gated"
    assert not bool(scale["global"]) and row(frame, "next")["rf"] == (7, 7)
    assert row(frame, "fc1")["params"] == 8 * 2 + 2 and row(frame, "fc1")["macs"] == 16


def test_gate_refuses_a_spatial_gate_and_other_channel_counts():
    spec = se_block()
    spec["layers"][6]["inputs"] = ["c", "c"]
    with pytest.raises(SpecError, match=r"layer 'scale'.*must be a global vector"):
        analyze(spec)
    with pytest.raises(SpecError, match=r"layer 'scale'.*the gate has 4 channels, the map 8"):
        analyze(se_block(gate_channels=4))
    assert analyze(se_block(gate_channels=1)).iloc[6]["channels"] == 8
    spec["layers"][6]["inputs"] = ["c"]
    with pytest.raises(SpecError, match=r"'gate' takes two inputs"):
        analyze(spec)


def test_gate_table_names_the_convention():
    from rfsweep.network import report
    from rfsweep.network.analyze import evaluate

    network = resolve(se_block())
    table = report.to_table(network, evaluate(network))
    assert "gated: multiplied per channel by a globally pooled branch" in table
    assert "count the gated map only" in table


# --------------------------------------------------------------------------- pointwise layers with parameters


def test_pointwise_parameters():
    frame = analyze(
        net(
            [
                {"name": "ln", "op": "layernorm"},
                {"name": "ln_nobias", "op": "layernorm", "bias": False},
                {"name": "scale", "op": "affine", "bias": False},
                {"name": "shift", "op": "affine", "weight": False},
                {"name": "fixed", "op": "affine", "weight": False, "bias": False},
                {"name": "p1", "op": "prelu"},
                {"name": "pc", "op": "prelu", "per_channel": True},
                {"name": "hs", "op": "hardswish"},
                {"name": "erf", "op": "pointwise", "fn": "Erf"},
            ],
            channels=12,
        )
    )
    params = dict(zip(frame["name"], frame["params"]))
    assert params == {
        "ln": 24,
        "ln_nobias": 12,
        "scale": 12,
        "shift": 12,
        "fixed": 0,
        "p1": 1,
        "pc": 12,
        "hs": 0,
        "erf": 0,
    }
    assert set(frame["rf"]) == {(1, 1)}


def test_pointwise_flags_must_be_booleans():
    with pytest.raises(SpecError, match=r"layer 'p': field 'per_channel': value 1: must be true or false"):
        analyze(net([{"name": "p", "op": "prelu", "per_channel": 1}]))
    with pytest.raises(SpecError, match=r"layer 'r': field 'bias'.*unknown field for op 'relu'"):
        analyze(net([{"name": "r", "op": "relu", "bias": True}]))


def test_erf_support_after_space_to_depth_is_the_box():
    spec = net(
        [
            {"name": "s2d", "op": "space_to_depth", "block": 4},
            {"name": "d2s", "op": "depth_to_space", "block": 2},
        ],
        size=16,
    )
    d = distributions(resolve(spec), ["s2d", "d2s"])
    assert np.allclose(d["s2d"][0].probs, 0.25) and len(d["s2d"][0].probs) == 4
    assert np.allclose(d["d2s"][1].probs, d["s2d"][1].probs)


def test_pointwise_of_several_maps_is_an_aligned_merge():
    """An elementwise function of two maps (x·erf(x), a product of branches): add's geometry and ERF."""
    layers = [
        {"name": "a", "op": "conv", "kernel": 3, "padding": 1, "channels": 8},
        {"name": "b", "op": "conv", "kernel": 5, "padding": 2, "channels": 8, "inputs": ["input"]},
        {"name": "mul", "op": "pointwise", "fn": "Mul", "inputs": ["a", "b"]},
        {"name": "sum", "op": "add", "inputs": ["a", "b"]},
    ]
    frame = analyze(net(layers))
    mul, total = row(frame, "mul"), row(frame, "sum")
    for col in ("rf", "jump", "center", "erf_sigma", "channels", "params"):
        assert mul[col] == total[col]
    assert mul["rf"] == (5, 5)
    layers[1]["padding"] = [[1, 3], [2, 2]]
    with pytest.raises(SpecError, match=r"layer 'mul'.*not aligned: centre \(h\)"):
        analyze(net(layers[:3]))
    layers[1]["padding"], layers[1]["channels"] = 2, 4
    with pytest.raises(SpecError, match=r"layer 'mul'.*pointwise needs equal channels, got \[8, 4\]"):
        analyze(net(layers[:3]))
