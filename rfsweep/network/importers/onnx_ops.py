"""ONNX nodes -> spec layers. Each handler reads its inputs' state, emits zero or more layers and sets its
outputs' state; an op without a handler is refused with one line (its node, op type and shapes), because
an op that keeps H and W can still grow the receptive field: rfsweep never guesses.

The walk is :mod:`rfsweep.network.importers.onnx_walk`; the handlers :mod:`rfsweep.network.importers.onnx_geometry` and
:mod:`rfsweep.network.importers.onnx_channels`. Afterwards every layer's out size and channels, as rfsweep's analyzer
computes them from the spec, must equal ONNX shape inference's, or the import is refused.

Conventions (see the README's import section):

* a Pad is folded into the Conv or pool that consumes it (non-negative pads on H and W only);
* a Conv/ConvTranspose/Gemm bias counts when it is stored, or computed to a non-zero value (torch's
  exporter feeds bias-free convs a computed zero bias);
* Gemm/MatMul after a Flatten is a conv with an HxW kernel on an HxW map (exact rf), or a ``linear`` layer
  on a global vector; MatMul on a channels-last map is a 1x1 conv; a following Add of a per-channel constant
  is its bias;
* x·Sigmoid(x) is ``silu``, x·HardSigmoid(x) ``hardswish``; a map times a global vector is a ``gate``;
* per-channel constants: Mul/Div an ``affine`` weight, Add/Sub an ``affine`` bias (C parameters each);
  scalars an ``affine`` without parameters; other elementwise ops ``pointwise``.
"""

from __future__ import annotations

from math import prod
from pathlib import Path
from typing import Any

from rfsweep.core.errors import RFSweepError, field_error
from rfsweep.network.importers.onnx_channels import CHANNELS
from rfsweep.network.importers.onnx_geometry import GEOMETRY
from rfsweep.network.importers.onnx_model import Model, load, require_onnx
from rfsweep.network.importers.onnx_walk import Translator

HANDLERS = {**GEOMETRY, **CHANNELS}


def translate(source: Any, input_size: tuple[int, int] | None, name: str | None = None) -> dict:
    """The spec dict of an ONNX model (path or ModelProto) at ``input_size`` (None: the model's own)."""
    onnx = require_onnx()
    proto = load(source)
    model = Model(proto, input_size)
    t = Translator(model, HANDLERS)
    t.run()
    n, c, h, w = model.input_shape
    previous = "input"
    layers = []
    for layer in t.layers:
        if layer["inputs"] == [previous]:
            layer = {k: v for k, v in layer.items() if k != "inputs"}
        layers.append(layer)
        previous = layer["name"]
    if name is None:
        name = Path(str(source)).stem if not isinstance(source, onnx.ModelProto) else (proto.graph.name or "model")
    where = "a ModelProto" if isinstance(source, onnx.ModelProto) else Path(str(source)).name
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    spec = {
        "name": name,
        "source": f"ONNX {where} (opset {model.opset}{', ' + producer if producer else ''})",
        "input": {"size": h if h == w else [h, w], "channels": c},
        "layers": layers,
    }
    check_shapes(spec, t)
    return spec


def check_shapes(spec: dict, t: Translator) -> None:
    """Every layer's out size and channels as rfsweep computes them must equal ONNX shape inference's."""
    from rfsweep.network.analyze import evaluate
    from rfsweep.network.spec import parse_network

    try:
        results = evaluate(parse_network(spec))
    except RFSweepError as exc:
        raise RFSweepError(f"{exc} (in the spec imported from ONNX)") from None
    for r in results:
        out = t.expect[r.layer.name]
        v = t.vals[out] if out in t.vals else None
        shape = t.m.shape(out)
        if v is None or shape is None:
            continue
        if v.flat is not None:
            c, h, w = v.flat
        elif "H" in v.roles:
            h, w = shape[v.roles.index("H")], shape[v.roles.index("W")]
            c = prod(n for n, role in zip(shape, v.roles) if role == "C")
        else:
            h, w, c = 1, 1, prod(n for n, role in zip(shape, v.roles) if role == "C")
        got = (r.axes[0].size, r.axes[1].size, r.channels)
        if got != (h, w, c):
            why = "this node does not translate exactly"
            if r.layer.ceil_mode:
                why = (
                    "ONNX shape inference keeps a last window that starts in the right padding, which the "
                    "operator's definition and PyTorch drop"
                )
            raise field_error(
                "out_size",
                [got[0], got[1]],
                f"rfsweep computes {got[0]}x{got[1]}x{got[2]} (h x w x channels), ONNX shape inference "
                f"{h}x{w}x{c}: {why}",
                layer=r.layer.name,
            )
