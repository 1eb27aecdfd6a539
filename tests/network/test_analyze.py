"""rfsweep.network.analyze on small hand-written networks: merges, padding rules, params/MACs, global layers, flags."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from rfsweep import SpecError, analyze
from rfsweep.network.analyze import evaluate
from rfsweep.network.spec import parse_network


def net(layers, size=32, channels=8):
    return {"name": "t", "input": {"size": size, "channels": channels}, "layers": layers}


def conv(name, k=3, s=1, p=1, c=8, **kw):
    return {"name": name, "op": "conv", "kernel": k, "stride": s, "padding": p, "channels": c, **kw}


def row(frame, name):
    return frame[frame["name"] == name].iloc[0]


def var(k, jump=1, d=1):
    """erf variance one k-tap layer adds: (jump·d)²·(k²-1)/12."""
    return Fraction((jump * d) ** 2 * (k * k - 1), 12)


# --------------------------------------------------------------------------- multi-branch


def branches(merge, c3=8, c5=8):
    return net(
        [
            conv("stem", 3, 2, 1),
            conv("b3", 3, 1, 1, c3, inputs=["stem"]),
            conv("b5", 5, 1, 2, c5, inputs=["stem"]),
            {"name": "m", "op": merge, "inputs": ["b3", "b5"]},
            conv("head", 1, 1, 0),
        ]
    )


def test_aligned_add():
    frame = analyze(branches("add"))
    m = row(frame, "m")
    assert m["rf"] == (3 + 4 * 2,) * 2  # the larger branch
    assert m["jump"] == (2, 2) and m["center"] == (0, 0) and m["out_size"] == (16, 16)
    assert m["eff_padding"] == (5, 5)  # follows from the shared centre and the merged rf
    assert m["channels"] == 8
    b3, b5 = var(3) + var(3, 2), var(3) + var(5, 2)
    assert math.isclose(m["erf_sigma"][0], math.sqrt((b3 + b5) / 2), rel_tol=1e-12)
    assert row(frame, "head")["erf_sigma"] == m["erf_sigma"]


def test_aligned_concat_is_channel_weighted():
    frame = analyze(branches("concat", c3=8, c5=24))
    m = row(frame, "m")
    assert m["rf"] == (11, 11) and m["channels"] == 32
    b3, b5 = var(3) + var(3, 2), var(3) + var(5, 2)
    assert math.isclose(m["erf_sigma"][1], math.sqrt((8 * b3 + 24 * b5) / 32), rel_tol=1e-12)


def test_add_with_unequal_channels_is_refused():
    with pytest.raises(SpecError, match=r"layer 'm'.*add needs equal channels"):
        analyze(branches("add", c3=8, c5=16))


def test_misaligned_jump_is_refused():
    spec = net(
        [
            conv("a", 1, 2, 0, inputs=["input"]),
            conv("b", 17, 1, 0, inputs=["input"]),  # also 16x16, but jump 1
            {"name": "sum", "op": "add", "inputs": ["a", "b"]},
        ]
    )
    with pytest.raises(SpecError) as err:
        analyze(spec)
    msg = str(err.value)
    assert "'sum'" in msg and "jump" in msg
    assert "'a' is 2" in msg and "'b' is 1" in msg
    assert "\n" not in msg


def test_misaligned_centre_is_refused():
    spec = net(
        [
            conv("a", 3, 1, 1, inputs=["input"]),  # centre 0
            conv("b", 3, 1, [[0, 2], [1, 1]], inputs=["input"]),  # same size and jump, centre 1 on h
            {"name": "cat", "op": "concat", "inputs": ["a", "b"]},
        ]
    )
    with pytest.raises(SpecError) as err:
        analyze(spec)
    msg = str(err.value)
    assert "'cat'" in msg and "centre (h)" in msg
    assert "'a' is 0" in msg and "'b' is 1" in msg


def test_global_vectors_merge_whatever_their_jump():
    spec = net(
        [
            conv("a", 3, 2, 1),
            {"name": "ga", "op": "global_pool"},
            conv("b", 3, 2, 1, inputs=["a"]),
            {"name": "gb", "op": "global_pool"},
            {"name": "cat", "op": "concat", "inputs": ["ga", "gb"]},
            {"name": "fc", "op": "linear", "channels": 10},
        ]
    )
    frame = analyze(spec)
    assert row(frame, "cat")["channels"] == 16 and bool(row(frame, "cat")["global"])
    assert row(frame, "fc")["params"] == 16 * 10 + 10


def test_global_and_spatial_do_not_merge():
    spec = net([conv("a"), {"name": "g", "op": "global_pool"}, {"name": "x", "op": "add", "inputs": ["a", "g"]}])
    with pytest.raises(SpecError, match="'x'.*global"):
        analyze(spec)


# --------------------------------------------------------------------------- padding rules


def tf_rule(n, k, s):
    """TensorFlow's SAME: out = ceil(n/s), total padding what that output needs, left = total // 2."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2


@pytest.mark.parametrize("n", [7, 8, 15, 16, 224, 225])
@pytest.mark.parametrize("k,s", [(1, 2), (2, 2), (3, 2), (3, 1), (4, 2), (5, 3), (7, 2)])
def test_tf_same_odd_and_even(n, k, s):
    out, left = tf_rule(n, k, s)
    frame = analyze(net([conv("c", k, s, "tf_same")], size=n))
    r = frame.iloc[0]
    assert r["out_size"] == (out, out)
    assert r["eff_padding"] == (left, left)
    assert r["center"] == (Fraction(k - 1, 2) - left,) * 2


def test_tf_same_depends_on_size():
    """3x3/s2 SAME pads (1, 1) at 7 but (0, 1) at 8: the centre of unit 0 moves by one pixel."""
    assert analyze(net([conv("c", 3, 2, "tf_same")], size=7)).iloc[0]["center"] == (0, 0)
    assert analyze(net([conv("c", 3, 2, "tf_same")], size=8)).iloc[0]["center"] == (1, 1)


def pytorch_pool_out(n, k, s, p, ceil_mode):
    """aten's pooling_output_shape_pad_lr."""
    out = (n + 2 * p - (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


@pytest.mark.parametrize("n", [2, 5, 6, 7, 13, 55, 56, 112])
@pytest.mark.parametrize("k,s,p", [(3, 2, 0), (3, 2, 1), (2, 2, 0), (2, 2, 1), (3, 3, 1), (5, 3, 2), (3, 1, 1)])
def test_ceil_mode_pytorch_rule(n, k, s, p):
    for ceil_mode in (False, True):
        expected = pytorch_pool_out(n, k, s, p, ceil_mode)
        spec = net(
            [{"name": "p", "op": "maxpool", "kernel": k, "stride": s, "padding": p, "ceil_mode": ceil_mode}], size=n
        )
        if expected < 1:
            with pytest.raises(SpecError, match="out_size"):
                analyze(spec)
        else:
            assert analyze(spec).iloc[0]["out_size"] == (expected, expected)


def test_ceil_mode_examples():
    # GoogLeNet-style 3x3/s2 ceil pool: 112 -> 56; 5 with padding 1 and a 2x2/s2 window: 3 (not 4: the 4th
    # window would start in the right padding); a 3-window on 2 pixels still gives one unit.
    def pool(n, k, s, p):
        return analyze(
            net(
                [
                    {
                        "name": "p",
                        "op": "maxpool",
                        "kernel": k,
                        "stride": s,
                        "padding": p,
                        "ceil_mode": True,
                    }
                ],
                size=n,
            )
        ).iloc[0]["out_size"][0]

    assert pool(112, 3, 2, 0) == 56
    assert pool(5, 2, 2, 1) == 3
    assert pool(2, 3, 2, 0) == 1


# --------------------------------------------------------------------------- params and MACs


def test_grouped_and_depthwise_params_and_macs():
    spec = {
        "input": {"size": [20, 30], "channels": 32},
        "layers": [
            conv("grouped", 3, 1, 1, 64, groups=4),
            conv("dw", 3, 2, 1, 64, groups=64, bias=False),
            conv("pw", 1, 1, 0, 128),
            conv("rect", [1, 7], 1, [0, 3], 16),
        ],
    }
    frame = analyze(spec)
    g, dw, pw, rect = (row(frame, n) for n in ("grouped", "dw", "pw", "rect"))
    assert g["params"] == 3 * 3 * (32 // 4) * 64 + 64
    assert g["macs"] == 3 * 3 * 8 * 64 * 20 * 30
    assert dw["out_size"] == (10, 15)
    assert dw["params"] == 3 * 3 * 1 * 64
    assert dw["macs"] == 3 * 3 * 64 * 10 * 15
    assert pw["params"] == 64 * 128 + 128 and pw["macs"] == 64 * 128 * 150
    assert rect["params"] == 7 * 128 * 16 + 16 and rect["rf"] == (5, 5 + 6 * 2)  # after the stride-2 dw: jump 2


def test_groups_must_divide_input_channels():
    with pytest.raises(SpecError, match=r"'g'.*field 'groups'.*value 3"):
        analyze({"input": {"size": 8, "channels": 8}, "layers": [conv("g", 3, 1, 1, 6, groups=3)]})


def test_deconv_params_and_macs():
    spec = {
        "input": {"size": 8, "channels": 16},
        "layers": [{"name": "up", "op": "deconv", "kernel": 4, "stride": 2, "padding": 1, "channels": 8}],
    }
    r = analyze(spec).iloc[0]
    assert r["out_size"] == (16, 16)
    assert r["params"] == 4 * 4 * 16 * 8 + 8
    assert r["macs"] == 4 * 4 * 16 * 8 * 8 * 8  # every input pixel meets the whole kernel
    assert r["jump"] == (0.5, 0.5) and r["rf"] == (2, 2)  # 4 taps / stride 2: each unit reaches 2 input pixels


def test_linear_and_global_pool():
    spec = net([conv("c", 3, 2, 1, 16), {"name": "fc", "op": "linear", "channels": 10}], size=[8, 6], channels=3)
    frame = analyze(spec)
    fc = row(frame, "fc")
    assert fc["params"] == 16 * 4 * 3 * 10 + 10 and fc["macs"] == 16 * 4 * 3 * 10
    assert bool(fc["global"]) and fc["rf"] == (None, None) and fc["out_size"] == (1, 1)

    spec = net(
        [
            conv("c", 3, 2, 1, 16),
            {"name": "gap", "op": "global_pool"},
            {"name": "fc", "op": "linear", "channels": 10, "bias": False},
        ],
        size=None,
    )
    frame = analyze(spec)
    assert bool(row(frame, "gap")["global"]) and row(frame, "gap")["out_size"] == (1, 1)
    assert row(frame, "fc")["params"] == 160 and not bool(row(frame, "c")["global"])
    results = evaluate(parse_network(spec))
    assert results[1].axes[0].whole


# --------------------------------------------------------------------------- flags


def test_flags_rf_over_input_and_unproductive():
    spec = net([conv("whole", 5, 1, 0), conv("more", 3, 1, 1), conv("one", 1, 1, 0)], size=5)
    frame = analyze(spec)
    assert row(frame, "whole")["flags"] == ""  # rf 5 == input 5, and its input saw single pixels
    assert row(frame, "more")["flags"] == "unproductive,rf>input"
    assert row(frame, "one")["flags"] == "rf>input"  # a 1x1 adds no context, so it is not flagged unproductive


def test_flags_need_every_unit_to_see_everything():
    # 16 px, 3x3/s1/p1 x7: rf 15 < 16, then rf 17 > 16 but the border units do not see the far side yet
    spec = net([conv(f"c{i}") for i in range(9)], size=16)
    frame = analyze(spec)
    assert row(frame, "c6")["flags"] == ""
    assert row(frame, "c7")["flags"] == "rf>input"
    assert "unproductive" not in row(frame, "c8")["flags"]


# --------------------------------------------------------------------------- unknown input size


def test_unknown_input_size():
    spec = net(
        [
            conv("a", 3, 2, 1),
            {"name": "p", "op": "maxpool", "kernel": 2, "stride": 2},
            conv("b", 3, 1, "same"),
            {"name": "g", "op": "global_pool"},
        ],
        size=None,
    )
    frame = analyze(spec)
    assert row(frame, "b")["out_size"] == (None, None)
    assert row(frame, "b")["rf"] == (3 + 2 + 2 * 4,) * 2
    assert row(frame, "b")["macs"] is None or math.isnan(row(frame, "b")["macs"])
    assert row(frame, "b")["params"] == 3 * 3 * 8 * 8 + 8
    assert row(frame, "b")["flags"] == ""
    # giving the size later works
    assert analyze(spec, input_size=64).iloc[2]["out_size"] == (16, 16)
    assert analyze(spec, input_size="64x32").iloc[2]["out_size"] == (16, 8)


def test_unknown_input_size_with_tf_same_is_an_error():
    spec = net([conv("a", 3, 2, 1), conv("tf", 3, 2, "tf_same")], size=None)
    with pytest.raises(SpecError) as err:
        analyze(spec)
    msg = str(err.value)
    assert "'tf'" in msg and "padding" in msg and "tf_same" in msg
    assert analyze(spec, input_size=9).iloc[1]["out_size"] == (3, 3)
