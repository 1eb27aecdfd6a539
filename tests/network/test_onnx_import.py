"""rfsweep.from_onnx on graphs built here with onnx.helper (no torch): every mapped op and padding form.

Each imported spec is checked three ways: its fields as the ONNX attributes mean them, its out sizes against
ONNX's own shape inference (run here), and the receptive fields against tests/naive.py, whose per-axis
layers this file writes from the ONNX operator definitions (pads [x1_begin, x2_begin, x1_end, x2_end],
auto_pad, strides defaulting to 1) without going through the importer.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import naive
import rfsweep
from rfsweep import SpecError
from rfsweep.network.analyze import evaluate
from rfsweep.network.zoo import resolve

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper, shape_inference  # noqa: E402

pytestmark = pytest.mark.onnx
RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- building graphs


def make_model(nodes, inits=(), size=(16, 16), channels=3, outputs=None, opset=20, dims=None):
    """A model with one float input x [1, C, H, W]; outputs default to the last node's first output."""
    shape = dims if dims is not None else [1, channels, *size]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    names = outputs or [nodes[-1].output[0]]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in names]
    initializers = [numpy_helper.from_array(np.asarray(a), n) for n, a in inits]
    graph = helper.make_graph(nodes, "g", [x], outs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def weight(name, *shape):
    return name, RNG.standard_normal(shape).astype(np.float32)


def ints(name, values):
    return name, np.array(values, dtype=np.int64)


def floats(name, values):
    return name, np.array(values, dtype=np.float32)


def inferred(model) -> dict[str, tuple]:
    """Every tensor's static shape by ONNX shape inference."""
    m = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    out = {}
    for vi in list(m.graph.value_info) + list(m.graph.output):
        out[vi.name] = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    return out


def layers(spec) -> dict[str, dict]:
    return {layer["name"]: layer for layer in spec["layers"]}


def table(spec):
    return {r.layer.name: r for r in evaluate(resolve(spec))}


# --------------------------------------------------------------------------- conv / pool padding forms


def onnx_pads(kind, pads, n, k, s, d):
    """(begin, end) on one axis as the ONNX operator definitions give them."""
    if kind == "VALID":
        return 0, 0
    if kind in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        small = total // 2
        return (small, total - small) if kind == "SAME_UPPER" else (total - small, small)
    return pads


@st.composite
def conv_pool_case(draw):
    op = draw(st.sampled_from(["Conv", "MaxPool", "AveragePool"]))
    k = [draw(st.integers(1, 5)), draw(st.integers(1, 5))]
    s = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    d = [draw(st.integers(1, 2)), draw(st.integers(1, 2))] if op != "AveragePool" else [1, 1]
    kind = draw(st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    pad_node = [draw(st.integers(0, 2)) for _ in range(4)] if draw(st.booleans()) else None
    ceil = op != "Conv" and kind == "NOTSET" and draw(st.booleans())
    size = [draw(st.integers(6, 24)), draw(st.integers(6, 24))]
    return op, k, s, d, kind, pads, pad_node, ceil, size


def build_conv_pool(op, k, s, d, kind, pads, pad_node, ceil, size):
    nodes, inits = [], []
    src = "x"
    if pad_node is not None:
        t, left, b, r = pad_node
        inits.append(ints("pads", [0, 0, t, left, 0, 0, b, r]))
        nodes.append(helper.make_node("Pad", ["x", "pads"], ["padded"], name="pad"))
        src = "padded"
    attrs = {"kernel_shape": k, "strides": s, "auto_pad": kind}
    if kind == "NOTSET":
        attrs["pads"] = pads
    if op != "AveragePool":
        attrs["dilations"] = d
    if op == "Conv":
        inits.append(weight("w", 4, 3, *k))
        nodes.append(helper.make_node("Conv", [src, "w"], ["y"], name="layer", **attrs))
    else:
        nodes.append(helper.make_node(op, [src], ["y"], name="layer", ceil_mode=int(ceil), **attrs))
    return make_model(nodes, inits, size=size)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(conv_pool_case())
def test_conv_and_pool_padding_forms_against_onnx_and_the_naive_model(case):
    op, k, s, d, kind, pads, pad_node, ceil, size = case
    model = build_conv_pool(*case)
    try:
        onnx_out = inferred(model)["y"]
    except Exception:
        assume(False)  # a case ONNX itself refuses
    per_axis = []
    for axis in range(2):
        n = size[axis] + (0 if pad_node is None else pad_node[axis] + pad_node[axis + 2])
        begin, end = onnx_pads(kind, (pads[axis], pads[axis + 2]), n, k[axis], s[axis], d[axis])
        if pad_node is not None:
            begin, end = begin + pad_node[axis], end + pad_node[axis + 2]
        layer = {"op": "conv" if op == "Conv" else "maxpool", "kernel": k[axis], "stride": s[axis]}
        layer.update(dilation=d[axis], padding=(begin, end), ceil_mode=ceil)
        per_axis.append(layer)
    expected = [naive.sizes([layer], size[axis])[-1] for axis, layer in enumerate(per_axis)]
    assume(min(expected) >= 1 and min(onnx_out[2:]) >= 1)
    if list(onnx_out[2:]) != expected:  # ceil_mode corner: ONNX inference keeps a window starting in the padding
        assert ceil
        with pytest.raises(SpecError, match="ONNX shape inference keeps a last window"):
            rfsweep.from_onnx(model)
        return
    spec = rfsweep.from_onnx(model)
    r = table(spec)["layer"]
    for axis, layer in enumerate(per_axis):
        a = r.axes[axis]
        assert a.size == onnx_out[2 + axis] == expected[axis]
        support = naive.impulse_support([layer], size[axis])
        assert a.rf == max(max(px) - min(px) + 1 for px in support.values())
        assert (a.center - (a.rf - 1) / 2, a.center + (a.rf - 1) / 2) == naive.hull(support[0])
    lay = layers(spec)["layer"]
    if kind == "SAME_UPPER" and pad_node is None:
        assert lay["padding"] == "tf_same"  # recomputed at any input size, as auto_pad is
    assert lay.get("stride", 1) in (s, s[0])  # ONNX pools: stride 1 unless given


def test_conv_fields_params_and_bias():
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Conv", ["c1", "w2"], ["c2"], name="c2", kernel_shape=[3, 5], group=4, strides=[2, 1]),
            helper.make_node("Conv", ["c2", "w3"], ["c3"], name="c3", kernel_shape=[3, 3], dilations=[2, 2]),
        ],
        [weight("w1", 8, 3, 3, 3), weight("b1", 8), weight("w2", 16, 2, 3, 5), weight("w3", 4, 16, 3, 3)],
        size=(32, 24),
    )
    spec = rfsweep.from_onnx(model)
    lay = layers(spec)
    assert lay["c1"] == {"name": "c1", "op": "conv", "kernel": 3, "padding": 1, "channels": 8}
    assert lay["c2"] == {
        "name": "c2",
        "op": "conv",
        "kernel": [3, 5],
        "stride": [2, 1],
        "channels": 16,
        "groups": 4,
        "bias": False,
    }
    assert lay["c3"]["dilation"] == 2 and lay["c3"]["bias"] is False
    t = table(spec)
    assert t["c1"].params == 3 * 3 * 3 * 8 + 8 and t["c2"].params == 3 * 5 * 2 * 16 and t["c3"].params == 9 * 16 * 4
    shapes = inferred(model)
    assert (t["c3"].axes[0].size, t["c3"].axes[1].size) == shapes["c3"][2:]
    assert spec["input"] == {"size": [32, 24], "channels": 3}


def test_a_computed_zero_bias_is_no_bias_a_stored_one_counts():
    """torch's exporter feeds bias-free convs Expand(0); a stored bias counts even when it is all zeros."""
    model = make_model(
        [
            helper.make_node("Shape", ["w"], ["wshape"]),
            helper.make_node("Gather", ["wshape", "zero"], ["cout"], axis=0),
            helper.make_node("Unsqueeze", ["cout", "axis0"], ["cout1"]),
            helper.make_node("Expand", ["fzero", "cout1"], ["computed"]),
            helper.make_node("Conv", ["x", "w", "computed"], ["a"], name="a", kernel_shape=[1, 1]),
            helper.make_node("Conv", ["a", "w2", "stored"], ["b"], name="b", kernel_shape=[1, 1]),
        ],
        [
            weight("w", 4, 3, 1, 1),
            weight("w2", 4, 4, 1, 1),
            ints("zero", 0),
            ints("axis0", [0]),
            floats("fzero", 0.0),
            floats("stored", [0.0] * 4),
        ],
    )
    lay = layers(rfsweep.from_onnx(model))
    assert lay["a"]["bias"] is False and "bias" not in lay["b"]


def test_negative_pads_are_refused():
    """ONNX's own shape inference refuses negative Conv pads; the message stays one line."""
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="crop", kernel_shape=[3, 3], pads=[-1, 0, 0, 0])],
        [weight("w", 4, 3, 3, 3)],
    )
    with pytest.raises(SpecError) as err:
        rfsweep.from_onnx(model)
    assert "pads must not contain negative values" in str(err.value) and "\n" not in str(err.value)


def test_pad_node_folds_into_its_conv_and_pool():
    model = make_model(
        [
            helper.make_node("Pad", ["x", "p1"], ["xp"], name="pad1", mode="reflect"),
            helper.make_node("Conv", ["xp", "w"], ["c"], name="conv", kernel_shape=[3, 3], strides=[2, 2]),
            helper.make_node("Pad", ["c", "p2", "", "axes"], ["cp"], name="pad2"),
            helper.make_node("MaxPool", ["cp"], ["m"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        ],
        [weight("w", 4, 3, 3, 3), ints("p1", [0, 0, 0, 1, 0, 0, 1, 2]), ints("p2", [1, 0, 1, 1]), ints("axes", [2, 3])],
        size=(17, 16),
    )
    spec = rfsweep.from_onnx(model)
    lay = layers(spec)
    assert set(lay) == {"conv", "pool"}  # no layer for the Pads
    assert lay["conv"]["padding"] == [[0, 1], [1, 2]]
    assert lay["pool"]["padding"] == [[1, 1], [0, 1]]
    t, shapes = table(spec), inferred(model)
    assert (t["pool"].axes[0].size, t["pool"].axes[1].size) == shapes["m"][2:]


@pytest.mark.parametrize(
    "pads,why",
    [
        ([0, 0, -1, 0, 0, 0, 0, 0], "negative pads"),
        ([0, 1, 0, 0, 0, 0, 0, 0], "pads on the C axis"),
    ],
)
def test_bad_pads_are_refused(pads, why):
    model = make_model(
        [
            helper.make_node("Pad", ["x", "p"], ["xp"], name="pad"),
            helper.make_node("MaxPool", ["xp"], ["y"], name="pool", kernel_shape=[2, 2]),
        ],
        [ints("p", pads)],
    )
    with pytest.raises(SpecError, match=why):
        rfsweep.from_onnx(model)


def test_a_pad_that_feeds_no_conv_or_pool_is_refused():
    model = make_model(
        [helper.make_node("Pad", ["x", "p"], ["xp"], name="pad"), helper.make_node("Relu", ["xp"], ["y"], name="r")],
        [ints("p", [0, 0, 1, 1, 0, 0, 1, 1])],
    )
    with pytest.raises(SpecError, match=r"layer 'r'.*a Pad is folded into the Conv or pool that consumes it"):
        rfsweep.from_onnx(model)


def test_onnx_pools_default_to_stride_one_and_keep_ceil_mode():
    model = make_model(
        [
            helper.make_node("MaxPool", ["x"], ["a"], name="a", kernel_shape=[3, 3]),
            helper.make_node("AveragePool", ["a"], ["b"], name="b", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
            helper.make_node("MaxPool", ["b"], ["c"], name="c", kernel_shape=[2, 2], dilations=[2, 2]),
        ],
        size=(20, 20),
    )
    spec = rfsweep.from_onnx(model)
    lay = layers(spec)
    assert lay["a"] == {"name": "a", "op": "maxpool", "kernel": 3}
    assert lay["b"] == {"name": "b", "op": "avgpool", "kernel": 3, "stride": 2, "ceil_mode": True}
    assert lay["c"]["dilation"] == 2
    t, shapes = table(spec), inferred(model)
    assert t["a"].axes[0].rf == 3 and t["a"].axes[0].jump == 1
    assert t["b"].axes[0].size == shapes["b"][2] == 9 and t["c"].axes[0].size == shapes["c"][2]


def test_conv_transpose_pads_output_padding_and_output_shape():
    model = make_model(
        [
            helper.make_node(
                "ConvTranspose",
                ["x", "w1"],
                ["u1"],
                name="up1",
                kernel_shape=[4, 4],
                strides=[2, 2],
                pads=[1, 1, 1, 1],
            ),
            helper.make_node(
                "ConvTranspose",
                ["u1", "w2", "b2"],
                ["u2"],
                name="up2",
                kernel_shape=[3, 3],
                strides=[2, 2],
                pads=[1, 1, 1, 1],
                output_padding=[1, 1],
                group=2,
            ),
            helper.make_node(
                "ConvTranspose",
                ["u2", "w3"],
                ["u3"],
                name="up3",
                kernel_shape=[3, 3],
                strides=[2, 2],
                output_shape=[128, 128],
            ),
            helper.make_node(
                "ConvTranspose",
                ["u3", "w4"],
                ["u4"],
                name="up4",
                kernel_shape=[2, 2],
                strides=[2, 2],
                auto_pad="SAME_UPPER",
            ),
        ],
        [
            weight("w1", 3, 8, 4, 4),
            weight("w2", 8, 2, 3, 3),
            weight("b2", 4),
            weight("w3", 4, 4, 3, 3),
            weight("w4", 4, 4, 2, 2),
        ],
        size=(16, 16),
    )
    spec = rfsweep.from_onnx(model)
    lay, t, shapes = layers(spec), table(spec), inferred(model)
    assert lay["up1"] == {
        "name": "up1",
        "op": "deconv",
        "kernel": 4,
        "stride": 2,
        "padding": 1,
        "channels": 8,
        "bias": False,
    }
    assert lay["up2"]["output_padding"] == 1 and lay["up2"]["channels"] == 4 and lay["up2"]["groups"] == 2
    assert t["up2"].params == 3 * 3 * 4 * 4 + 4  # weight [8, 2, 3, 3] + bias
    # output_shape 128 from 64 with k3 s2: total padding 2*63 + 3 - 128 = 1, the larger half at the start
    assert lay["up3"]["padding"] == [[1, 0], [1, 0]]
    for name, tensor in (("up1", "u1"), ("up2", "u2"), ("up3", "u3"), ("up4", "u4")):
        assert (t[name].axes[0].size, t[name].axes[1].size) == shapes[tensor][2:]
    assert t["up1"].axes[0].jump == 0.5 and t["up1"].axes[0].rf == 2


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize(
    "attrs,mode",
    [
        ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, "nearest"),
        ({"mode": "nearest"}, "nearest"),  # half_pixel, round_prefer_floor: also floor(u/s) for integer scales
        ({"mode": "linear", "coordinate_transformation_mode": "half_pixel"}, "bilinear"),
        ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, "bilinear"),
    ],
)
def test_resize_integer_scales(attrs, mode):
    model = make_model(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", **attrs)],
        [floats("scales", [1, 1, 2, 3])],
        size=(8, 5),
    )
    spec = rfsweep.from_onnx(model)
    assert layers(spec)["up"] == {"name": "up", "op": "upsample", "scale": [2, 3], "mode": mode}
    r = table(spec)["up"]
    assert (r.axes[0].size, r.axes[1].size) == inferred(model)["y"][2:] == (16, 15)


def test_resize_by_sizes_and_the_old_upsample_op():
    by_sizes = make_model(
        [helper.make_node("Resize", ["x", "", "", "sizes"], ["a"], name="a", mode="nearest")],
        [ints("sizes", [1, 3, 16, 16])],
        size=(8, 8),
    )
    assert layers(rfsweep.from_onnx(by_sizes))["a"]["scale"] == 2
    upsample = make_model(
        [helper.make_node("Upsample", ["x", "scales"], ["b"], name="b", mode="nearest")],
        [floats("scales", [1, 1, 2, 2])],
        size=(8, 8),
        opset=9,
    )
    assert layers(rfsweep.from_onnx(upsample))["b"] == {"name": "b", "op": "upsample", "scale": 2, "mode": "nearest"}


@pytest.mark.parametrize(
    "attrs,scales,why",
    [
        ({"mode": "nearest", "coordinate_transformation_mode": "align_corners"}, [1, 1, 3, 3], "does not repeat"),
        ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 3, 3], "does not repeat"),
        ({"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 2, 2], "linear Resize"),
        ({"mode": "cubic"}, [1, 1, 2, 2], "cubic Resize"),
        ({"mode": "nearest"}, [1, 1, 1.5, 1.5], "integer scales"),
    ],
)
def test_resize_that_is_not_the_spec_upsample_is_refused(attrs, scales, why):
    model = make_model([helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", **attrs)], [floats("s", scales)])
    with pytest.raises(SpecError, match=why):
        rfsweep.from_onnx(model)


# --------------------------------------------------------------------------- merges and global layers


def branches(merge_op, second_pads=(1, 1, 1, 1), **merge_attrs):
    return make_model(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"], name="a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Conv", ["x", "w2"], ["b"], name="b", kernel_shape=[3, 3], pads=list(second_pads)),
            helper.make_node(merge_op, ["a", "b"], ["m"], name="m", **merge_attrs),
        ],
        [weight("w1", 4, 3, 3, 3), weight("w2", 4, 3, 3, 3)],
    )


@pytest.mark.parametrize("op,attrs,channels", [("Add", {}, 4), ("Sum", {}, 4), ("Concat", {"axis": 1}, 8)])
def test_merges(op, attrs, channels):
    lay = layers(rfsweep.from_onnx(branches(op, **attrs)))
    assert lay["m"]["op"] == ("concat" if op == "Concat" else "add") and lay["m"]["inputs"] == ["a", "b"]
    assert table(rfsweep.from_onnx(branches(op, **attrs)))["m"].channels == channels


def test_misaligned_merge_is_refused_naming_both_branches():
    with pytest.raises(SpecError) as err:
        rfsweep.from_onnx(branches("Add", second_pads=(2, 1, 0, 1)))
    msg = str(err.value)
    assert "layer 'm'" in msg and "'a'" in msg and "'b'" in msg and "not aligned" in msg and "\n" not in msg


def test_concat_along_a_spatial_axis_is_refused():
    with pytest.raises(SpecError, match="concatenates along channels; this Concat is along H"):
        rfsweep.from_onnx(branches("Concat", axis=2))


def classifier(pool_nodes, inits=(), opset=20):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], strides=[2, 2])]
    nodes += pool_nodes
    return make_model(nodes, [weight("w", 8, 3, 3, 3), *inits], size=(15, 15), opset=opset)


@pytest.mark.parametrize(
    "nodes,inits,opset,mode",
    [
        ([helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap")], [], 20, "avg"),
        ([helper.make_node("GlobalMaxPool", ["c"], ["g"], name="gap")], [], 20, "max"),
        ([helper.make_node("ReduceMean", ["c"], ["g"], name="gap", axes=[2, 3])], [], 13, "avg"),
        (
            [helper.make_node("ReduceMean", ["c", "ax"], ["g"], name="gap", keepdims=0)],
            [ints("ax", [-1, -2])],
            20,
            "avg",
        ),
        ([helper.make_node("ReduceMax", ["c", "ax"], ["g"], name="gap")], [ints("ax", [2, 3])], 20, "max"),
    ],
)
def test_global_pools(nodes, inits, opset, mode):
    model = classifier(nodes, inits, opset)
    lay, t = layers(rfsweep.from_onnx(model)), table(rfsweep.from_onnx(model))
    assert lay["gap"] == {"name": "gap", "op": "global_pool", "mode": mode}
    assert t["gap"].axes[0].whole and t["gap"].channels == 8


def test_a_reduction_over_channels_alone_is_refused():
    model = classifier([helper.make_node("ReduceMean", ["c"], ["g"], name="gap", axes=[1])], opset=13)
    with pytest.raises(SpecError, match=r"'g' is a statistic over the channels"):
        rfsweep.from_onnx(model)
    model = classifier([helper.make_node("ReduceMean", ["c"], ["g"], name="gap", axes=[1, 2])], opset=13)
    with pytest.raises(SpecError, match=r"layer 'gap'.*ReduceMean/ReduceMax over H and W \(a global pool\)"):
        rfsweep.from_onnx(model)


def test_l2_normalisation_over_channels_is_one_pointwise_layer():
    """F.normalize(x, dim=1) * scale (SSD's L2Norm), as torch exports it: ReduceL2, Clip, Expand, Div, Mul."""
    model = classifier(
        [
            helper.make_node("ReduceL2", ["c", "ax"], ["norm"], name="norm", keepdims=1),
            helper.make_node("Clip", ["norm", "eps"], ["clamped"], name="clamp_min"),
            helper.make_node("Expand", ["clamped", "shape"], ["wide"], name="expand"),
            helper.make_node("Div", ["c", "wide"], ["unit"], name="div"),
            helper.make_node("Mul", ["scale", "unit"], ["y"], name="mul"),
        ],
        [ints("ax", [1]), floats("eps", 1e-12), ints("shape", [1, 8, 7, 7]), floats("scale", np.ones((8, 1, 1)))],
    )
    spec = rfsweep.from_onnx(model)
    assert [(layer["name"], layer["op"]) for layer in spec["layers"]] == [
        ("conv", "conv"),
        ("div", "pointwise"),
        ("mul", "affine"),
    ]
    t = table(spec)
    assert t["div"].axes[0].rf == 3 and t["div"].channels == 8 and t["mul"].params == 8


def test_flatten_gemm_on_a_map_is_a_conv_with_the_maps_kernel():
    model = classifier(
        [
            helper.make_node("Flatten", ["c"], ["f"], name="flat", axis=1),
            helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["fc"], name="fc", transB=1),
            helper.make_node("Relu", ["fc"], ["r"], name="relu"),
            helper.make_node("Gemm", ["r", "fc2_w"], ["out"], name="fc2"),
        ],
        [weight("fc_w", 10, 8 * 7 * 7), weight("fc_b", 10), weight("fc2_w", 10, 5)],
    )
    spec = rfsweep.from_onnx(model)
    lay, t = layers(spec), table(spec)
    assert lay["fc"] == {"name": "fc", "op": "conv", "kernel": 7, "channels": 10}
    assert lay["fc2"] == {"name": "fc2", "op": "conv", "kernel": 1, "channels": 5, "bias": False}
    assert t["fc"].params == 8 * 49 * 10 + 10 and t["fc2"].params == 50
    assert t["fc2"].axes[0].rf == 3 + 6 * 2  # the whole 15-pixel input, exactly (not 'global')


def test_gap_reshape_matmul_add_is_a_linear_layer_with_its_bias():
    model = classifier(
        [
            helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
            helper.make_node("Reshape", ["g", "shape"], ["v"], name="view"),
            helper.make_node("MatMul", ["v", "fc_w"], ["mm"], name="fc"),
            helper.make_node("Add", ["mm", "fc_b"], ["logits"], name="fc_bias"),
            helper.make_node("Softmax", ["logits"], ["p"], name="softmax", axis=1),
        ],
        [ints("shape", [1, 8]), weight("fc_w", 8, 10), weight("fc_b", 10)],
    )
    spec = rfsweep.from_onnx(model)
    lay = layers(spec)
    assert set(lay) == {"conv", "gap", "fc", "softmax"}
    assert lay["fc"] == {"name": "fc", "op": "linear", "channels": 10}
    assert table(spec)["fc"].params == 90


# --------------------------------------------------------------------------- pointwise layers


def chain(*nodes, inits=(), channels=4, opset=20):
    first = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    return make_model(first + list(nodes), [weight("w", channels, 3, 3, 3), *inits], opset=opset)


@pytest.mark.parametrize(
    "node,inits,expected",
    [
        (helper.make_node("Relu", ["c"], ["y"], name="l"), [], {"op": "relu"}),
        (
            helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="l"),
            [floats("lo", 0), floats("hi", 6)],
            {"op": "relu6"},
        ),
        (helper.make_node("Clip", ["c", "lo"], ["y"], name="l"), [floats("lo", 0)], {"op": "relu"}),
        (
            helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="l"),
            [floats("lo", -1), floats("hi", 1)],
            {"op": "pointwise", "fn": "Clip"},
        ),
        (helper.make_node("Sigmoid", ["c"], ["y"], name="l"), [], {"op": "sigmoid"}),
        (helper.make_node("HardSigmoid", ["c"], ["y"], name="l"), [], {"op": "hardsigmoid"}),
        (helper.make_node("HardSwish", ["c"], ["y"], name="l"), [], {"op": "hardswish"}),
        (helper.make_node("LeakyRelu", ["c"], ["y"], name="l", alpha=0.1), [], {"op": "leaky_relu"}),
        (
            helper.make_node("PRelu", ["c", "slope"], ["y"], name="l"),
            [floats("slope", [[[0.1]]] * 4)],
            {"op": "prelu", "per_channel": True},
        ),
        (helper.make_node("PRelu", ["c", "slope"], ["y"], name="l"), [floats("slope", [0.25])], {"op": "prelu"}),
        (helper.make_node("Gelu", ["c"], ["y"], name="l"), [], {"op": "gelu"}),
        (helper.make_node("Tanh", ["c"], ["y"], name="l"), [], {"op": "tanh"}),
        (helper.make_node("Softmax", ["c"], ["y"], name="l", axis=1), [], {"op": "softmax"}),
        (helper.make_node("Dropout", ["c"], ["y"], name="l"), [], {"op": "dropout"}),
        (helper.make_node("Erf", ["c"], ["y"], name="l"), [], {"op": "pointwise", "fn": "Erf"}),
        (helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], name="l"), "bn", {"op": "bn"}),
        (
            helper.make_node("Mul", ["c", "k"], ["y"], name="l"),
            [floats("k", 0.5)],
            {"op": "affine", "weight": False, "bias": False},
        ),
        (
            helper.make_node("Mul", ["k", "c"], ["y"], name="l"),
            [floats("k", np.ones((4, 1, 1)))],
            {"op": "affine", "bias": False},
        ),
        (
            helper.make_node("Sub", ["c", "k"], ["y"], name="l"),
            [floats("k", np.ones((1, 4, 1, 1)))],
            {"op": "affine", "weight": False},
        ),
        (helper.make_node("Pow", ["c", "k"], ["y"], name="l"), [floats("k", 2.0)], {"op": "pointwise", "fn": "Pow"}),
    ],
)
def test_pointwise_ops(node, inits, expected):
    if inits == "bn":
        inits = [floats(n, np.ones(4)) for n in ("s", "b", "m", "v")]
    spec = rfsweep.from_onnx(chain(node, inits=inits))
    assert layers(spec)["l"] == {"name": "l", **expected}
    r = table(spec)["l"]
    assert r.axes[0].rf == 3 and r.channels == 4
    assert r.params == {"bn": 8, "affine": 4 * (expected.get("weight", True) + expected.get("bias", True))}.get(
        expected["op"], 4 if expected.get("per_channel") else (1 if expected["op"] == "prelu" else 0)
    )


def test_identity_cast_and_layout_nodes_make_no_layer():
    spec = rfsweep.from_onnx(
        chain(
            helper.make_node("Identity", ["c"], ["i"], name="identity"),
            helper.make_node("Cast", ["i"], ["k"], name="cast", to=TensorProto.FLOAT),
            helper.make_node("Relu", ["k"], ["y"], name="relu"),
        )
    )
    assert [layer["name"] for layer in spec["layers"]] == ["conv", "relu"]


def test_x_times_sigmoid_x_is_one_silu_and_hardsigmoid_one_hardswish():
    spec = rfsweep.from_onnx(
        chain(
            helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
            helper.make_node("Mul", ["c", "s"], ["silu"], name="act"),
            helper.make_node("HardSigmoid", ["silu"], ["h"], name="hsig", alpha=1 / 6, beta=0.5),
            helper.make_node("Mul", ["h", "silu"], ["y"], name="act2"),
        )
    )
    assert [(layer["name"], layer["op"]) for layer in spec["layers"]] == [
        ("conv", "conv"),
        ("act", "silu"),
        ("act2", "hardswish"),
    ]


def test_a_squeeze_excitation_block_is_a_gate():
    model = chain(
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="squeeze"),
        helper.make_node("Conv", ["g", "w1", "b1"], ["f1"], name="fc1", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["f1"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2", "b2"], ["f2"], name="fc2", kernel_shape=[1, 1]),
        helper.make_node("HardSigmoid", ["f2"], ["s"], name="scale_act"),
        helper.make_node("Mul", ["s", "c"], ["y"], name="excite"),
        helper.make_node("Conv", ["y", "w3"], ["z"], name="next", kernel_shape=[3, 3]),
        inits=[
            weight("w1", 2, 4, 1, 1),
            weight("b1", 2),
            weight("w2", 4, 2, 1, 1),
            weight("b2", 4),
            weight("w3", 4, 4, 3, 3),
        ],
    )
    spec = rfsweep.from_onnx(model)
    lay, t = layers(spec), table(spec)
    assert lay["excite"] == {"name": "excite", "op": "gate", "inputs": ["conv", "scale_act"]}
    assert lay["scale_act"]["op"] == "hardsigmoid"
    assert t["excite"].flags == ["gated"] and t["excite"].axes[0].rf == 3 and t["next"].axes[0].rf == 5
    assert t["fc1"].params == 4 * 2 + 2 and t["fc1"].macs == 8


def test_an_elementwise_product_of_two_maps_is_an_aligned_merge():
    lay = layers(rfsweep.from_onnx(branches("Mul")))
    assert lay["m"] == {"name": "m", "op": "pointwise", "inputs": ["a", "b"], "fn": "Mul"}
    with pytest.raises(SpecError, match=r"layer 'm'.*not aligned"):
        rfsweep.from_onnx(branches("Div", second_pads=(2, 1, 0, 1)))


def test_gelu_written_out_is_elementwise_layers_of_one_map():
    """x·0.5·(1 + erf(x/√2)), as exporters without a Gelu op write it: geometry of x throughout."""
    spec = rfsweep.from_onnx(
        chain(
            helper.make_node("Div", ["c", "sqrt2"], ["d"], name="div"),
            helper.make_node("Erf", ["d"], ["e"], name="erf"),
            helper.make_node("Add", ["e", "one"], ["f"], name="add"),
            helper.make_node("Mul", ["c", "f"], ["g"], name="mul"),
            helper.make_node("Mul", ["g", "half"], ["y"], name="mul_1"),
            inits=[floats("sqrt2", 2**0.5), floats("one", 1.0), floats("half", 0.5)],
        )
    )
    lay, t = layers(spec), table(spec)
    assert lay["mul"] == {"name": "mul", "op": "pointwise", "inputs": ["conv", "add"], "fn": "Mul"}
    assert t["mul_1"].axes[0].rf == 3 and t["mul_1"].params == 0 and t["mul_1"].channels == 4


def test_softmax_over_space_is_refused():
    with pytest.raises(SpecError, match="Softmax over a spatial axis"):
        rfsweep.from_onnx(chain(helper.make_node("Softmax", ["c"], ["y"], name="sm", axis=-1)))


# --------------------------------------------------------------------------- channels: splits, slices, blocks


def test_split_slice_and_channel_shuffle():
    model = chain(
        helper.make_node("Split", ["c", "sizes"], ["a", "b"], name="split", axis=1),
        helper.make_node("Conv", ["b", "wb"], ["b2"], name="branch", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["a", "b2"], ["cat"], name="cat", axis=1),
        helper.make_node("Reshape", ["cat", "s5"], ["r5"], name="view"),
        helper.make_node("Transpose", ["r5"], ["t5"], name="transpose", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t5", "s4"], ["shuffled"], name="view_1"),
        helper.make_node("Slice", ["shuffled", "st", "en", "ax"], ["half"], name="slice"),
        channels=8,
        inits=[
            ints("sizes", [2, 6]),
            weight("wb", 6, 6, 3, 3),
            ints("s5", [1, 2, 4, 16, 16]),
            ints("s4", [1, 8, 16, 16]),
            ints("st", [4]),
            ints("en", [100]),
            ints("ax", [1]),
        ],
    )
    spec = rfsweep.from_onnx(model)
    lay, t = layers(spec), table(spec)
    assert lay["split"] == {"name": "split", "op": "slice", "stop": 2}  # reads the layer before it
    assert lay["split_1"] == {"name": "split_1", "op": "slice", "start": 2, "stop": 8, "inputs": ["conv"]}
    assert "view" not in lay and "transpose" not in lay  # the shuffle only permutes channels
    assert lay["slice"]["start"] == 4 and lay["slice"]["stop"] == 8 and t["slice"].channels == 4
    assert t["slice"].axes[0].rf == 5  # the branch's conv reaches it


def test_split_with_num_outputs_opset_18():
    model = chain(helper.make_node("Split", ["c"], ["a", "b"], name="split", axis=1, num_outputs=2), opset=18)
    lay = layers(rfsweep.from_onnx(model))
    assert (lay["split"]["stop"], lay["split_1"]["start"], lay["split_1"]["stop"]) == (2, 2, 4)


def test_space_to_depth_and_depth_to_space():
    model = chain(
        helper.make_node("SpaceToDepth", ["c"], ["s"], name="s2d", blocksize=2),
        helper.make_node("DepthToSpace", ["s"], ["d"], name="d2s", blocksize=2, mode="CRD"),
    )
    spec = rfsweep.from_onnx(model)
    t, shapes = table(spec), inferred(model)
    assert layers(spec)["s2d"] == {"name": "s2d", "op": "space_to_depth", "block": 2}
    assert t["s2d"].channels == 16 and (t["s2d"].axes[0].size, t["s2d"].axes[0].rf) == (8, 4)
    assert (t["d2s"].channels, t["d2s"].axes[0].size) == (shapes["d"][1], shapes["d"][2]) == (4, 16)


def test_channels_last_layernorm_and_linear_are_pointwise():
    """ConvNeXt's block: permute to NHWC, LayerNorm, Linear (MatMul + Add), permute back, layer scale."""
    model = make_model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Transpose", ["c"], ["nhwc"], name="permute", perm=[0, 2, 3, 1]),
            helper.make_node("LayerNormalization", ["nhwc", "g", "b"], ["ln"], name="norm", axis=-1),
            helper.make_node("MatMul", ["ln", "w1"], ["mm"], name="pwconv1"),
            helper.make_node("Add", ["mm", "b1"], ["lin"], name="pwconv1_bias"),
            helper.make_node("Transpose", ["lin"], ["nchw"], name="permute_1", perm=[0, 3, 1, 2]),
            helper.make_node("Mul", ["gamma", "nchw"], ["y"], name="layer_scale"),
        ],
        [
            weight("w", 4, 3, 3, 3),
            floats("g", np.ones(4)),
            floats("b", np.zeros(4)),
            weight("w1", 4, 16),
            weight("b1", 16),
            floats("gamma", np.ones((16, 1, 1))),
        ],
    )
    spec = rfsweep.from_onnx(model)
    lay, t = layers(spec), table(spec)
    assert [layer["name"] for layer in spec["layers"]] == ["conv", "norm", "pwconv1", "layer_scale"]
    assert lay["norm"] == {"name": "norm", "op": "layernorm"}
    assert lay["pwconv1"] == {"name": "pwconv1", "op": "conv", "kernel": 1, "channels": 16}
    assert t["norm"].params == 8 and t["pwconv1"].params == 4 * 16 + 16 and t["layer_scale"].params == 16
    assert t["layer_scale"].axes[0].rf == 3


def test_layernorm_over_the_map_is_refused():
    model = chain(
        helper.make_node("LayerNormalization", ["c", "g"], ["y"], name="ln", axis=1),
        inits=[floats("g", np.ones((4, 16, 16)))],
    )
    with pytest.raises(SpecError, match="LayerNormalization over C,H,W depends on the whole map"):
        rfsweep.from_onnx(model)


# --------------------------------------------------------------------------- what is refused, and how


def test_an_unknown_op_is_one_line_naming_node_op_and_shapes():
    model = chain(
        helper.make_node("InstanceNormalization", ["c", "s", "b"], ["y"], name="inorm"),
        inits=[floats("s", np.ones(4)), floats("b", np.zeros(4))],
    )
    with pytest.raises(SpecError) as err:
        rfsweep.from_onnx(model)
    msg = str(err.value)
    assert msg.startswith("layer 'inorm': field 'op': value \"InstanceNormalization\": rfsweep does not know")
    assert "inputs [1, 4, 16, 16], [4], [4], outputs [1, 4, 16, 16]" in msg and "\n" not in msg


def test_an_op_of_another_domain_is_refused():
    node = helper.make_node("FusedConv", ["c"], ["y"], name="fused", domain="com.microsoft")
    model = chain(node)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(SpecError, match=r"layer 'fused': field 'op': value \"FusedConv\""):
        rfsweep.from_onnx(model)


def test_input_size_reinfers_and_symbolic_sizes_need_it():
    nodes = [
        helper.make_node(
            "Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"
        ),
        helper.make_node("GlobalAveragePool", ["c"], ["y"], name="gap"),
    ]
    model = make_model(nodes, [weight("w", 4, 3, 3, 3)], dims=["batch", 3, "height", "width"])
    with pytest.raises(SpecError, match=r"field 'input-size'.*no fixed height and width; give one"):
        rfsweep.from_onnx(model)
    spec = rfsweep.from_onnx(model, input_size="33x20")
    assert spec["input"]["size"] == [33, 20]
    assert layers(spec)["conv"]["padding"] == [[1, 1], [1, 0]]  # SAME_LOWER at 33x20: the odd pixel at the start
    assert table(spec)["conv"].axes[0].size == 17 and table(spec)["conv"].axes[1].size == 10
    fixed = rfsweep.from_onnx(make_model(nodes, [weight("w", 4, 3, 3, 3)], size=(16, 16)), input_size=64)
    assert fixed["input"]["size"] == 64 and table(fixed)["conv"].axes[0].size == 32


def test_a_size_baked_into_a_reshape_stops_other_input_sizes():
    model = classifier(
        [
            helper.make_node("Reshape", ["c", "shape"], ["f"], name="flatten"),
            helper.make_node("Gemm", ["f", "fc_w"], ["y"], name="fc", transB=1),
        ],
        [ints("shape", [1, 8 * 7 * 7]), weight("fc_w", 10, 8 * 7 * 7)],
    )
    assert layers(rfsweep.from_onnx(model))["fc"]["kernel"] == 7
    with pytest.raises(SpecError) as err:
        rfsweep.from_onnx(model, input_size=31)
    assert "a size baked into the model at export" in str(err.value) and "'flatten'" in str(err.value)


def test_layer_names_node_names_outputs_and_duplicates():
    model = chain(
        helper.make_node("Relu", ["c"], ["r1"], name="act"),
        helper.make_node("Relu", ["r1"], ["r2"], name="act"),
        helper.make_node("Relu", ["r2"], ["unnamed_out"]),
        helper.make_node("Relu", ["unnamed_out"], ["y"], name="input"),
    )
    assert [layer["name"] for layer in rfsweep.from_onnx(model)["layers"]] == [
        "conv",
        "act",
        "act_1",
        "unnamed_out",
        "input_1",
    ]


def test_torch_name_scopes_give_module_names():
    model = chain(
        helper.make_node("Relu", ["c"], ["r1"], name="node_relu"),
        helper.make_node("Add", ["r1", "c"], ["y"], name="node_add"),
    )
    for node, scopes, classes in (
        (
            model.graph.node[1],
            "['', 'block', 'block.act', 'relu']",
            "['M', 'B', 'torch.nn.modules.activation.ReLU', 'aten.relu']",
        ),
        (model.graph.node[2], "['', 'block', 'add_3']", "['M', 'B', 'aten.add.Tensor']"),
    ):
        node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=scopes)
        node.metadata_props.add(key="pkg.torch.onnx.class_hierarchy", value=classes)
    assert [layer["name"] for layer in rfsweep.from_onnx(model)["layers"]] == ["conv", "block.act", "block.add"]


def test_files_that_are_not_onnx_models(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00\x01\x02 not a protobuf \xff\xfe")
    with pytest.raises(SpecError, match=r"field 'file'.*is not an ONNX model"):
        rfsweep.from_onnx(bad)
    with pytest.raises(SpecError, match=r"field 'file'.*no such file"):
        rfsweep.from_onnx(tmp_path / "missing.onnx")


def test_missing_onnx_is_one_line_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(SpecError, match=r"pip install 'rfsweep\[onnx\]'"):
        rfsweep.from_onnx("whatever.onnx")


def test_a_model_with_two_inputs_is_refused():
    model = chain(helper.make_node("Relu", ["c"], ["y"], name="r"))
    model.graph.input.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))
    with pytest.raises(SpecError, match="exactly one \\(image\\) input"):
        rfsweep.from_onnx(model)


def test_spec_round_trips_through_a_file(tmp_path):
    model = classifier([helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap")])
    path = tmp_path / "net.onnx"
    onnx.save(model, path)
    spec = rfsweep.from_onnx(path)
    assert spec["name"] == "net" and spec["source"].startswith("ONNX net.onnx (opset 20")
    a, b = rfsweep.analyze(path), rfsweep.analyze(spec)
    assert a.equals(b)
    assert sum(a["params"]) == 8 * 27  # the conv has no bias input
