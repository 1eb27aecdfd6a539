"""An ONNX model read for import: static shapes from ONNX shape inference, constant values, layer names.

Shapes come from ``onnx.shape_inference.infer_shapes(strict_mode=True, data_prop=True)`` at the model's
static input size, or at another size after rewriting the input's height and width (then every inferred
shape is cleared first). Inference runs on a shell of the model whose large initializers keep their
type and dims but not their data: measured on torchvision's ResNet-50 (103 MB), 0.012 s instead of 1.08 s,
and the caller's ModelProto is never changed.

Constant values (a Pad's pads, a Clip's bounds, the axes of a ReduceMean, whether a computed bias is
zero) are evaluated on demand: initializers, Constant nodes, Shape of a tensor with a static shape, and any
node whose inputs are all constant, with plain numpy for the ops exporters use to build them and
``onnx.reference`` for the rest (about 2 ms a node, so it is the fallback, not the rule).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import numpy as np

from rfsweep.core.errors import field_error

LARGE = 4096  # initializers with more bytes than this keep dims only in the inference shell
FOLD_LIMIT = 1024  # computed constants up to this many elements are folded before shape inference
_DETERMINISTIC_SOURCES = {"Constant", "ConstantOfShape", "Range", "EyeLike"}
_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}


def require_onnx():
    """The onnx module, or a one-line error naming the extra."""
    try:
        import onnx
    except ImportError:
        raise field_error(
            "model", "onnx", "reading ONNX models needs the onnx package: pip install 'rfsweep[onnx]'"
        ) from None
    return onnx


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load(source: Any):
    """A ModelProto from a path or a ModelProto (not copied: the caller's object is only read)."""
    onnx = require_onnx()
    if isinstance(source, onnx.ModelProto):
        return source
    path = Path(str(source))
    if not path.is_file():
        raise field_error("file", str(path), "no such file")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not an ONNX model
        raise field_error("file", str(path), f"is not an ONNX model ({_one_line(exc, 120)})") from None


def _dims(type_proto) -> tuple[int, ...] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in type_proto.tensor_type.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(d.dim_value)
    return tuple(dims)


class Model:
    """A model's graph with static shapes at one input size, constant values on demand and layer names."""

    def __init__(self, proto, input_size: tuple[int, int] | None):
        onnx = require_onnx()
        self.onnx = onnx
        self.proto = proto
        graph = proto.graph
        self.initializers = {t.name: t for t in graph.initializer}  # the original, with data
        inputs = [i for i in graph.input if i.name not in self.initializers]
        if len(inputs) != 1:
            raise field_error(
                "input",
                [i.name for i in inputs],
                "rfsweep imports models with exactly one (image) input",
            )
        self.input_name = inputs[0].name
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.shapes: dict[str, tuple[int, ...] | None] = {n: tuple(t.dims) for n, t in self.initializers.items()}
        self.types: dict[str, int] = {n: t.data_type for n, t in self.initializers.items()}
        self.producer = {out: node for node in graph.node for out in node.output if out}
        self._const: dict[str, bool] = {}
        self._values: dict[str, np.ndarray] = {}
        self.folded: set[str] = set()  # computed constants written into the shell as Constant nodes
        shell = self._shell(proto, input_size)
        for _ in range(4):  # fold what the new shapes make constant (Shape of a static tensor), infer again
            inferred = self._infer(shell, input_size)
            self.graph = inferred.graph
            for vi in list(self.graph.input) + list(self.graph.value_info) + list(self.graph.output):
                self.shapes[vi.name] = _dims(vi.type)
                self.types[vi.name] = vi.type.tensor_type.elem_type
            self.producer = {out: node for node in self.graph.node for out in node.output if out}
            self._const = {}
            before = len(self.folded)
            nodes = self._fold(shell.graph.node)
            if len(self.folded) == before:
                break
            shell.graph.ClearField("node")
            shell.graph.node.extend(nodes)
        self.input_shape = self.shapes[self.input_name]

    def _infer(self, shell, input_size):
        try:
            return self.onnx.shape_inference.infer_shapes(shell, check_type=False, strict_mode=True, data_prop=True)
        except Exception as exc:
            where = "" if input_size is None else f" at input {input_size[0]}x{input_size[1]}"
            hint = (
                ""
                if input_size is None
                else "; a size baked into a constant (e.g. a Reshape to a fixed shape) stops it at other sizes"
            )
            raise field_error(
                "input-size" if input_size else "model",
                self.proto.graph.name or "model" if input_size is None else f"{input_size[0]}x{input_size[1]}",
                f"ONNX shape inference fails{where}: {_one_line(exc, 200)}{hint}",
            ) from None

    def _fold(self, nodes) -> list:
        """Nodes with the small constants they compute from initializers, Constant nodes and the shapes known so
        far replaced by Constant nodes: shape inference propagates few ops' values (the axes of a ReduceMean
        computed by a Reshape of a constant, a Slice's ends computed from a Shape, would leave an output shape
        unknown)."""
        known = set(self.initializers)
        out = []
        for node in nodes:
            if node.op_type in ("Shape", "Size"):  # the input's value does not matter, its static shape does
                needed = []
                pure = self.shape(node.input[0]) is not None
            else:
                needed = node.input[:1] if node.op_type == "CastLike" else node.input  # CastLike: a type only
                pure = node.op_type not in _NONDETERMINISTIC and node.domain in ("", "ai.onnx")
            pure = pure and all(not i or i in known for i in needed)
            if node.op_type == "Constant" or not pure:
                if node.op_type == "Constant":
                    known.update(node.output)
                out.append(node)
                continue
            try:
                values = [self.value(o) for o in node.output]
            except Exception:  # an op the evaluators cannot run: leave it to shape inference
                out.append(node)
                continue
            if any(np.asarray(v).size > FOLD_LIMIT for v in values):
                out.append(node)
                continue
            for o, v in zip(node.output, values):
                tensor = self.onnx.numpy_helper.from_array(np.asarray(v), o)
                out.append(self.onnx.helper.make_node("Constant", [], [o], value=tensor))
                self.folded.add(o)
                known.add(o)
        return out

    def _shell(self, proto, input_size):
        """A copy of the model for shape inference: nodes and small initializers as they are, large
        initializers with dims only, the input's batch set to 1 and its size to ``input_size``."""
        onnx = self.onnx
        shell = onnx.ModelProto()
        shell.ir_version = proto.ir_version
        shell.opset_import.extend(proto.opset_import)
        shell.functions.extend(proto.functions)
        g, src = shell.graph, proto.graph
        g.name = src.name
        g.node.extend(self._fold(src.node))
        g.input.extend(src.input)
        g.output.extend(src.output)
        for t in src.initializer:
            if (len(t.raw_data) if t.raw_data else t.ByteSize()) > LARGE:
                light = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims)
                g.initializer.append(light)
            else:
                g.initializer.append(t)
        if input_size is None:
            g.value_info.extend(src.value_info)
        else:  # every inferred shape may change: infer all of them again
            for out in g.output:
                out.type.tensor_type.ClearField("shape")
        image = next(i for i in g.input if i.name == self.input_name)
        dims = image.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise field_error(
                "input", self.input_name, f"rfsweep imports [N, C, H, W] image inputs; this one has rank {len(dims)}"
            )
        if not dims[1].HasField("dim_value"):
            raise field_error("input", self.input_name, "the input's channel count is not fixed")
        if not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
        if input_size is not None:
            dims[2].dim_value, dims[3].dim_value = input_size
        elif not (dims[2].HasField("dim_value") and dims[3].HasField("dim_value")):
            raise field_error(
                "input-size",
                None,
                f"the model's input '{self.input_name}' has no fixed height and width; give one (--input-size)",
            )
        return shell

    # ------------------------------------------------------------------ shapes and constants

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def is_const(self, name: str) -> bool:
        """True when the tensor's value does not depend on the model's input."""
        if not name:
            return True
        if name in self._const:
            return self._const[name]
        self._const[name] = False  # guards against cycles (none in a valid graph)
        if name in self.initializers:
            result = True
        elif name == self.input_name or name not in self.producer:
            result = False
        else:
            node = self.producer[name]
            if node.op_type in _NONDETERMINISTIC:
                result = False
            elif node.op_type in ("Shape", "Size"):
                result = self.shape(node.input[0]) is not None
            elif node.op_type == "CastLike":  # the second input gives only its type
                result = self.is_const(node.input[0])
            elif node.op_type in _DETERMINISTIC_SOURCES and not any(node.input):
                result = True
            else:
                result = bool(node.input) and all(self.is_const(i) for i in node.input)
        self._const[name] = result
        return result

    def value(self, name: str) -> np.ndarray:
        """The value of a constant tensor."""
        if name in self._values:
            return self._values[name]
        if name in self.initializers:
            value = self.onnx.numpy_helper.to_array(self.initializers[name])
        else:
            node = self.producer[name]
            outputs = self._evaluate(node)
            for out, v in zip(node.output, outputs):
                self._values[out] = v
            value = self._values[name]
        self._values[name] = value
        return value

    def _evaluate(self, node) -> list[np.ndarray]:
        op = node.op_type
        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "Shape":
            shape = np.array(self.shape(node.input[0]), dtype=np.int64)
            return [shape[attrs.get("start", 0) : attrs.get("end", len(shape))]]
        if op == "Size":
            return [np.array(int(np.prod(self.shape(node.input[0]))), dtype=np.int64)]
        if op == "CastLike":
            return [np.asarray(self.value(node.input[0])).astype(_onnx_dtype(self.types.get(node.input[1], 1)))]
        if op == "Constant":
            (key, v) = next(iter(attrs.items()))
            if key == "value":
                return [self.onnx.numpy_helper.to_array(v)]
            dtype = {"value_float": np.float32, "value_floats": np.float32}.get(key, np.int64)
            return [np.array(v, dtype=dtype)]
        args = [self.value(i) if i else None for i in node.input]
        native = _NATIVE.get(op)
        if native is not None:
            return [native(args, attrs)]
        from onnx.reference import ReferenceEvaluator

        feeds = {i: a for i, a in zip(node.input, args) if i}
        return list(ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds))

    def ints(self, name: str) -> list[int]:
        """A constant as a flat list of Python ints."""
        return [int(v) for v in np.asarray(self.value(name)).ravel()]

    # ------------------------------------------------------------------ names

    def node_name(self, node) -> str:
        """The PyTorch module path where the exporter recorded it, else the node's name, else its first output."""
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = _literal(meta.get("pkg.torch.onnx.name_scopes"))
        classes = _literal(meta.get("pkg.torch.onnx.class_hierarchy"))
        if scopes and len(scopes) >= 2:
            module, call = scopes[-2], scopes[-1]
            leaf = (
                classes
                and len(classes) == len(scopes)
                and str(classes[-2]).startswith("torch.nn.modules.")
                and ".container." not in str(classes[-2])
            )
            if leaf and module:
                return module
            base = re.sub(r"_\d+$", "", call) or call
            return f"{module}.{base}" if module else base
        return node.name or node.output[0]


def _literal(text: str | None):
    if not text:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, list) else None


def _axes(attrs, args, index, rank):
    axes = attrs.get("axes")
    if axes is None and len(args) > index and args[index] is not None:
        axes = [int(a) for a in np.asarray(args[index]).ravel()]
    return None if axes is None else [a % rank for a in axes]


def _unsqueeze(args, attrs):
    x = args[0]
    axes = attrs.get("axes")
    if axes is None:
        axes = [int(v) for v in np.asarray(args[1]).ravel()]
    rank = x.ndim + len(axes)
    for a in sorted(v % rank for v in axes):
        x = np.expand_dims(x, a)
    return x


def _squeeze(args, attrs):
    x = args[0]
    axes = _axes(attrs, args, 1, x.ndim)
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(axes))


def _reshape(args, attrs):
    x, shape = args[0], [int(v) for v in args[1]]
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x.reshape(shape)


def _slice(args, attrs):
    x = args[0]
    starts, ends = [int(v) for v in args[1]], [int(v) for v in args[2]]
    axes = [int(v) % x.ndim for v in args[3]] if len(args) > 3 and args[3] is not None else list(range(len(starts)))
    steps = [int(v) for v in args[4]] if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a] = slice(s, e, st)
    return x[tuple(index)]


_NATIVE = {
    "Identity": lambda a, at: a[0],
    "Cast": lambda a, at: a[0].astype(_onnx_dtype(at["to"])),
    "Expand": lambda a, at: a[0] * np.ones([int(v) for v in a[1]], dtype=a[0].dtype),
    "Reshape": _reshape,
    "Concat": lambda a, at: np.concatenate([np.atleast_1d(x) for x in a], axis=at.get("axis", 0)),
    "Gather": lambda a, at: np.take(a[0], a[1], axis=at.get("axis", 0)),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Transpose": lambda a, at: np.transpose(a[0], at.get("perm")),
    "Slice": _slice,
    "Add": lambda a, at: a[0] + a[1],
    "Sub": lambda a, at: a[0] - a[1],
    "Mul": lambda a, at: a[0] * a[1],
    "Neg": lambda a, at: -a[0],
    "ConstantOfShape": lambda a, at: np.full(
        [int(v) for v in a[0]],
        _tensor_scalar(at.get("value")),
    ),
}


def _onnx_dtype(to: int):
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(to)


def _tensor_scalar(t):
    if t is None:
        return np.float32(0)
    from onnx import numpy_helper

    return numpy_helper.to_array(t).ravel()[0]
