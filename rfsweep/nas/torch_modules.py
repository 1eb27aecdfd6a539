"""A chain network spec, or a candidate of a space of stages -> the torch.nn modules that compute it, as
plain data (no torch import).

One list serves both ways out: :func:`rfsweep.torch.build` instantiates it, and the exported Python
source (:mod:`rfsweep.nas.export`) prints it, one module a line, so the two cannot drift. A candidate of a
space of stages (:func:`block_modules`) is one module a block, of the classes in rfsweep/nas/torch_blocks.py
(``MBConv``, ``Bottleneck``, ``Basic``, ``ConvBNAct``), with every channel count computed here by
kernels.costs, the functions the sweep and rfsweep.space.blocks.expand use.

Padding follows the analyzer: each layer's padding is resolved by ``rfsweep.network.arithmetic.resolve_padding``
at that layer's input size from ``rfsweep.network.analyze.evaluate`` ('same': total k'-1 with the odd pixel
right/bottom; 'tf_same': TensorFlow SAME at this input size; explicit pairs as given). torch pads both
sides alike, so:

* symmetric padding goes into the layer (``nn.Conv2d(padding=...)``, ``nn.MaxPool2d(padding=...)``);
* asymmetric padding (or more than a torch pool accepts, half its kernel) becomes a pad module before the
  layer: ``nn.ZeroPad2d((left, right, top, bottom))`` before a conv or an average pool (zeros, which
  ``count_include_pad`` counts as the layer's own padding would), ``nn.ConstantPad2d(..., -inf)`` before a
  max pool (what ``nn.MaxPool2d`` pads with).

Average pools count padded zeros in their mean (torch's default ``count_include_pad=True``; TensorFlow's
SAME average pool does not): the geometry, which is what the analyzer describes, is the same either way.
``dropout`` is ``nn.Dropout()`` (p = 0.5), ``softmax`` is over channels.

Module names are the spec's layer names (characters other than letters, digits and '_' become '_');
a pad is ``<name>_pad``, the flatten before a linear layer ``<name>_flatten``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from rfsweep.core.errors import field_error
from rfsweep.network import arithmetic as ar
from rfsweep.network.analyze import LayerResult, evaluate
from rfsweep.network.spec import Network

POINTWISE = {
    "relu": ("ReLU", ()),
    "relu6": ("ReLU6", ()),
    "silu": ("SiLU", ()),
    "gelu": ("GELU", ()),
    "sigmoid": ("Sigmoid", ()),
    "tanh": ("Tanh", ()),
    "identity": ("Identity", ()),
    "dropout": ("Dropout", ()),
    "softmax": ("Softmax", (("dim", 1),)),
}
SUPPORTED = ("conv", "maxpool", "avgpool", "bn", "global_pool", "linear", *POINTWISE)


@dataclass(frozen=True)
class TorchModule:
    """One module named ``name``: ``getattr(torch.nn, cls)(*args, **dict(kwargs))``, or with ``block``, a
    class of rfsweep/nas/torch_blocks.py (``MBConv``, ``Bottleneck``, ...)."""

    name: str
    cls: str
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    block: bool = False

    def source(self) -> str:
        """The constructor call as Python source, e.g. ``nn.Conv2d(3, 32, kernel_size=3, stride=2)`` or
        ``MBConv(16, 24, kernel_size=5, stride=2, mid=48)``."""
        parts = [literal(a) for a in self.args] + [f"{k}={literal(v)}" for k, v in self.kwargs]
        return f"{'' if self.block else 'nn.'}{self.cls}({', '.join(parts)})"


@dataclass(frozen=True)
class BlockModel:
    """A candidate of a space of stages as torch_blocks.BlockNet(features, head): ``features`` up to the
    head's global pool (the map the row's rf, jump and out_size describe), ``head`` from it on."""

    features: tuple[TorchModule, ...]
    head: tuple[TorchModule, ...]


def literal(value: Any) -> str:
    """Python source for a constructor argument (``float("-inf")`` for infinities)."""
    if isinstance(value, float) and math.isinf(value):
        return 'float("-inf")' if value < 0 else 'float("inf")'
    if isinstance(value, str):
        return json.dumps(value)  # double quotes, as the rest of the source
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def _square(pair: tuple[int, int]) -> int | tuple[int, int]:
    """(3, 3) -> 3: torch takes either; one int reads better and both ways out use the same value."""
    return pair[0] if pair[0] == pair[1] else tuple(pair)


def _module_name(name: str, used: set[str]) -> str:
    base = re.sub(r"[^0-9A-Za-z_]", "_", str(name)) or "layer"
    out, i = base, 2
    while out in used:
        out, i = f"{base}_{i}", i + 1
    used.add(out)
    return out


def chain_modules(net: Network, results: list[LayerResult] | None = None) -> list[TorchModule]:
    """The modules of a chain network (each layer reads the previous one), first to last.

    Raises a one-line error for a graph (add, concat, a layer that does not read the previous one) or
    an op this builder does not cover (deconv, upsample, lrn). ``results`` (``evaluate(net)``) may be
    passed when the caller has them.
    """
    if results is None:
        results = evaluate(net)  # sizes and channels exactly as the analyzer has them
    in_sizes = [net.input_size or (None, None)] + [tuple(a.size for a in r.axes) for r in results]
    in_channels = [net.in_channels] + [r.channels for r in results]
    used: set[str] = set()
    out: list[TorchModule] = []
    flat = False  # after a linear layer the map is (N, features)
    previous = "input"
    for i, layer in enumerate(net.layers):
        if layer.inputs != (previous,):
            raise field_error(
                "inputs", list(layer.inputs), f"rfsweep builds chains: this layer must read '{previous}'", layer.name
            )
        previous = layer.name
        op = layer.op
        if op not in SUPPORTED:
            raise field_error(
                "op", op, f"not built as a torch module here; chains of {', '.join(SUPPORTED)}", layer.name
            )
        if flat and op not in ("bn", "linear", *POINTWISE):
            raise field_error("op", op, "comes after a linear layer, on a map that is no longer spatial", layer.name)
        name = _module_name(layer.name, used)
        cin = in_channels[i]
        if op in ("conv", "maxpool", "avgpool"):
            out += _spatial(layer, name, in_sizes[i], cin, used)
        elif op == "bn":
            out.append(TorchModule(name, "BatchNorm1d" if flat else "BatchNorm2d", (cin,)))
        elif op == "global_pool":
            out.append(TorchModule(name, "AdaptiveAvgPool2d" if layer.mode == "avg" else "AdaptiveMaxPool2d", (1,)))
        elif op == "linear":
            fin = cin
            if not flat:  # the analyzer's linear layer reads the flattened map (1x1 after a global pool)
                fin = cin * in_sizes[i][0] * in_sizes[i][1]
                out.append(TorchModule(_module_name(f"{layer.name}_flatten", used), "Flatten"))
                flat = True
            kwargs = () if layer.bias else (("bias", False),)
            out.append(TorchModule(name, "Linear", (fin, layer.channels), kwargs))
        else:
            cls, kwargs = POINTWISE[op]
            out.append(TorchModule(name, cls, (), kwargs))
    return out


def _spatial(layer, name: str, size, cin: int, used: set[str]) -> list[TorchModule]:
    """A conv or pool with its padding resolved at its input size; a pad module where torch cannot pad."""
    op = layer.op
    pads = []
    for axis in range(2):
        k_eff = ar.effective_kernel(layer.kernel[axis], layer.dilation[axis])
        pads.append(ar.resolve_padding(layer.padding[axis], size[axis], k_eff, layer.stride[axis]))
    (top, bottom), (left, right) = pads
    symmetric = top == bottom and left == right
    if op == "maxpool":  # torch: pad <= half the effective kernel
        limit = [ar.effective_kernel(layer.kernel[a], layer.dilation[a]) // 2 for a in range(2)]
    elif op == "avgpool":  # torch: pad <= half the kernel
        limit = [layer.kernel[a] // 2 for a in range(2)]
    else:
        limit = [math.inf, math.inf]
    inside = symmetric and top <= limit[0] and left <= limit[1]
    out = []
    if not inside:
        if layer.ceil_mode:
            raise field_error(
                "padding",
                [[top, bottom], [left, right]],
                "ceil_mode with padding torch cannot put in the layer (asymmetric, or over half the kernel) "
                "changes the output size; not built",
                layer.name,
            )
        if op == "maxpool":
            out.append(
                TorchModule(
                    _module_name(f"{layer.name}_pad", used), "ConstantPad2d", ((left, right, top, bottom), -math.inf)
                )
            )
        else:
            out.append(TorchModule(_module_name(f"{layer.name}_pad", used), "ZeroPad2d", ((left, right, top, bottom),)))
    padding = (top, left) if inside else (0, 0)
    kwargs: list[tuple[str, Any]] = [("kernel_size", _square(layer.kernel)), ("stride", _square(layer.stride))]
    if padding != (0, 0):
        kwargs.append(("padding", _square(padding)))
    if op in ("conv", "maxpool") and layer.dilation != (1, 1):
        kwargs.append(("dilation", _square(layer.dilation)))
    if op == "conv":
        if layer.groups != 1:
            kwargs.append(("groups", layer.groups))
        if not layer.bias:
            kwargs.append(("bias", False))
        out.append(TorchModule(name, "Conv2d", (cin, layer.channels), tuple(kwargs)))
        return out
    if layer.ceil_mode:
        kwargs.append(("ceil_mode", True))
    out.append(TorchModule(name, "MaxPool2d" if op == "maxpool" else "AvgPool2d", (), tuple(kwargs)))
    return out


# ------------------------------------------------------------------ candidates of a space of stages

ACTIVATIONS = {"relu": "ReLU", "relu6": "ReLU6", "hardswish": "Hardswish", "silu": "SiLU"}


def _kw(**kwargs) -> tuple[tuple[str, Any], ...]:
    """Keyword arguments, those equal to the classes' defaults left out (shorter, readable source)."""
    defaults = {"stride": 1, "dilation": 1, "mid": None, "se": 0, "act": "relu", "residual": False,
                "projection": False, "bias": False, "bn": True}  # fmt: skip
    return tuple((k, v) for k, v in kwargs.items() if k not in defaults or v != defaults[k])


def block_modules(space, idx: list[int]) -> BlockModel:
    """The modules of one candidate of a space of stages (``space.positions[p][idx[p]]``), one a block,
    named ``<stage>_<block>`` (``stem_0``, ``stage3_1``, ``head_2``).

    The channels are kernels.costs': an MBConv's ``mid`` (None when its expansion is 1) and ``se``, a
    bottleneck's ``mid``, whether a block adds its input back (``residual``) or projects it
    (``projection``). After the head's global pool, a ``conv`` block is a 1x1 ConvBNAct on the pooled map
    and a ``linear`` block an ``nn.Linear`` after an ``nn.Flatten``.
    """
    from rfsweep.kernels import costs

    features: list[TorchModule] = []
    head: list[TorchModule] = []
    cin = space.in_channels
    out, flat = features, False
    for p, c in enumerate(idx):
        for b, block in enumerate(space.positions[p][c].blocks):
            name = f"{space.position_names[p]}_{b}"
            cout = block.out_channels(cin)
            k, s, d, act = block.kernel, block.stride, block.dilation, block.act
            if flat and block.op != "linear":
                raise field_error(
                    "op", block.op, "comes after a linear layer; rfsweep builds only linear layers there", name
                )
            if block.op == "global_pool":
                out = head
                out.append(TorchModule(name, "AdaptiveAvgPool2d", (1,)))
            elif block.op == "linear":
                if not flat:
                    out.append(TorchModule(f"{name}_flatten", "Flatten"))
                    flat = True
                out.append(TorchModule(name, "Linear", (cin, cout), () if block.bias else (("bias", False),)))
                if act != "none":
                    out.append(TorchModule(f"{name}_act", ACTIVATIONS[act]))
            elif block.op in ("maxpool", "avgpool"):
                out += _pool(block, name)
            elif block.op == "conv":
                kw = _kw(kernel_size=k, stride=s, dilation=d, bias=block.bias, bn=block.bn, act=act)
                out.append(TorchModule(name, "ConvBNAct", (cin, cout), kw, block=True))
            elif block.op == "mbconv":
                e_num, e_den = block.expand.numerator, block.expand.denominator
                mid = costs.mbconv_mid(cin, e_num, e_den)
                kw = _kw(kernel_size=k, stride=s, dilation=d, mid=None if e_num == e_den else mid,
                         se=costs.se_mid(mid) if block.se else 0, act=act,
                         residual=bool(costs.residual(block.code, s, cin, cout)))  # fmt: skip
                out.append(TorchModule(name, "MBConv", (cin, cout), kw, block=True))
            else:  # basic, bottleneck: ReLU, as rfsweep.space.blocks.expand writes them
                projection = bool(costs.has_shortcut_conv(block.code, s, cin, cout))
                kw = _kw(kernel_size=k, stride=s, dilation=d, projection=projection)
                if block.op == "basic":
                    out.append(TorchModule(name, "Basic", (cin, cout), kw, block=True))
                else:
                    mid = costs.bottleneck_mid(cout, block.expand.numerator, block.expand.denominator)
                    out.append(TorchModule(name, "Bottleneck", (cin, cout, mid), kw, block=True))
            cin = cout
    return BlockModel(tuple(features), tuple(head))


def _pool(block, name: str) -> list[TorchModule]:
    """A max or average pool with 'same' padding; a pad module first where torch cannot pad (asymmetric)."""
    total = block.kernel - 1
    left, right = total // 2, total - total // 2
    cls = "MaxPool2d" if block.op == "maxpool" else "AvgPool2d"
    kwargs: list[tuple[str, Any]] = [("kernel_size", block.kernel), ("stride", block.stride)]
    if left == right:
        if left:
            kwargs.append(("padding", left))
        return [TorchModule(name, cls, (), tuple(kwargs))]
    pads = (left, right, left, right)
    pad = (
        TorchModule(f"{name}_pad", "ConstantPad2d", (pads, -math.inf))
        if block.op == "maxpool"
        else TorchModule(f"{name}_pad", "ZeroPad2d", (pads,))
    )
    return [pad, TorchModule(name, cls, (), tuple(kwargs))]


__all__ = ["TorchModule", "BlockModel", "block_modules", "chain_modules", "literal", "SUPPORTED"]
