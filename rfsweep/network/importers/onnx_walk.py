"""The walk over an ONNX graph: the state of every tensor that depends on the image, and the layers emitted.

Every such tensor is a :class:`Val`: the spec layer it is the output of, and the role of each of its
dimensions (``N``, ``C``, ``H``, ``W``), so layout-only nodes (Transpose, Reshape, Flatten, Squeeze,
Unsqueeze, Identity, Cast) make no layer and an op that mixes spatial positions is caught wherever the
layout puts them. Tensors that do not depend on the image are constants (no layer). The handlers, one per
op type, live in :mod:`rfsweep.network.importers.onnx_geometry` (ops that change the geometry) and
:mod:`rfsweep.network.importers.onnx_channels` (the others).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.network.importers.onnx_model import Model


@dataclass(frozen=True)
class Val:
    """A tensor that depends on the image."""

    layer: str  # the spec layer whose output it is ("input": the model input)
    roles: tuple[str, ...]  # per dimension: "N", "C", "H", "W" (several "C" where channels are split)
    whole: bool = False  # after a global pool: every unit sees the whole input
    flat: tuple[int, int, int] | None = None  # a flattened map [N, C·H·W]: its (C, H, W)
    pad: tuple | None = None  # a Pad waiting for its Conv/pool: ((top, bottom), (left, right))
    act: tuple | None = None  # a Sigmoid/HardSigmoid not yet emitted: (op, source tensor, node)
    bias_open: bool = False  # a MatMul layer whose bias a following Add may still supply
    seq: tuple | None = None  # a SplitToSequence: (axis, [(start, stop), ...])
    stat: str | None = None  # a statistic over the channels of layer `stat` (ReduceL2 of F.normalize), no layer


NCHW = ("N", "C", "H", "W")


def attrs(node) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded)."""
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def pair_value(values) -> int | list[int]:
    """[h, w] as the spec writes it: one integer when both are equal."""
    values = [int(v) for v in values]
    return values[0] if values[0] == values[1] else values


def padding_value(pads: list[tuple[int, int]]):
    """[(top, bottom), (left, right)] as the shortest spec form."""
    (t, b), (left, r) = pads
    if t == b and left == r:
        return t if t == left else [t, left]
    return [[t, b], [left, r]]


class Translator:
    """Walks the graph in order (ONNX graphs are topologically sorted) and collects spec layers."""

    def __init__(self, model: Model, handlers: dict):
        self.m = model
        self.handlers = handlers
        self.layers: list[dict] = []
        self.used = {"input"}
        self.vals: dict[str, Val] = {}
        self.expect: dict[str, str] = {}  # layer -> the ONNX tensor it outputs (its inferred shape is checked)
        self.node = None

    # ------------------------------------------------------------------ errors and names

    def label(self, node) -> str:
        label = node.name or node.output[0]
        module = self.m.node_name(node)
        return label if module in (label, node.output[0]) else f"{label} ({module})"

    def shapes_of(self, names) -> str:
        return ", ".join(str(list(self.m.shape(n))) if self.m.shape(n) is not None else "?" for n in names if n)

    def refuse(self, why: str, node=None):
        node = node or self.node
        raise field_error(
            "op",
            node.op_type,
            f"{why}; inputs {self.shapes_of(node.input) or '-'}, outputs {self.shapes_of(node.output) or '-'}",
            layer=self.label(node),
        )

    def unique(self, base: str) -> str:
        name, i = base, 0
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        s = self.m.shape(name)
        if s is None:
            self.refuse(f"ONNX shape inference gives no static shape for '{name}'")
        return s

    # ------------------------------------------------------------------ values

    def get(self, name: str, allow_pad: bool = False, allow_stat: bool = False) -> Val:
        """The state of an input tensor that depends on the image (a deferred activation is emitted now)."""
        if name not in self.vals:
            if self.m.is_const(name):
                self.refuse(f"input '{name}' is a constant where rfsweep expects a feature map")
            self.refuse(f"input '{name}' comes from an output rfsweep does not model")
        v = self.vals[name]
        if v.act is not None:
            op, src, node = v.act
            layer = self.emit(node, op, [self.get(src)], name)
            v = replace(self.vals[src], layer=layer, pad=None, act=None, bias_open=False)
            self.vals[name] = v
        if v.pad is not None and not allow_pad:
            self.refuse(f"a Pad is folded into the Conv or pool that consumes it; '{name}' feeds this node instead")
        if v.stat is not None and not allow_stat:
            self.refuse(
                f"'{name}' is a statistic over the channels (a Reduce over C), which rfsweep reads only where it "
                "is divided or multiplied back into the map it was taken of (x / ||x||)"
            )
        if v.seq is not None:
            self.refuse(f"'{name}' is a sequence; only SequenceAt reads it")
        return v

    def emit(self, node, op: str, inputs: list[Val], out: str, **fields) -> str:
        """Append a layer (named after the node) reading ``inputs``; record the ONNX size of ``out``."""
        name = self.unique(self.m.node_name(node))
        self.layers.append({"name": name, "op": op, "inputs": [v.layer for v in inputs], **fields})
        self.expect[name] = out
        return name

    def set(self, name: str, val: Val):
        self.vals[name] = val

    def spatial(self, v: Val, name: str) -> tuple[int, int]:
        shape = self.shape(name)
        return shape[v.roles.index("H")], shape[v.roles.index("W")]

    def map_input(self, node, allow_pad: bool = False) -> Val:
        v = self.get(node.input[0], allow_pad)
        if v.roles != NCHW or v.flat is not None:
            self.refuse(f"rfsweep reads this op on an [N, C, H, W] map, not one laid out {','.join(v.roles)}")
        return v

    def has_bias(self, node, index: int) -> bool:
        if len(node.input) <= index or not node.input[index]:
            return False
        name = node.input[index]
        stored = name in self.m.initializers or (
            name in self.m.producer and self.m.producer[name].op_type == "Constant" and name not in self.m.folded
        )
        if stored or not self.m.is_const(name):
            return True
        return bool(np.any(np.asarray(self.m.value(name)) != 0))

    # ------------------------------------------------------------------ the walk

    def run(self):
        self.set(self.m.input_name, Val("input", NCHW))
        for node in self.m.graph.node:
            self.node = node
            if all(self.m.is_const(o) for o in node.output if o):
                continue  # shapes, constants and weights: no layer
            handler = self.handlers.get(node.op_type)
            if node.domain not in ("", "ai.onnx") and (node.domain, node.op_type) != ("rfsweep", "AdaptiveAvgPool2d"):
                handler = None
            if handler is None:
                self.refuse("rfsweep does not know how this op changes the receptive field (and never guesses)")
            handler(self, node)
        for out in self.m.graph.output:  # a Sigmoid read by the model's caller only; a statistic is refused
            if out.name in self.vals and (self.vals[out.name].act is not None or self.vals[out.name].stat):
                self.get(out.name)
        if not self.layers:
            raise field_error("model", self.m.graph.name, "no node of the model depends on its input")

    # ------------------------------------------------------------------ padding

    def pads(self, node, x: Val, kernel, strides, dilations, attrs) -> list[tuple[int, int]] | str:
        extra = x.pad or ((0, 0), (0, 0))
        auto = attrs.get("auto_pad", "NOTSET")
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if any(p < 0 for p in pads):
            self.refuse(f"negative pads {pads} crop the map")
        if auto == "SAME_UPPER" and x.pad is None:
            return "tf_same"  # TensorFlow's SAME: the odd pixel at the end, recomputed at any input size
        if auto in ("SAME_UPPER", "SAME_LOWER"):  # resolved at the known (padded) size
            out = []
            for axis, n in enumerate(self.spatial(x, node.input[0])):  # the size after a folded Pad
                k_eff = dilations[axis] * (kernel[axis] - 1) + 1
                total = max((-(-n // strides[axis]) - 1) * strides[axis] + k_eff - n, 0)
                small, large = total // 2, total - total // 2
                lo, hi = (small, large) if auto == "SAME_UPPER" else (large, small)
                out.append((lo + extra[axis][0], hi + extra[axis][1]))
            return out
        if auto == "VALID":
            pads = [0, 0, 0, 0]
        return [(pads[0] + extra[0][0], pads[2] + extra[0][1]), (pads[1] + extra[1][0], pads[3] + extra[1][1])]
