"""Network spec files (JSON or TOML) -> a validated :class:`Network`.

A spec is ``{"name": ..., "input": {"size": 224 | [h, w] | null, "channels": 3}, "layers": [...]}``.
Every error names the layer, the field and the value in one line (:class:`rfsweep.core.errors.SpecError`).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rfsweep.core.errors import RFSweepError, field_error
from rfsweep.core.files import read_text

CONV_OPS = ("conv", "deconv")
POOL_OPS = ("maxpool", "avgpool")
ADAPTIVE_OPS = ("adaptive_avgpool", "adaptive_maxpool")
MERGE_OPS = ("add", "concat")
BLOCK_OPS = ("space_to_depth", "depth_to_space")
POINTWISE_OPS = (
    "relu",
    "relu6",
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "bn",
    "dropout",
    "identity",
    "lrn",
    "softmax",
    "hardsigmoid",
    "hardswish",
    "leaky_relu",
    "elu",
    "prelu",
    "layernorm",
    "affine",
    "pointwise",
)
OPS = (
    CONV_OPS
    + POOL_OPS
    + ADAPTIVE_OPS
    + MERGE_OPS
    + ("upsample", "global_pool", "linear", "slice", "gate")
    + BLOCK_OPS
    + POINTWISE_OPS
)
PADDING_MODES = ("valid", "same", "tf_same")
UPSAMPLE_MODES = ("nearest", "bilinear")

_COMMON = {"name", "op", "inputs"}
_FIELDS = {
    "conv": {"kernel", "stride", "dilation", "padding", "channels", "groups", "bias"},
    "deconv": {"kernel", "stride", "dilation", "padding", "output_padding", "channels", "groups", "bias"},
    "maxpool": {"kernel", "stride", "dilation", "padding", "ceil_mode"},
    "avgpool": {"kernel", "stride", "padding", "ceil_mode"},
    "upsample": {"scale", "mode"},
    "add": set(),
    "concat": set(),
    "global_pool": {"mode"},
    "linear": {"channels", "bias"},
    "adaptive_avgpool": {"output"},
    "adaptive_maxpool": {"output"},
    "slice": {"start", "stop"},
    "space_to_depth": {"block"},
    "depth_to_space": {"block"},
    "gate": set(),
    "prelu": {"per_channel"},
    "layernorm": {"bias"},
    "affine": {"weight", "bias"},
    "pointwise": {"fn"},
}
# arch_id and metrics: what `rfsweep export --to jsonl` writes beside a candidate's spec (not read here)
_TOP_FIELDS = {"name", "source", "description", "input", "layers", "feature_layer", "arch_id", "metrics"}

Pair = tuple[int, int]
# Padding per axis: (left, right) in pixels, or one of PADDING_MODES.
AxisPadding = tuple[int, int] | str


@dataclass(frozen=True)
class Layer:
    """One validated layer; every spatial field is per axis, (h, w)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    kernel: Pair = (1, 1)
    stride: Pair = (1, 1)
    dilation: Pair = (1, 1)
    padding: tuple[AxisPadding, AxisPadding] = ((0, 0), (0, 0))
    output_padding: Pair = (0, 0)
    scale: Pair = (1, 1)
    mode: str = "nearest"
    channels: int | None = None
    groups: int = 1
    bias: bool = True
    ceil_mode: bool = False
    output: Pair = (1, 1)
    start: int = 0
    stop: int | None = None
    block: int = 1
    weight: bool = True
    per_channel: bool = False
    fn: str = ""


@dataclass
class Network:
    """A validated network: layers in an order where every layer comes after its inputs."""

    name: str
    input_size: Pair | None
    in_channels: int
    layers: list[Layer]
    source: str = ""
    feature_layer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _int(layer, fieldname, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(fieldname, value, "must be an integer", layer=layer)
    if value < minimum:
        raise field_error(fieldname, value, f"must be >= {minimum}", layer=layer)
    return value


def pair(layer: str | None, fieldname: str, value: Any, minimum: int = 1) -> Pair:
    """An int or ``[h, w]`` -> ``(h, w)``, each at least ``minimum``."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise field_error(fieldname, value, "must be an integer or a pair [h, w]", layer=layer)
        return (_int(layer, fieldname, value[0], minimum), _int(layer, fieldname, value[1], minimum))
    v = _int(layer, fieldname, value, minimum)
    return (v, v)


def padding_spec(layer: str | None, value: Any) -> tuple[AxisPadding, AxisPadding]:
    """int | [h, w] | [[top, bottom], [left, right]] | 'valid' | 'same' | 'tf_same' -> per-axis padding."""
    if isinstance(value, str):
        if value not in PADDING_MODES:
            raise field_error(
                "padding", value, f"must be an integer, a list or one of {', '.join(PADDING_MODES)}", layer=layer
            )
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (list, tuple)) for v in value):
        axes = []
        for v in value:
            if len(v) != 2:
                raise field_error("padding", value, "must be [[top, bottom], [left, right]]", layer=layer)
            axes.append((_int(layer, "padding", v[0], 0), _int(layer, "padding", v[1], 0)))
        return (axes[0], axes[1])
    h, w = pair(layer, "padding", value, minimum=0)
    return ((h, h), (w, w))


def _layer(raw: Any, index: int, previous: str) -> Layer:
    if not isinstance(raw, dict):
        raise field_error(f"layers[{index}]", raw, "must be a table/object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise field_error(f"layers[{index}].name", name, "every layer needs a non-empty string name")
    op = raw.get("op")
    if op not in OPS:
        raise field_error("op", op, f"unknown op; known: {', '.join(OPS)}", layer=name)
    allowed = _COMMON | _FIELDS.get(op, set())
    for key in raw:
        if key not in allowed:
            raise field_error(
                key, raw[key], f"unknown field for op '{op}'; allowed: {', '.join(sorted(allowed))}", layer=name
            )

    inputs = raw.get("inputs", [previous])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise field_error("inputs", inputs, "must be a non-empty list of layer names or 'input'", layer=name)
    if op in MERGE_OPS and len(inputs) < 2:
        raise field_error("inputs", inputs, f"'{op}' merges two or more inputs", layer=name)
    if op == "gate" and len(inputs) != 2:
        raise field_error("inputs", inputs, "'gate' takes two inputs: the map and its gate", layer=name)
    if op not in MERGE_OPS + ("gate", "pointwise") and len(inputs) != 1:
        raise field_error("inputs", inputs, f"'{op}' takes exactly one input", layer=name)

    kw: dict[str, Any] = {"name": name, "op": op, "inputs": tuple(inputs)}
    if op in CONV_OPS + POOL_OPS:
        if "kernel" not in raw:
            raise field_error("kernel", None, f"'{op}' needs a kernel", layer=name)
        kw["kernel"] = pair(name, "kernel", raw["kernel"])
        kw["stride"] = pair(name, "stride", raw.get("stride", 1))
        kw["dilation"] = pair(name, "dilation", raw.get("dilation", 1))
        kw["padding"] = padding_spec(name, raw.get("padding", 0))
        ceil_mode = raw.get("ceil_mode", False)
        if not isinstance(ceil_mode, bool):
            raise field_error("ceil_mode", ceil_mode, "must be true or false", layer=name)
        kw["ceil_mode"] = ceil_mode
    if op == "deconv":
        if any(isinstance(p, str) for p in kw["padding"]):
            raise field_error(
                "padding", raw.get("padding"), "a transposed conv takes explicit integer padding", layer=name
            )
        kw["output_padding"] = pair(name, "output_padding", raw.get("output_padding", 0), minimum=0)
        for axis in range(2):
            if kw["output_padding"][axis] >= max(kw["stride"][axis], kw["dilation"][axis]):
                raise field_error(
                    "output_padding",
                    raw.get("output_padding"),
                    "must be smaller than the stride or the dilation",
                    layer=name,
                )
    if op in CONV_OPS + ("linear",):
        if "channels" not in raw:
            raise field_error("channels", None, f"'{op}' needs output channels", layer=name)
        kw["channels"] = _int(name, "channels", raw["channels"], 1)
        bias = raw.get("bias", True)
        if not isinstance(bias, bool):
            raise field_error("bias", bias, "must be true or false", layer=name)
        kw["bias"] = bias
    if op in CONV_OPS:
        kw["groups"] = _int(name, "groups", raw.get("groups", 1), 1)
        if kw["channels"] % kw["groups"]:
            raise field_error("groups", kw["groups"], f"must divide the output channels ({kw['channels']})", layer=name)
    if op == "upsample":
        if "scale" not in raw:
            raise field_error("scale", None, "'upsample' needs an integer scale factor", layer=name)
        kw["scale"] = pair(name, "scale", raw["scale"])
        mode = raw.get("mode", "nearest")
        if mode not in UPSAMPLE_MODES:
            raise field_error("mode", mode, f"must be one of {', '.join(UPSAMPLE_MODES)}", layer=name)
        kw["mode"] = mode
    if op == "global_pool":
        mode = raw.get("mode", "avg")
        if mode not in ("avg", "max"):
            raise field_error("mode", mode, "must be avg or max", layer=name)
        kw["mode"] = mode
    if op in ADAPTIVE_OPS:
        if "output" not in raw:
            raise field_error("output", None, f"'{op}' needs an output size", layer=name)
        kw["output"] = pair(name, "output", raw["output"])
    if op == "slice":
        kw["start"] = _int(name, "start", raw.get("start", 0), 0)
        if raw.get("stop") is not None:
            kw["stop"] = _int(name, "stop", raw["stop"], 1)
            if kw["stop"] <= kw["start"]:
                raise field_error("stop", kw["stop"], f"must be larger than start ({kw['start']})", layer=name)
    if op in BLOCK_OPS:
        if "block" not in raw:
            raise field_error("block", None, f"'{op}' needs a block size", layer=name)
        kw["block"] = _int(name, "block", raw["block"], 1)
    for flag in ("per_channel", "weight") + (("bias",) if op in ("layernorm", "affine") else ()):
        if flag in raw:
            if not isinstance(raw[flag], bool):
                raise field_error(flag, raw[flag], "must be true or false", layer=name)
            kw[flag] = raw[flag]
    if op == "pointwise":
        fn = raw.get("fn", "")
        if not isinstance(fn, str):
            raise field_error("fn", fn, "must be a string naming the elementwise function", layer=name)
        kw["fn"] = fn
    return Layer(**kw)


def is_merge(layer: Layer) -> bool:
    """True for layers that combine several aligned maps: add, concat, and a pointwise layer with several inputs
    (an elementwise function of them, e.g. x·0.5·(1 + erf(x/√2)) written out: geometry and ERF as for add)."""
    return layer.op in MERGE_OPS or (layer.op == "pointwise" and len(layer.inputs) > 1)


def _topological(layers: list[Layer]) -> list[Layer]:
    """Order layers so each follows its inputs, keeping the file order where it already does."""
    by_name: dict[str, Layer] = {}
    for layer in layers:
        if layer.name == "input":
            raise field_error("name", layer.name, "'input' is reserved for the network input", layer=layer.name)
        if layer.name in by_name:
            raise field_error("name", layer.name, "layer names must be unique", layer=layer.name)
        by_name[layer.name] = layer
    for layer in layers:
        for src in layer.inputs:
            if src != "input" and src not in by_name:
                raise field_error("inputs", src, "no layer of that name (or 'input')", layer=layer.name)
    done: set[str] = {"input"}
    for layer in layers:  # the usual case, and always an importer's: the file order already is one
        if not all(src in done for src in layer.inputs):
            break
        done.add(layer.name)
    else:
        return list(layers)
    done = {"input"}
    order: list[Layer] = []
    pending = list(layers)
    while pending:
        ready = [layer for layer in pending if all(src in done for src in layer.inputs)]
        if not ready:
            stuck = pending[0]
            raise field_error("inputs", list(stuck.inputs), "the layers form a cycle", layer=stuck.name)
        first = ready[0]
        order.append(first)
        done.add(first.name)
        pending.remove(first)
    return order


def parse_network(data: Any, input_size: Any = None) -> Network:
    """Validate a spec already loaded as Python data; ``input_size`` overrides the spec's."""
    if not isinstance(data, dict):
        raise field_error("spec", type(data).__name__, "a network spec is a JSON/TOML object")
    for key in data:
        if key not in _TOP_FIELDS:
            raise field_error(key, data[key], f"unknown top-level field; allowed: {', '.join(sorted(_TOP_FIELDS))}")
    name = data.get("name", "network")
    inp = data.get("input", {})
    if not isinstance(inp, dict):
        raise field_error("input", inp, "must be an object with size and channels")
    for key in inp:
        if key not in ("size", "channels"):
            raise field_error(key, inp[key], "unknown field; allowed: channels, size", layer="input")
    size = input_size if input_size is not None else inp.get("size")
    size = None if size is None else pair("input", "size", size)
    channels = _int("input", "channels", inp.get("channels", 3), 1)
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise field_error("layers", raw_layers, "a network needs a non-empty list of layers")
    layers = []
    previous = "input"
    for i, raw in enumerate(raw_layers):
        layer = _layer(raw, i, previous)
        layers.append(layer)
        previous = layer.name
    ordered = _topological(layers)
    feature = data.get("feature_layer")
    if feature is not None and feature not in {layer.name for layer in layers}:
        raise field_error("feature_layer", feature, "no layer of that name")
    return Network(
        name=name,
        input_size=size,
        in_channels=channels,
        layers=ordered,
        source=data.get("source", ""),
        feature_layer=feature,
    )


def load_spec_data(path: str | Path) -> Any:
    """Read a JSON or TOML spec file (by extension; anything else is tried as JSON); a binary, non-UTF-8
    or too deeply nested file is a one-line error."""

    p = Path(path)
    try:
        text = read_text(p, "file")
    except RFSweepError as exc:
        if "UTF-8" not in str(exc):
            raise
        raise field_error(
            "file", str(p), "is not a network spec (JSON/TOML text); an ONNX model needs the .onnx extension"
        ) from None
    kind = "TOML" if p.suffix.lower() == ".toml" else "JSON"
    try:
        return tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise field_error("file", str(p), f"is not valid {kind} (a network spec): {exc}") from None
    except RecursionError:
        raise field_error("file", str(p), f"is nested too deeply to be a {kind} network spec") from None


def parse_input_size(value: Any) -> Pair | None:
    """'224', '224x320', 224 or [h, w] -> (h, w); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.lower().split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise field_error("input-size", value, "must be N or HxW") from None
        if len(nums) not in (1, 2):
            raise field_error("input-size", value, "must be N or HxW")
        value = nums[0] if len(nums) == 1 else nums
    return pair(None, "input-size", value)
