"""ONNX ops that change the geometry -> spec layers: Conv, ConvTranspose, pools, global pools and
ReduceMean/Max over H and W, Pad (folded into the Conv or pool that consumes it), Resize/Upsample, the
adaptive pool torch's exporter writes for us, SpaceToDepth/DepthToSpace."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rfsweep.network.importers.onnx_walk import NCHW, Translator, Val, attrs, padding_value, pair_value


def conv(t: Translator, node):
    x = t.map_input(node, allow_pad=True)
    w = t.shape(node.input[1])
    if len(w) != 4:
        t.refuse(f"rfsweep reads 2-D convolutions; this weight has shape {list(w)}")
    a = attrs(node)
    kernel = list(a.get("kernel_shape", w[2:]))
    strides, dilations = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    pads = t.pads(node, x, kernel, strides, dilations, a)
    fields: dict[str, Any] = {"kernel": pair_value(kernel)}
    if strides != [1, 1]:
        fields["stride"] = pair_value(strides)
    if dilations != [1, 1]:
        fields["dilation"] = pair_value(dilations)
    padding = pads if isinstance(pads, str) else padding_value(pads)
    if padding != 0:
        fields["padding"] = padding
    fields["channels"] = w[0]
    if a.get("group", 1) != 1:
        fields["groups"] = a["group"]
    if not t.has_bias(node, 2):
        fields["bias"] = False
    name = t.emit(node, "conv", [x], node.output[0], **fields)
    t.set(node.output[0], Val(name, NCHW, whole=x.whole))


def conv_transpose(t: Translator, node):
    x = t.map_input(node)
    w = t.shape(node.input[1])
    if len(w) != 4:
        t.refuse(f"rfsweep reads 2-D transposed convolutions; this weight has shape {list(w)}")
    a = attrs(node)
    group = a.get("group", 1)
    kernel = list(a.get("kernel_shape", w[2:]))
    strides, dilations = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    out_pad = list(a.get("output_padding", [0, 0]))
    auto = a.get("auto_pad", "NOTSET")
    pads = list(a.get("pads", [0, 0, 0, 0]))
    sizes = t.spatial(x, node.input[0])
    if "output_shape" in a or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = list(a["output_shape"])[-2:] if "output_shape" in a else [n * s for n, s in zip(sizes, strides)]
        pads = [0, 0, 0, 0]
        for axis in range(2):  # ONNX's rule: total padding from the output shape, the odd one by auto_pad
            k_eff = dilations[axis] * (kernel[axis] - 1) + 1
            total = strides[axis] * (sizes[axis] - 1) + out_pad[axis] + k_eff - target[axis]
            if total < 0:
                t.refuse(f"output_shape {target} needs negative padding")
            small, large = total // 2, total - total // 2
            pads[axis], pads[axis + 2] = (small, large) if auto == "SAME_UPPER" else (large, small)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    if any(p < 0 for p in pads):
        t.refuse(f"negative pads {pads}")
    fields: dict[str, Any] = {"kernel": pair_value(kernel), "stride": pair_value(strides)}
    if dilations != [1, 1]:
        fields["dilation"] = pair_value(dilations)
    padding = padding_value([(pads[0], pads[2]), (pads[1], pads[3])])
    if padding != 0:
        fields["padding"] = padding
    if out_pad != [0, 0]:
        fields["output_padding"] = pair_value(out_pad)
    fields["channels"] = w[1] * group
    if group != 1:
        fields["groups"] = group
    if not t.has_bias(node, 2):
        fields["bias"] = False
    name = t.emit(node, "deconv", [x], node.output[0], **fields)
    t.set(node.output[0], Val(name, NCHW))


def pool(t: Translator, node):
    x = t.map_input(node, allow_pad=True)
    a = attrs(node)
    op = "maxpool" if node.op_type == "MaxPool" else "avgpool"
    kernel = list(a["kernel_shape"])
    strides, dilations = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))  # ONNX: stride 1
    if op == "avgpool" and dilations != [1, 1]:
        t.refuse("a dilated AveragePool has no spec form")
    pads = t.pads(node, x, kernel, strides, dilations, a)
    fields: dict[str, Any] = {"kernel": pair_value(kernel)}
    if strides != [1, 1]:
        fields["stride"] = pair_value(strides)
    if dilations != [1, 1]:
        fields["dilation"] = pair_value(dilations)
    padding = pads if isinstance(pads, str) else padding_value(pads)
    if padding != 0:
        fields["padding"] = padding
    if a.get("ceil_mode", 0):
        fields["ceil_mode"] = True
    name = t.emit(node, op, [x], node.output[0], **fields)
    t.set(node.output[0], Val(name, NCHW, whole=x.whole))


def global_pool(t: Translator, node):
    x = t.get(node.input[0])
    if "H" not in x.roles:
        t.refuse("a global pool needs the spatial axes")
    mode = "max" if "Max" in node.op_type else "avg"
    name = t.emit(node, "global_pool", [x], node.output[0], mode=mode)
    t.set(node.output[0], Val(name, x.roles, whole=True))


def reduce(t: Translator, node):
    x = t.get(node.input[0], allow_stat=True)
    a = attrs(node)
    rank = len(x.roles)
    if "axes" in a:
        axes = list(a["axes"])
    elif len(node.input) > 1 and node.input[1]:
        axes = t.m.ints(node.input[1])
    else:
        axes = [] if a.get("noop_with_empty_axes", 0) else list(range(rank))
    axes = sorted({v % rank for v in axes})
    roles = {x.roles[i] for i in axes}
    keep = a.get("keepdims", 1)
    out_roles = x.roles if keep else tuple(r for i, r in enumerate(x.roles) if i not in axes)
    if not axes or (x.whole and not roles & {"N", "C"}):  # a global vector pooled again
        t.set(node.output[0], replace(x, roles=out_roles))
        return
    if roles == {"C"} and keep and x.stat is None and not x.whole:  # per unit, over the channels: no layer yet
        t.set(node.output[0], replace(x, stat=x.layer, bias_open=False))
        return
    if roles != {"H", "W"} or node.op_type not in ("ReduceMean", "ReduceMax"):
        t.refuse(
            f"rfsweep reads ReduceMean/ReduceMax over H and W (a global pool), or a reduction over the channels "
            f"divided back into its map; these axes are {axes}"
        )
    mode = "max" if node.op_type == "ReduceMax" else "avg"
    name = t.emit(node, "global_pool", [x], node.output[0], mode=mode)
    t.set(node.output[0], Val(name, out_roles, whole=True))


def pad(t: Translator, node):
    x = t.get(node.input[0], allow_pad=True)
    a = attrs(node)
    if "pads" in a:
        pads = list(a["pads"])
    else:
        if not t.m.is_const(node.input[1]):
            t.refuse("pads that depend on the input")
        pads = t.m.ints(node.input[1])
    rank = len(x.roles)
    axes = list(range(rank))
    if len(node.input) > 3 and node.input[3]:
        axes = [v % rank for v in t.m.ints(node.input[3])]
    begin, end = pads[: len(axes)], pads[len(axes) :]
    if any(p < 0 for p in pads):
        t.refuse(f"negative pads {pads} crop the map")
    extra = {"H": [0, 0], "W": [0, 0]}
    for axis, b, e in zip(axes, begin, end):
        role = x.roles[axis]
        if role in extra:
            extra[role] = [b, e]
        elif b or e:
            t.refuse(f"pads on the {role} axis")
    old = x.pad or ((0, 0), (0, 0))
    new = tuple((o[0] + e[0], o[1] + e[1]) for o, e in zip(old, (extra["H"], extra["W"])))
    t.set(node.output[0], replace(x, pad=new))


def _nearest_source(mode: str, nearest: str, u: int, scale: int, n_in: int, n_out: int) -> int:
    """ONNX Resize's source index for output ``u`` (nearest), clamped as the operator does."""
    from fractions import Fraction

    if mode in ("half_pixel", "half_pixel_symmetric") or (mode == "pytorch_half_pixel" and n_out > 1):
        x = Fraction(2 * u + 1, 2 * scale) - Fraction(1, 2)
    elif mode == "asymmetric":
        x = Fraction(u, scale)
    elif mode == "tf_half_pixel_for_nn":
        x = Fraction(2 * u + 1, 2 * scale)
    elif mode == "align_corners":
        x = Fraction(u * (n_in - 1), max(n_out - 1, 1))
    else:
        x = Fraction(0)
    fl = x.numerator // x.denominator
    frac = x - fl
    if nearest == "floor":
        i = fl
    elif nearest == "ceil":
        i = fl + (frac > 0)
    elif nearest == "round_prefer_ceil":
        i = fl + (frac >= Fraction(1, 2))
    else:  # round_prefer_floor
        i = fl + (frac > Fraction(1, 2))
    return min(max(i, 0), n_in - 1)


def resize(t: Translator, node):
    x = t.map_input(node)
    a = attrs(node)
    shape_in, shape_out = t.shape(node.input[0]), t.shape(node.output[0])
    if shape_in[:2] != shape_out[:2]:
        t.refuse("a Resize that changes the batch or the channels")
    scales = []
    for n_in, n_out in zip(shape_in[2:], shape_out[2:]):
        if n_out % n_in:
            t.refuse(f"a Resize from {list(shape_in[2:])} to {list(shape_out[2:])}: rfsweep reads integer scales")
        scales.append(n_out // n_in)
    mode = a.get("mode", "nearest")
    if node.op_type == "Upsample":
        coord, nearest = "asymmetric", "floor"
    else:
        coord = a.get("coordinate_transformation_mode", "half_pixel")
        nearest = a.get("nearest_mode", "round_prefer_floor")
    if mode == "nearest":
        for (n_in, n_out), s in zip(zip(shape_in[2:], shape_out[2:]), scales):
            units = range(n_out)
            if any(_nearest_source(coord, nearest, u, s, n_in, n_out) != u // s for u in units):
                t.refuse(
                    f"nearest Resize with coordinate_transformation_mode={coord}, nearest_mode={nearest} does not "
                    "repeat each unit (PyTorch's nearest, the spec's upsample)"
                )
        op_mode = "nearest"
    elif mode == "linear" and coord in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric"):
        op_mode = "bilinear"
    else:
        t.refuse(f"a {mode} Resize with coordinate_transformation_mode={coord} (rfsweep reads linear with half_pixel)")
    name = t.emit(node, "upsample", [x], node.output[0], scale=pair_value(scales), mode=op_mode)
    t.set(node.output[0], Val(name, NCHW))


def adaptive(t: Translator, node):
    """rfsweep.AdaptiveAvgPool2d, written by :mod:`rfsweep.network.importers.torch_module` for nn.AdaptiveAvgPool2d."""
    if node.domain != "rfsweep":
        t.refuse(f"an op of domain '{node.domain}'")
    x = t.map_input(node)
    name = t.emit(node, "adaptive_avgpool", [x], node.output[0], output=pair_value(attrs(node)["output_size"]))
    t.set(node.output[0], Val(name, NCHW, whole=x.whole))


def block(t: Translator, node):
    x = t.map_input(node)
    op = "space_to_depth" if node.op_type == "SpaceToDepth" else "depth_to_space"
    name = t.emit(node, op, [x], node.output[0], block=attrs(node)["blocksize"])
    t.set(node.output[0], Val(name, NCHW))


GEOMETRY = {
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "MaxPool": pool,
    "AveragePool": pool,
    "GlobalAveragePool": global_pool,
    "GlobalMaxPool": global_pool,
    "ReduceMean": reduce,
    "ReduceMax": reduce,
    "ReduceMin": reduce,
    "ReduceSum": reduce,
    "ReduceL1": reduce,
    "ReduceL2": reduce,
    "ReduceSumSquare": reduce,
    "Pad": pad,
    "Resize": resize,
    "Upsample": resize,
    "AdaptiveAvgPool2d": adaptive,
    "SpaceToDepth": block,
    "DepthToSpace": block,
}
