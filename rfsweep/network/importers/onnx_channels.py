"""ONNX ops that keep the geometry -> spec layers (or none): activations and normalisations, elementwise
ops with constants (affine, pointwise), merges (Add, Sum, Concat), x·sigmoid(x), gates, layout nodes,
Gemm/MatMul, channel splits and slices."""

from __future__ import annotations

from dataclasses import replace
from math import prod
from typing import Any

import numpy as np

from rfsweep.network.importers.onnx_walk import NCHW, Translator, Val, attrs, pair_value

UNARY = {
    "Relu": "relu",
    "Tanh": "tanh",
    "HardSwish": "hardswish",
    "LeakyRelu": "leaky_relu",
    "Elu": "elu",
    "Gelu": "gelu",
    "Dropout": "dropout",
    "LRN": "lrn",
}

ELEMENTWISE = {
    "Abs",
    "Ceil",
    "Celu",
    "Cos",
    "Erf",
    "Exp",
    "Floor",
    "Log",
    "Mish",
    "Neg",
    "Reciprocal",
    "Round",
    "Selu",
    "Shrink",
    "Sign",
    "Sin",
    "Softplus",
    "Softsign",
    "Sqrt",
    "ThresholdedRelu",
}

LAYOUT = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Cast", "CastLike"}


def unary(t: Translator, node):
    x = t.get(node.input[0], allow_stat=True)
    if x.stat is not None:  # an elementwise function of a channel statistic stays one (no layer)
        t.set(node.output[0], x)
        return
    op = UNARY.get(node.op_type)
    fields = {} if op else {"fn": node.op_type}
    name = t.emit(node, op or "pointwise", [x], node.output[0], **fields)
    t.set(node.output[0], replace(x, layer=name, bias_open=False))


def deferred(t: Translator, node):
    """Sigmoid/HardSigmoid: emitted when something reads them, or fused with x into silu/hardswish."""
    x = t.get(node.input[0])
    op = "sigmoid" if node.op_type == "Sigmoid" else "hardsigmoid"
    t.set(node.output[0], replace(x, act=(op, node.input[0], node), bias_open=False))


def clip(t: Translator, node):
    x = t.get(node.input[0], allow_stat=True)
    if x.stat is not None:  # clamp_min(||x||, eps) of F.normalize
        t.set(node.output[0], x)
        return
    a = attrs(node)
    bounds = []
    for index, key in ((1, "min"), (2, "max")):
        if len(node.input) > index and node.input[index]:
            if not t.m.is_const(node.input[index]):
                t.refuse("a Clip bound that depends on the input")
            bounds.append(float(np.asarray(t.m.value(node.input[index])).ravel()[0]))
        else:
            bounds.append(a.get(key))
    lo, hi = bounds
    if lo == 0 and hi == 6:
        op, fields = "relu6", {}
    elif lo == 0 and (hi is None or hi == float("inf")):
        op, fields = "relu", {}
    else:
        op, fields = "pointwise", {"fn": "Clip"}
    name = t.emit(node, op, [x], node.output[0], **fields)
    t.set(node.output[0], replace(x, layer=name, bias_open=False))


def prelu(t: Translator, node):
    x = t.get(node.input[0])
    slopes = prod(t.shape(node.input[1]))
    fields = {"per_channel": True} if slopes > 1 else {}
    name = t.emit(node, "prelu", [x], node.output[0], **fields)
    t.set(node.output[0], replace(x, layer=name, bias_open=False))


def softmax(t: Translator, node):
    x = t.get(node.input[0])
    a = attrs(node)
    axis = a.get("axis", -1 if t.m.opset >= 13 else 1) % len(x.roles)
    if x.roles[axis] != "C" and not x.whole:
        t.refuse(f"a Softmax over a spatial axis ({x.roles[axis]}) mixes the map")
    name = t.emit(node, "softmax", [x], node.output[0])
    t.set(node.output[0], replace(x, layer=name, bias_open=False))


def batchnorm(t: Translator, node):
    x = t.get(node.input[0])
    if x.roles[1] != "C" or (x.flat is not None and x.flat[1] * x.flat[2] > 1):
        t.refuse("a BatchNormalization over a flattened map (BatchNorm1d on C·H·W features) has no spec form")
    name = t.emit(node, "bn", [x], node.output[0])
    t.set(node.output[0], replace(x, layer=name, bias_open=False))


def layernorm(t: Translator, node):
    x = t.get(node.input[0])
    axis = attrs(node).get("axis", -1) % len(x.roles)
    if any(r != "C" for r in x.roles[axis:]) and not x.whole:
        t.refuse(
            f"a LayerNormalization over {','.join(x.roles[axis:])} depends on the whole map "
            "(over the channels alone it is a layernorm)"
        )
    fields = {} if len(node.input) > 2 and node.input[2] else {"bias": False}
    name = t.emit(node, "layernorm", [x], node.output[0], **fields)
    t.set(node.output[0], replace(x, layer=name, bias_open=False))


def _per_channel(t: Translator, x: Val, out: str, const: str) -> str:
    """'scalar', 'channel' (varies along the channels only) for a constant broadcast against ``x``."""
    shape = t.shape(const)
    if prod(shape) == 1:
        return "scalar"
    full = (1,) * (len(x.roles) - len(shape)) + tuple(shape)
    varying = [i for i, n in enumerate(full) if n > 1]
    if len(full) == len(x.roles) and all(x.roles[i] == "C" for i in varying) and x.flat is None:
        return "channel"
    if x.flat is not None and len(full) == 2 and varying == [1] and full[1] == prod(x.flat) and x.flat[1:] == (1, 1):
        return "channel"
    if x.whole:
        return "channel"
    t.refuse(f"a constant of shape {list(shape)} varies over the map (a positional term has no spec form)")
    return ""


def binary(t: Translator, node):
    op = node.op_type
    dynamic = [i for i in node.input if i and not t.m.is_const(i)]
    if len(dynamic) == 1:
        x = t.get(dynamic[0], allow_stat=True)
        if x.stat is not None:  # eps added to a channel statistic, a power of it: still a statistic
            t.set(node.output[0], x)
            return
        const = next(i for i in node.input if i and i != dynamic[0])
        kind = _per_channel(t, x, node.output[0], const)
        if op == "Add" and x.bias_open and kind == "channel":
            layer = next(layer for layer in t.layers if layer["name"] == x.layer)
            layer.pop("bias", None)  # the MatMul's bias: true is the spec's default
            t.set(node.output[0], replace(x, bias_open=False))
            return
        if op in ("Add", "Sub", "Mul", "Div"):
            fields = {"weight": False, "bias": False}
            if kind == "channel":
                fields = {"weight": False} if op in ("Add", "Sub") else {"bias": False}
            name = t.emit(node, "affine", [x], node.output[0], **fields)
        else:
            name = t.emit(node, "pointwise", [x], node.output[0], fn=op)
        t.set(node.output[0], replace(x, layer=name, bias_open=False))
        return
    if len(dynamic) == 2 and op in ("Div", "Mul", "Sub", "Add"):  # x / ||x||: a per-unit normalisation
        raw = [t.vals.get(i) for i in dynamic]
        for k in range(2):
            if raw[k] is not None and raw[k].stat is not None and raw[1 - k] is not None and raw[1 - k].stat is None:
                x = t.get(dynamic[1 - k])
                if raw[k].stat == x.layer:
                    name = t.emit(node, "pointwise", [x], node.output[0], fn=f"{op} by a statistic over channels")
                    t.set(node.output[0], replace(x, layer=name, bias_open=False))
                    return
    if op in ("Add", "Sum"):
        vals = [t.get(i) for i in dynamic]
        shapes = {t.shape(i) for i in dynamic}
        if len(shapes) != 1:
            t.refuse("an Add that broadcasts one map over another has no spec form")
        name = t.emit(node, "add", vals, node.output[0])
        t.set(node.output[0], replace(vals[0], layer=name, bias_open=False, whole=all(v.whole for v in vals)))
        return
    if op == "Mul" and len(dynamic) == 2:
        raw = [t.vals.get(i) for i in dynamic]
        for k in range(2):  # x·Sigmoid(x) = silu, x·HardSigmoid(x) = hardswish
            other = dynamic[1 - k]
            if raw[k] is not None and raw[k].act is not None and raw[k].act[1] == other:
                x = t.get(other)
                name = t.emit(node, "silu" if raw[k].act[0] == "sigmoid" else "hardswish", [x], node.output[0])
                t.set(node.output[0], replace(x, layer=name, bias_open=False))
                return
        vals = [t.get(i) for i in dynamic]
        shapes = [t.shape(i) for i in dynamic]
        out = t.shape(node.output[0])
        order = [k for k in range(2) if shapes[k] == out]
        if order:
            k = order[0]
            x, g = vals[k], vals[1 - k]
            if g.whole and (not x.whole or shapes[k] != shapes[1 - k]):
                name = t.emit(node, "gate", [x, g], node.output[0])
                t.set(node.output[0], replace(x, layer=name, bias_open=False))
                return
    vals = [t.get(i) for i in dynamic]
    shapes = [t.shape(i) for i in dynamic]
    if len(vals) == 2 and shapes[0] == shapes[1] and not any(v.whole for v in vals):
        # each unit of the result reads the two units at its position: the geometry of an aligned merge
        # (the analyzer checks the alignment and names both branches when it fails)
        name = t.emit(node, "pointwise", vals, node.output[0], fn=op)
        t.set(node.output[0], replace(vals[0], layer=name, bias_open=False))
        return
    t.refuse(f"an elementwise {op} of maps of different shapes (a broadcast rfsweep does not read)")


def concat(t: Translator, node):
    vals = [t.get(i) for i in node.input]
    if len(vals) == 1:
        t.set(node.output[0], vals[0])
        return
    axis = attrs(node)["axis"] % len(vals[0].roles)
    if any(v.roles[axis] != "C" for v in vals):
        t.refuse(f"rfsweep concatenates along channels; this Concat is along {vals[0].roles[axis]}")
    name = t.emit(node, "concat", vals, node.output[0])
    t.set(node.output[0], replace(vals[0], layer=name, bias_open=False, whole=all(v.whole for v in vals)))


def _whole_roles(shape: tuple[int, ...]) -> tuple[str, ...]:
    """Roles of a global vector after any relayout: its one dimension > 1 is the channels."""
    big = [i for i, n in enumerate(shape) if n > 1]
    channel = big[0] if len(big) == 1 else (1 if len(shape) > 1 else 0)
    ones = iter(("N", "H", "W") if len(shape) == 4 else ("N", "S", "S", "S"))
    return tuple("C" if i == channel else next(ones, "S") for i in range(len(shape)))


def _match(roles, shape_in, shape_out):
    """Roles of ``shape_out`` when a reshape only regroups channel dimensions (N, H, W kept), else None."""
    runs: list[list] = []
    for r, n in zip(roles, shape_in):
        if r == "C" and runs and runs[-1][0] == "C":
            runs[-1][1] *= n
        else:
            runs.append([r, n])
    out, i = [], 0
    for k, (r, n) in enumerate(runs):
        if r != "C":
            if i >= len(shape_out) or shape_out[i] != n:
                return None
            out.append(r)
            i += 1
            continue
        size = 1
        start = i
        while i < len(shape_out) and (size < n or i == start):
            size *= shape_out[i]
            out.append("C")
            i += 1
        if size != n:
            return None
        following = runs[k + 1][1] if k + 1 < len(runs) else None
        while i < len(shape_out) and shape_out[i] == 1 and following != 1:
            out.append("C")
            i += 1
    return tuple(out) if i == len(shape_out) else None


def layout(t: Translator, node):
    """Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Identity, Cast: no layer, the roles follow."""
    x = t.get(node.input[0], allow_pad=node.op_type in ("Identity", "Cast"))
    out = node.output[0]
    if node.op_type in ("Identity", "Cast", "CastLike"):
        t.set(out, x)
        return
    shape_in, shape_out = t.shape(node.input[0]), t.shape(out)
    if prod(shape_in) != prod(shape_out):
        t.refuse(
            f"a {node.op_type} to a fixed shape {list(shape_out)} that does not hold the {prod(shape_in)} values of "
            "its input: a size baked into the model at export (import it at its own input size)"
        )
    if node.op_type == "Transpose":
        perm = attrs(node).get("perm", list(reversed(range(len(x.roles)))))
        t.set(out, replace(x, roles=tuple(x.roles[p] for p in perm)))
        return
    if x.whole:
        t.set(out, replace(x, roles=_whole_roles(shape_out), flat=None))
        return
    if x.flat is None:
        roles = _match(x.roles, shape_in, shape_out)
        if roles is not None and "H" in roles and "W" in roles:
            t.set(out, replace(x, roles=roles))
            return
        h, w = t.spatial(x, node.input[0])
        c = prod(shape_in) // (shape_in[0] * h * w)
        if len(shape_out) == 2 and shape_out[0] == shape_in[0] and x.roles[0] == "N":
            t.set(out, replace(x, roles=("N", "C"), flat=(c, h, w)))
            return
    else:
        if len(shape_out) == 4 and tuple(shape_out[1:]) == x.flat:
            t.set(out, replace(x, roles=NCHW, flat=None))
            return
        if len(shape_out) == 2 and shape_out[0] == shape_in[0]:
            t.set(out, x)
            return
    t.refuse(f"a {node.op_type} that moves data between the spatial axes and the others")


def gemm(t: Translator, node):
    x = t.get(node.input[0])
    a = attrs(node)
    if a.get("transA", 0):
        t.refuse("Gemm with transA")
    b = t.shape(node.input[1])
    k, n = (b[1], b[0]) if a.get("transB", 0) else (b[0], b[1])
    _linear(t, node, x, k, n, t.has_bias(node, 2))


def matmul(t: Translator, node):
    if not t.m.is_const(node.input[1]):
        t.refuse("a MatMul of two activations (attention) has no spec form")
    x = t.get(node.input[0])
    b = t.shape(node.input[1])
    if len(b) != 2:
        t.refuse(f"a MatMul by a weight of shape {list(b)}")
    if "H" in x.roles:  # a linear layer on each unit of a channels-last map: a 1x1 conv
        if x.roles[-1] != "C" or t.shape(node.input[0])[-1] != b[0]:
            t.refuse("a MatMul over a spatial axis mixes the map")
        name = t.emit(node, "conv", [x], node.output[0], kernel=1, channels=b[1], bias=False)
        t.set(node.output[0], replace(x, layer=name, bias_open=True))
        return
    _linear(t, node, x, b[0], b[1], bias=False)


def _linear(t: Translator, node, x: Val, k: int, n: int, bias: bool):
    if "H" in x.roles or len(x.roles) != 2:
        t.refuse("a Gemm/MatMul on a map that was not flattened")
    c, h, w = x.flat or (t.shape(node.input[0])[1], 1, 1)
    if c * h * w != k:
        t.refuse(f"the weight expects {k} features, the map has {c}x{h}x{w}")
    fields: dict[str, Any] = {"channels": n}
    if not bias:
        fields["bias"] = False
    if x.whole:
        name = t.emit(node, "linear", [x], node.output[0], **fields)
    else:  # a fully connected layer on an HxW map is a VALID conv with an HxW kernel: its rf is exact
        name = t.emit(node, "conv", [x], node.output[0], kernel=pair_value([h, w]), **fields)
    t.set(node.output[0], Val(name, ("N", "C"), whole=x.whole, flat=(n, 1, 1), bias_open=not bias))


def _slice_layer(t: Translator, node, x: Val, axis: int, start: int, stop: int, out: str):
    if x.roles[axis] != "C" or x.roles.index("C") != axis:
        t.refuse(f"a split along {x.roles[axis]} (rfsweep reads channel splits along the outer channel axis)")
    inner = prod(n for n, r in zip(t.shape(out), x.roles) if r == "C") // max(stop - start, 1)
    fields = {}
    if start:
        fields["start"] = start * inner
    fields["stop"] = stop * inner
    name = t.emit(node, "slice", [x], out, **fields)
    t.set(out, replace(x, layer=name, bias_open=False))


def split(t: Translator, node):
    x = t.get(node.input[0])
    axis = attrs(node).get("axis", 0) % len(x.roles)
    start = 0
    for out in node.output:
        if not out:
            continue
        size = t.shape(out)[axis]
        _slice_layer(t, node, x, axis, start, start + size, out)
        start += size


def split_to_sequence(t: Translator, node):
    x = t.get(node.input[0])
    a = attrs(node)
    axis = a.get("axis", 0) % len(x.roles)
    n = t.shape(node.input[0])[axis]
    if len(node.input) < 2 or not node.input[1]:
        if not a.get("keepdims", 1):
            t.refuse("a SplitToSequence that drops the split axis")
        sizes = [1] * n
    else:
        parts = t.m.ints(node.input[1])
        sizes = [parts[0]] * (n // parts[0]) + ([n % parts[0]] if n % parts[0] else []) if len(parts) == 1 else parts
    ranges, start = [], 0
    for s in sizes:
        ranges.append((start, start + s))
        start += s
    t.set(node.output[0], replace(x, seq=(axis, ranges)))


def sequence_at(t: Translator, node):
    seq = t.vals.get(node.input[0])
    if seq is None or seq.seq is None or not t.m.is_const(node.input[1]):
        t.refuse("a SequenceAt that is not a constant index into a SplitToSequence")
    axis, ranges = seq.seq
    start, stop = ranges[t.m.ints(node.input[1])[0]]
    _slice_layer(t, node, replace(seq, seq=None), axis, start, stop, node.output[0])


def slice_op(t: Translator, node):
    x = t.get(node.input[0])
    shape = t.shape(node.input[0])
    starts, ends = t.m.ints(node.input[1]), t.m.ints(node.input[2])
    axes = t.m.ints(node.input[3]) if len(node.input) > 3 and node.input[3] else list(range(len(starts)))
    steps = t.m.ints(node.input[4]) if len(node.input) > 4 and node.input[4] else [1] * len(starts)
    cut = []
    for axis, s, e, st in zip(axes, starts, ends, steps):
        axis %= len(shape)
        s, e, _ = slice(s, e, st).indices(shape[axis])
        if (s, e, st) != (0, shape[axis], 1):
            cut.append((axis, s, e, st))
    if not cut:
        t.set(node.output[0], x)
        return
    if len(cut) > 1 or cut[0][3] != 1:
        t.refuse("a Slice of several axes, or with a step, has no spec form")
    axis, s, e, _ = cut[0]
    _slice_layer(t, node, x, axis, s, e, node.output[0])


def gather(t: Translator, node):
    x = t.get(node.input[0])
    if x.whole and t.m.is_const(node.input[1]):
        t.set(node.output[0], replace(x, roles=_whole_roles(t.shape(node.output[0]))))
        return
    axis = attrs(node).get("axis", 0) % len(x.roles)
    if not t.m.is_const(node.input[1]):
        t.refuse("a Gather with indices that depend on the input")
    idx = t.m.ints(node.input[1])
    if len(t.shape(node.input[1])) != 1 or idx != list(range(idx[0], idx[0] + len(idx))):
        t.refuse("a Gather that is not a contiguous channel range")
    _slice_layer(t, node, x, axis, idx[0], idx[0] + len(idx), node.output[0])


def expand(t: Translator, node):
    x = t.get(node.input[0], allow_stat=True)
    if x.stat is None and t.shape(node.input[0]) != t.shape(node.output[0]):
        t.refuse("an Expand that broadcasts a map")
    t.set(node.output[0], x)


CHANNELS = {
    "Sigmoid": deferred,
    "HardSigmoid": deferred,
    "Clip": clip,
    "PRelu": prelu,
    "Softmax": softmax,
    "LogSoftmax": softmax,
    "BatchNormalization": batchnorm,
    "LayerNormalization": layernorm,
    "Add": binary,
    "Sub": binary,
    "Mul": binary,
    "Div": binary,
    "Pow": binary,
    "Max": binary,
    "Min": binary,
    "Sum": binary,
    "Concat": concat,
    "Gemm": gemm,
    "MatMul": matmul,
    "Split": split,
    "SplitToSequence": split_to_sequence,
    "SequenceAt": sequence_at,
    "Slice": slice_op,
    "Gather": gather,
    "Expand": expand,
    **{op: unary for op in UNARY},
    **{op: unary for op in ELEMENTWISE},
    **{op: layout for op in LAYOUT},
}
