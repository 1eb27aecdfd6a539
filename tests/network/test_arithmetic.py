"""Property tests: rfsweep.network.arithmetic and rfsweep.network.analyze against the naive index-set model
(tests/naive.py).

The naive model builds each axis of a random chain as explicit index maps and composes them; it shares no
code with rfsweep. For conv/pool chains every unit has the same hull, whose size is rf; the centre of unit u
is ``center + u·jump``; the uniform-weight input gradient has mean at the centre and variance erf_var exactly.
After transposed convs, upsampling, adaptive pooling and depth-to-space, units differ (periodically): rf is
the largest hull over units.
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import assume, given, settings
from hypothesis import strategies as st

import naive
from rfsweep.network import arithmetic as ar
from rfsweep.network.analyze import evaluate, to_frame
from rfsweep.network.spec import parse_network

PROPERTY = settings(max_examples=200, deadline=None)

# --------------------------------------------------------------------------- strategies (one axis)


@st.composite
def pool_or_conv(draw, op=None):
    op = op or draw(st.sampled_from(["conv", "maxpool", "avgpool"]))
    layer = {
        "op": op,
        "kernel": draw(st.integers(1, 7)),
        "stride": draw(st.integers(1, 3)),
        "dilation": draw(st.integers(1, 3)) if op == "conv" else 1,
    }
    layer["padding"] = draw(
        st.one_of(
            st.sampled_from(["valid", "same", "tf_same"]),
            st.integers(0, 3),
            st.tuples(st.integers(0, 3), st.integers(0, 3)),
        )
    )
    if op != "conv":
        layer["ceil_mode"] = draw(st.booleans())
    return layer


RESAMPLING_OPS = ["deconv", "upsample", "adaptive_avgpool", "space_to_depth", "depth_to_space"]


@st.composite
def resampling(draw, op=None):
    """A layer whose units may differ (periodically): transposed conv, upsample, adaptive pool, depth-to-space
    (and space-to-depth, a pool on each axis, to mix in)."""
    op = op or draw(st.sampled_from(RESAMPLING_OPS))
    if op == "adaptive_avgpool":
        return {"op": op, "output": draw(st.integers(1, 9))}
    if op in ("space_to_depth", "depth_to_space"):
        return {"op": op, "block": draw(st.integers(1, 3))}
    if op == "deconv":
        k, s, d = draw(st.integers(1, 7)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        k_eff = d * (k - 1) + 1
        pad = draw(st.tuples(st.integers(0, k_eff // 2), st.integers(0, k_eff // 2)))
        out_pad = draw(st.integers(0, max(s, d) - 1))
        return {"op": "deconv", "kernel": k, "stride": s, "dilation": d, "padding": pad, "output_padding": out_pad}
    return {"op": "upsample", "scale": draw(st.integers(1, 3)), "mode": draw(st.sampled_from(["nearest", "bilinear"]))}


def fitting_prefix(layers: list[dict], n: int) -> list[dict]:
    """The longest prefix of the chain whose every map keeps at least one unit (by the naive model)."""
    sizes = naive.sizes(layers, n)
    keep = 0
    while keep < len(layers) and sizes[keep + 1] >= 1:
        keep += 1
    return layers[:keep]


@st.composite
def conv_pool_chain(draw):
    layers = draw(st.lists(pool_or_conv(), min_size=1, max_size=6))
    n = draw(st.integers(1, 64))
    layers = fitting_prefix(layers, n)
    assume(layers)
    return layers, n


@st.composite
def mixed_chain(draw):
    layers = draw(st.lists(st.one_of(pool_or_conv(), resampling()), min_size=1, max_size=6))
    assume(any(layer["op"] in RESAMPLING_OPS for layer in layers))
    n = draw(st.integers(1, 24))
    layers = fitting_prefix(layers, n)
    assume(layers)
    return layers, n


# --------------------------------------------------------------------------- the code under test, one axis


def explicit(padding) -> tuple[int, int] | str:
    if isinstance(padding, str):
        return padding
    if isinstance(padding, int):
        return padding, padding
    return tuple(padding)


def run_axis(layers: list[dict], n: int) -> ar.Axis:
    """Apply rfsweep.network.arithmetic's per-layer updates along the chain."""
    a = ar.input_axis(n)
    for layer in layers:
        op = layer["op"]
        if op == "upsample":
            a = ar.upsample_axis(a, layer["scale"], layer["mode"])
            continue
        if op == "adaptive_avgpool":
            a = ar.adaptive_axis(a, layer["output"])
            continue
        if op == "space_to_depth":
            a = ar.space_to_depth_axis(a, layer["block"])
            continue
        if op == "depth_to_space":
            a = ar.depth_to_space_axis(a, layer["block"])
            continue
        k, s, d = naive.layer_fields(layer)
        if op == "deconv":
            left, right = explicit(layer.get("padding", 0))
            a = ar.deconv_axis(a, k, s, d, left, right, layer.get("output_padding", 0))
        else:
            left, right = ar.resolve_padding(explicit(layer.get("padding", 0)), a.size, ar.effective_kernel(k, d), s)
            a = ar.conv_axis(a, k, s, d, left, right, layer.get("ceil_mode", False))
    return a


def period_bound(layers: list[dict], n: int) -> int:
    """A multiple of the period of the unit pattern: the product of the up-sampling factors, and o/gcd(n, o)
    for an adaptive pool from n to o units."""
    p = 1
    for layer, size in zip(layers, naive.sizes(layers, n)):
        if layer["op"] == "deconv":
            p *= layer["stride"]
        elif layer["op"] == "upsample":
            p *= layer["scale"]
        elif layer["op"] == "depth_to_space":
            p *= layer["block"]
        elif layer["op"] == "adaptive_avgpool":
            p *= layer["output"] // math.gcd(size, layer["output"])
    return p


# --------------------------------------------------------------------------- conv/pool chains


@PROPERTY
@given(conv_pool_chain())
def test_conv_pool_chain_matches_index_sets(case):
    layers, n = case
    a = run_axis(layers, n)
    sizes = naive.sizes(layers, n)
    assert a.size == sizes[-1]

    support = naive.impulse_support(layers, n)
    assert len(support) == a.size
    first, last = naive.hull(support[0])
    # unit 0: hull centred on `center`, rf wide
    assert first == a.center - (a.rf - 1) / 2
    assert last == a.center + (a.rf - 1) / 2
    for u, pixels in support.items():
        lo, hi = naive.hull(pixels)
        assert hi - lo + 1 == a.rf  # every unit (interior or border) has the same hull size
        assert len(pixels) <= a.rf  # dilation and strides may leave gaps inside the hull
        assert (lo, hi) == (first + u * a.jump, last + u * a.jump)
        assert (lo, hi) == a.hull(u)
    assert a.eff_padding == -first


@PROPERTY
@given(conv_pool_chain())
def test_conv_pool_chain_gradient_moments(case):
    layers, n = case
    a = run_axis(layers, n)
    u = (a.size - 1) // 2
    mean, var = naive.moments(naive.impulse_gradient(layers, n))
    assert mean == a.center + u * a.jump
    assert var == a.erf_var
    assert math.isclose(math.sqrt(var), math.sqrt(a.erf_var), rel_tol=1e-9)


@PROPERTY
@given(conv_pool_chain())
def test_unknown_size_changes_nothing_but_size(case):
    layers, n = case
    assume(not any(layer["padding"] == "tf_same" for layer in layers))
    known, unknown = run_axis(layers, n), run_axis(layers, None)
    assert unknown.size is None
    assert (unknown.rf, unknown.jump, unknown.center, unknown.erf_var) == (
        known.rf,
        known.jump,
        known.center,
        known.erf_var,
    )


def test_rf_is_one_plus_sum_of_kernel_extents():
    """rf = 1 + sum (k'_l - 1)·jump_{l-1}, written out for one chain (3x3 d2, pool 2/2, 5x5 s3, 3x3)."""
    a = ar.input_axis(100)
    a = ar.conv_axis(a, 3, 1, 2, 2, 2)
    a = ar.conv_axis(a, 2, 2, 1, 0, 0)
    a = ar.conv_axis(a, 5, 3, 1, 2, 2)
    a = ar.conv_axis(a, 3, 1, 1, 1, 1)
    assert a.rf == 1 + 4 * 1 + 1 * 1 + 4 * 2 + 2 * 6
    assert a.jump == 6
    assert a.erf_var == Fraction(8, 12) * 4 + Fraction(3, 12) + Fraction(24, 12) * 4 + Fraction(8, 12) * 36


# --------------------------------------------------------------------------- with transposed convs and upsampling


@PROPERTY
@given(mixed_chain())
def test_resampling_chain_rf_is_largest_support(case):
    layers, n = case
    a = run_axis(layers, n)
    sizes = naive.sizes(layers, n)
    assert a.size == sizes[-1]
    p = period_bound(layers, n)
    # real units plus enough virtual ones to show every phase of the pattern twice
    units = range(-2 * p, max(a.size, 2 * p) + 1)
    support = naive.impulse_support(layers, n, units)
    spans = [max(px) - min(px) + 1 for px in support.values() if px]
    assert a.rf == max(spans, default=0)
    assert a.rf.denominator == 1
    for u, pixels in support.items():
        assert a.hull(u) == (naive.hull(pixels) if pixels else None)
        if pixels and support.get(u + p):
            # the pattern repeats every p units, shifted by p·jump input pixels: the jump, exactly
            assert min(support[u + p]) - min(pixels) == p * a.jump
            assert max(support[u + p]) - max(pixels) == p * a.jump


def test_deconv_then_conv_rf_is_an_integer():
    """3-tap stride-2 transposed conv, then a 2-tap conv: units reach 2 input pixels, not 2 + 1/2."""
    a = ar.deconv_axis(ar.input_axis(8), 3, 2, 1, 0, 0)
    assert a.rf == 2 and a.jump == Fraction(1, 2)
    b = ar.conv_axis(a, 2, 1, 1, 0, 0)
    assert b.rf == 2
    support = naive.impulse_support(
        [{"op": "deconv", "kernel": 3, "stride": 2, "padding": 0}, {"op": "conv", "kernel": 2}], 8
    )
    assert max(max(px) - min(px) + 1 for px in support.values()) == 2


def test_nearest_upsample_then_conv_rf():
    """Nearest x2 makes units 2t and 2t+1 copies of t: a 6-tap conv after it reaches 4 units of t, not 3."""
    layers = [
        {"op": "conv", "kernel": 3, "stride": 2, "padding": 1},
        {"op": "upsample", "scale": 2, "mode": "nearest"},
        {"op": "conv", "kernel": 6, "padding": "same"},
    ]
    a = run_axis(layers, 16)
    support = naive.impulse_support(layers, 16)
    assert a.rf == max(max(px) - min(px) + 1 for px in support.values()) == 3 + 3 * 2


# --------------------------------------------------------------------------- the analyzer, two axes


CHANNELS = 36  # divisible by 2² and 3²: a depth-to-space usually fits


@st.composite
def per_axis_layer(draw, resample: bool):
    """One 2-D layer spec and its two 1-D naive layers (h, w), with independent per-axis values."""
    make = resampling if resample else pool_or_conv
    h = draw(make())
    op = h["op"]
    w = draw(make(op))  # same op on both axes; every other value independent
    if op == "adaptive_avgpool":
        return {"op": op, "output": [h["output"], w["output"]]}, h, w
    if op in ("space_to_depth", "depth_to_space"):
        w["block"] = h["block"]  # one block size for both axes
        return {"op": op, "block": h["block"]}, h, w
    if op == "upsample":
        w["mode"] = h["mode"]
        spec = {"op": "upsample", "scale": [h["scale"], w["scale"]], "mode": h["mode"]}
        return spec, h, w
    if op != "conv":
        w["ceil_mode"] = h.get("ceil_mode", False)
    if isinstance(h["padding"], str) or isinstance(w["padding"], str):  # a mode applies to both axes
        w["padding"] = h["padding"] = h["padding"] if isinstance(h["padding"], str) else w["padding"]
    spec = {"op": op, "kernel": [h["kernel"], w["kernel"]], "stride": [h["stride"], w["stride"]]}
    if op != "avgpool":
        spec["dilation"] = [h["dilation"], w["dilation"]]
    if isinstance(h["padding"], str):
        spec["padding"] = h["padding"]
    else:
        spec["padding"] = [list(explicit(h["padding"])), list(explicit(w["padding"]))]
    if op == "deconv":
        w["output_padding"] = min(w["output_padding"], max(w["stride"], w["dilation"]) - 1)
        spec["output_padding"] = [h["output_padding"], w["output_padding"]]
    if op in ("conv", "deconv"):
        spec["channels"] = CHANNELS
    else:
        spec["ceil_mode"] = h.get("ceil_mode", False)
    return spec, h, w


@st.composite
def network(draw, resample: bool):
    count = draw(st.integers(1, 6 if not resample else 4))
    items = [draw(per_axis_layer(resample and draw(st.booleans()))) for _ in range(count)]
    n_h, n_w = draw(st.integers(1, 64 if not resample else 20)), draw(st.integers(1, 64 if not resample else 20))
    hs, ws = [i[1] for i in items], [i[2] for i in items]
    keep = min(len(fitting_prefix(hs, n_h)), len(fitting_prefix(ws, n_w)))
    assume(keep >= 1)
    items = items[:keep]
    channels = CHANNELS
    for spec, _, _ in items:  # depth-to-space needs block² to divide the channels
        if spec["op"] == "space_to_depth":
            channels *= spec["block"] ** 2
        elif spec["op"] == "depth_to_space":
            assume(channels % spec["block"] ** 2 == 0)
            channels //= spec["block"] ** 2
        elif spec["op"] in ("conv", "deconv"):
            channels = CHANNELS
    layers = [dict(spec, name=f"l{i}") for i, (spec, _, _) in enumerate(items)]
    spec = {"name": "random", "input": {"size": [n_h, n_w], "channels": CHANNELS}, "layers": layers}
    return spec, items, (n_h, n_w)


def check_analyzer(case, moments: bool):
    spec, items, n = case
    results = evaluate(parse_network(spec))
    frame = to_frame(results)
    for axis in range(2):
        chain = [item[1 + axis] for item in items]
        sizes = naive.sizes(chain, n[axis])
        p = period_bound(chain, n[axis])
        support = naive.impulse_support(chain, n[axis], range(-p, max(sizes[-1], p) + p + 1))
        for i, r in enumerate(results):
            a = r.axes[axis]
            assert a.size == sizes[i + 1]
        last = frame.iloc[-1]
        a = results[-1].axes[axis]
        assert last["out_size"][axis] == sizes[-1]
        spans = [max(px) - min(px) + 1 for px in support.values() if px]
        assert last["rf"][axis] == max(spans, default=0)
        firsts = {u: min(px) for u, px in support.items() if px}
        jumps = {Fraction(firsts[u + p] - firsts[u], p) for u in firsts if u + p in firsts}
        if firsts:  # (a map whose units all reach nothing, e.g. every other unit of a 1-tap x2 deconv, has none)
            assert jumps == {a.jump}
        assert math.isclose(last["jump"][axis], a.jump, rel_tol=1e-12)
        assert math.isclose(last["center"][axis], a.center, rel_tol=1e-12)
        for u, pixels in support.items():
            assert a.hull(u) == (naive.hull(pixels) if pixels else None)
        if moments:
            lo, hi = naive.hull(support[0])
            assert last["center"][axis] == Fraction(lo + hi, 2)
            assert last["eff_padding"][axis] == -lo
            mean, var = naive.moments(naive.impulse_gradient(chain, n[axis]))
            assert mean == a.center + (a.size - 1) // 2 * a.jump
            assert math.isclose(last["erf_sigma"][axis], math.sqrt(var), rel_tol=1e-9)


@PROPERTY
@given(network(resample=False))
def test_analyzer_conv_pool_per_axis(case):
    check_analyzer(case, moments=True)


@settings(max_examples=100, deadline=None)
@given(network(resample=True))
def test_analyzer_with_resampling_per_axis(case):
    check_analyzer(case, moments=False)


def test_analyzer_non_square_example():
    """A 7x3 stride 2x1 conv on 32x20, then a 3x3 pool: the two axes are computed independently."""
    spec = {
        "input": {"size": [32, 20], "channels": 3},
        "layers": [
            {"name": "c", "op": "conv", "kernel": [7, 3], "stride": [2, 1], "padding": [[3, 3], [1, 1]], "channels": 8},
            {"name": "p", "op": "maxpool", "kernel": 3, "stride": [2, 1]},
        ],
    }
    frame = to_frame(evaluate(parse_network(spec)))
    assert frame.loc[0, "out_size"] == (16, 20) and frame.loc[0, "rf"] == (7, 3)
    assert frame.loc[1, "out_size"] == (7, 18) and frame.loc[1, "rf"] == (11, 5) and frame.loc[1, "jump"] == (4, 1)
    assert frame.loc[1, "eff_padding"] == (3, 1) and frame.loc[1, "center"] == (2, 1)


def test_merge_after_resampling_is_the_union_of_hulls():
    """U-Net style: stride-2 conv, bilinear x2 and a 2-tap conv (centre 0, jump 1) added to a 3x3 conv."""
    up = [
        {"op": "conv", "kernel": 3, "stride": 2, "padding": 1},
        {"op": "upsample", "scale": 2, "mode": "bilinear"},
        {"op": "conv", "kernel": 2, "padding": (0, 1)},
    ]
    skip = [{"op": "conv", "kernel": 3, "padding": 1}]
    a, b = run_axis(up, 16), run_axis(skip, 16)
    assert (a.size, a.jump, a.center) == (b.size, b.jump, b.center)
    merged = ar.merge_axes([a, b], [Fraction(1), Fraction(1)])
    units = range(-4, 20)
    sa, sb = naive.impulse_support(up, 16, units), naive.impulse_support(skip, 16, units)
    for u in units:
        assert merged.hull(u) == naive.hull(sa[u] | sb[u])
    assert merged.rf == max(max(sa[u] | sb[u]) - min(sa[u] | sb[u]) + 1 for u in units)
    assert merged.erf_var == (a.erf_var + b.erf_var) / 2
