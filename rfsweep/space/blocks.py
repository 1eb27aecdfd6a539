"""The blocks NAS spaces are built of, one definition for the sweep and for the analyzer.

A :class:`Block` is a conv or pool layer, a MobileNetV2/V3 inverted residual (``mbconv``), a ResNet
``basic`` or ``bottleneck`` block, or, in a head, a ``global_pool`` and the ``conv``/``linear`` layers on
the pooled vector. The sweep treats a block by its geometry and kernels.costs.block_costs; the analyzer
sees it expanded into the layers :func:`expand` writes (convs, BatchNorm, activations, the
squeeze-and-excitation gate, the residual add), and the tests require both to give the same rf, jump,
out size, params, MACs and ERF. The counting conventions are kernels/costs.py's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from rfsweep.core.errors import field_error
from rfsweep.kernels import costs
from rfsweep.kernels import layer_math as lm
from rfsweep.space.settings import MAX_CHANNELS, MAX_KERNEL, parse_fraction, parse_int

BLOCK_OPS = {
    "conv": costs.B_CONV,
    "maxpool": costs.B_MAXPOOL,
    "avgpool": costs.B_AVGPOOL,
    "mbconv": costs.B_MBCONV,
    "basic": costs.B_BASIC,
    "bottleneck": costs.B_BOTTLENECK,
    "global_pool": costs.B_GLOBAL_POOL,
    "linear": costs.B_LINEAR,
}
ACTS = ("relu", "relu6", "hardswish", "silu", "none")
POOLS = ("maxpool", "avgpool", "global_pool")
BLOCK_KEYS = ("op", "kernel", "stride", "dilation", "expand", "se", "channels", "act", "bn", "bias")


@dataclass(frozen=True)
class Block:
    """One block. ``channels`` 0: the input's (pools). ``expand``: MBConv's mid / cin, a bottleneck's
    mid / cout. ``act`` matters to the layers written out (export, analyze), not to the counts."""

    op: str
    kernel: int = 1
    stride: int = 1
    dilation: int = 1
    expand: Fraction = field(default=Fraction(1))
    se: bool = False
    channels: int = 0
    act: str = "relu"
    bn: bool = True
    bias: bool = False

    @property
    def code(self) -> int:
        return BLOCK_OPS[self.op]

    @property
    def spatial(self) -> list[tuple[int, int, int]]:
        """(kernel, stride, dilation) of the layers that change the geometry, in order."""
        if self.op in ("global_pool", "linear"):
            return []
        if self.op == "basic":
            return [(self.kernel, self.stride, self.dilation), (self.kernel, 1, self.dilation)]
        return [(self.kernel, self.stride, self.dilation)]

    def row(self) -> list[int]:
        """The block's fields as the kernels read them (layer_math.BF_*)."""
        return [self.code, self.kernel, self.stride, self.dilation, self.expand.numerator,
                self.expand.denominator, int(self.se), int(self.bn), int(self.bias), self.channels]  # fmt: skip

    def out_channels(self, cin: int) -> int:
        return cin if self.op in POOLS else self.channels


def rf_step(blocks: tuple[Block, ...] | list[Block]) -> int:
    """The rf a sequence of blocks adds per unit of the jump before it: sum of (k'-1) x the strides before."""
    total, jump = 0, 1
    for b in blocks:
        for k, s, d in b.spatial:
            total += d * (k - 1) * jump
            jump *= s
    return total


def jump_factor(blocks) -> int:
    out = 1
    for b in blocks:
        for _, s, _ in b.spatial:
            out *= s
    return out


def parse_block(raw: Any, where: str, defaults: dict[str, Any] | None = None) -> Block:
    """A block from a TOML/JSON table (keys BLOCK_KEYS), with one-line errors naming ``where``."""
    if not isinstance(raw, dict):
        raise field_error(where, raw, "a block is a table with an op")
    for key in raw:
        if key not in BLOCK_KEYS:
            raise field_error(f"{where}.{key}", raw[key], f"unknown block field; allowed: {', '.join(BLOCK_KEYS)}")
    r = {**(defaults or {}), **raw}
    op = r.get("op")
    if not isinstance(op, str) or op not in BLOCK_OPS:
        raise field_error(f"{where}.op", op, f"must be one of {', '.join(BLOCK_OPS)}")
    kw: dict[str, Any] = {"op": op}
    for name in ("kernel", "stride", "dilation"):
        kw[name] = parse_int(f"{where}.{name}", r.get(name, 1), 1, MAX_KERNEL)
    kw["expand"] = parse_fraction(f"{where}.expand", r.get("expand", 1), 64)
    if kw["expand"] <= 0:
        raise field_error(f"{where}.expand", r.get("expand"), "must be > 0")
    for name in ("se", "bn", "bias"):
        v = r.get(name, {"se": False, "bn": op != "linear", "bias": op == "linear"}[name])
        if not isinstance(v, bool):
            raise field_error(f"{where}.{name}", v, "must be true or false")
        kw[name] = v
    act = r.get("act", "relu")
    if act not in ACTS:
        raise field_error(f"{where}.act", act, f"must be one of {', '.join(ACTS)}")
    kw["act"] = act
    if op in POOLS:
        kw["channels"] = 0
    else:
        kw["channels"] = parse_int(f"{where}.channels", r.get("channels"), 1, MAX_CHANNELS) if "channels" in r else 0
        if not kw["channels"]:
            raise field_error(f"{where}.channels", None, f"'{op}' needs channels")
    if op in ("global_pool", "linear") and (kw["kernel"], kw["stride"], kw["dilation"]) != (1, 1, 1):
        raise field_error(f"{where}.kernel", kw["kernel"], f"'{op}' has no kernel, stride or dilation")
    if op != "mbconv" and kw["se"]:
        raise field_error(f"{where}.se", True, f"only mbconv blocks take squeeze-and-excitation, not '{op}'")
    return Block(**kw)


# ------------------------------------------------------------------ layers for the analyzer


ACT_OPS = {"relu": "relu", "relu6": "relu6", "hardswish": "hardswish", "silu": "silu"}


def expand(block: Block, cin: int, prefix: str, src: str, padding: str, residual_ok: bool = True):
    """The layers of one block as network-spec layer dicts: (layers, output layer name, out channels).

    ``src`` is the name of the block's input layer. The conventions are kernels/costs.py's; the residual
    add follows kernels.costs.residual.
    """
    layers: list[dict[str, Any]] = []
    cout = block.out_channels(cin)

    def add(name, op, **kw):
        layers.append({"name": f"{prefix}{name}", "op": op, "inputs": [add.last], **kw})
        add.last = f"{prefix}{name}"
        return add.last

    add.last = src

    def act(name):
        if block.act != "none":
            add(name, ACT_OPS[block.act])

    k, s, d = block.kernel, block.stride, block.dilation
    op = block.op
    if op in ("maxpool", "avgpool"):
        add(op, op, kernel=k, stride=s, padding=padding)
        return layers, add.last, cout
    if op == "global_pool":
        add("pool", "global_pool", mode="avg")
        return layers, add.last, cout
    if op == "linear":
        add("fc", "conv", kernel=1, channels=cout, bias=block.bias)
        act("act")
        return layers, add.last, cout
    if op == "conv":
        add("conv", "conv", kernel=k, stride=s, dilation=d, padding=padding, channels=cout, bias=block.bias)
        if block.bn:
            add("bn", "bn")
        act("act")
        return layers, add.last, cout
    e_num, e_den = block.expand.numerator, block.expand.denominator
    if op == "mbconv":
        mid = costs.mbconv_mid(cin, e_num, e_den)
        if e_num != e_den:
            add("expand", "conv", kernel=1, channels=mid, bias=False)
            add("expand_bn", "bn")
            act("expand_act")
        add("dw", "conv", kernel=k, stride=s, dilation=d, padding=padding, channels=mid, groups=mid, bias=False)
        add("dw_bn", "bn")
        act("dw_act")
        if block.se:
            trunk = add.last
            sm = costs.se_mid(mid)
            add("se_pool", "global_pool", mode="avg")
            add("se_reduce", "conv", kernel=1, channels=sm, bias=True)
            add("se_act", "relu")
            add("se_expand", "conv", kernel=1, channels=mid, bias=True)
            add("se_gate", "hardsigmoid")
            layers.append({"name": f"{prefix}se", "op": "gate", "inputs": [trunk, add.last]})
            add.last = f"{prefix}se"
        add("project", "conv", kernel=1, channels=cout, bias=False)
        add("project_bn", "bn")
    else:  # basic, bottleneck
        if op == "basic":
            add("conv1", "conv", kernel=k, stride=s, dilation=d, padding=padding, channels=cout, bias=False)
            add("bn1", "bn")
            add("relu1", "relu")
            add("conv2", "conv", kernel=k, dilation=d, padding=padding, channels=cout, bias=False)
            add("bn2", "bn")
        else:
            mid = costs.bottleneck_mid(cout, e_num, e_den)
            add("conv1", "conv", kernel=1, channels=mid, bias=False)
            add("bn1", "bn")
            add("relu1", "relu")
            add("conv2", "conv", kernel=k, stride=s, dilation=d, padding=padding, channels=mid, bias=False)
            add("bn2", "bn")
            add("relu2", "relu")
            add("conv3", "conv", kernel=1, channels=cout, bias=False)
            add("bn3", "bn")
    if residual_ok and costs.residual(block.code, s, cin, cout):
        branch = add.last
        short = src
        if costs.has_shortcut_conv(block.code, s, cin, cout):
            layers.append({"name": f"{prefix}down", "op": "conv", "inputs": [src], "kernel": 1, "stride": s,
                           "channels": cout, "bias": False})  # fmt: skip
            layers.append({"name": f"{prefix}down_bn", "op": "bn", "inputs": [f"{prefix}down"]})
            short = f"{prefix}down_bn"
        layers.append({"name": f"{prefix}add", "op": "add", "inputs": [short, branch]})
        add.last = f"{prefix}add"
        if op in ("basic", "bottleneck"):
            add("relu", "relu")
    return layers, add.last, cout


def check_block_in_space(block: Block, where: str, padding: str) -> None:
    """What the sweep's block arithmetic assumes: 'same' padding, and odd kernels where a residual adds
    the input back (an even kernel shifts the branch by half a jump: the analyzer refuses the add)."""
    if padding != "same":
        raise field_error("padding", padding, "spaces of blocks use 'same' padding (ceil(n / stride) outputs)")
    if block.op in ("mbconv", "basic", "bottleneck") and block.kernel % 2 == 0:
        raise field_error(f"{where}.kernel", block.kernel, f"'{block.op}' blocks take odd kernels (residual alignment)")


def choice_fields(blocks: tuple[Block, ...], cout: int) -> dict[str, int]:
    """The layer_math.F_* summary of a choice made of blocks."""
    return {
        "op": lm.OP_BLOCKS,
        "stride": jump_factor(blocks),
        "rfv": rf_step(blocks),
        "convs": sum(1 for b in blocks if b.op not in POOLS),
        "channels": cout,
    }


__all__ = ["BLOCK_OPS", "Block", "check_block_in_space", "expand", "jump_factor", "parse_block", "rf_step"]
