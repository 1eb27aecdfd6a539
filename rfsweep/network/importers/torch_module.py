"""PyTorch modules -> an ONNX ModelProto in memory, for :mod:`rfsweep.network.importers.onnx_ops`.

``torch.onnx.export(..., dynamo=True)`` (torch 2.9+; it needs the onnxscript package) returns an
ONNXProgram whose ``model_proto`` is the graph, with every node's module scope in its metadata
(``pkg.torch.onnx.name_scopes``), which gives the layers torchvision's and timm's module names.

Its default optimisation is turned off (``optimize=False``): it folds BatchNorm into the preceding conv
(``FuseBatchNormIntoConv``: the BN's 2·C parameters vanish and the conv gains a bias) and drops biases
that happen to be all zeros (``RemoveOptionalBiasFromConv``: torchvision initialises the biases of
EfficientNet's squeeze-excitation convs to zeros), so the parameter counts would no longer be torch's.
Unoptimised, bias-free convs get a zero bias computed with Expand, which the importer recognises.

``nn.AdaptiveAvgPool2d`` (torchvision's AlexNet and VGG heads) is exported as what it is, a node
``rfsweep.AdaptiveAvgPool2d(output_size)`` (a schema registered in onnx's registry under the domain
``rfsweep``; torch's exporter writes its output shape), so the spec holds an ``adaptive_avgpool`` that is
right at every input size. The default translation writes an AveragePool that is the identity at 224
(wrong elsewhere), and at sizes where the windows differ a gather-based decomposition that ONNX shape
inference rejects. An output of 1x1 stays a ReduceMean: a global pool. ``nn.PixelUnshuffle`` is exported as
SpaceToDepth (torch writes a 6-D Reshape and Transpose); PixelShuffle already is DepthToSpace.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

from rfsweep.core.errors import field_error


def _torch():
    try:
        import torch
    except ImportError:
        raise field_error("model", "nn.Module", "importing a PyTorch module needs torch (your own install)") from None
    return torch


def is_module(obj: Any) -> bool:
    """True for a torch.nn.Module, without importing torch (a caller holding one has imported it)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def named_module(name: str):
    """The ``nn.Module`` a model name makes, without weights: a ``torchvision.models`` name, else a timm
    name when timm is installed; None when neither knows it or torch is not installed."""
    import importlib.util

    if not isinstance(name, str) or importlib.util.find_spec("torch") is None:
        return None
    if importlib.util.find_spec("torchvision") is not None:
        from torchvision import models

        if name in models.list_models():
            return models.get_model(name, weights=None).eval()
    if importlib.util.find_spec("timm") is not None:
        import timm

        if timm.is_model(name):
            return timm.create_model(name, pretrained=False).eval()
    return None


def export_onnx(module: Any, size: tuple[int, int], in_channels: int):
    """The ModelProto of ``module`` traced on a zero image of ``in_channels`` x ``size``."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise field_error("model", type(module).__name__, "from_torch takes a torch.nn.Module")
    try:
        import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)
    except ImportError:
        raise field_error(
            "model", type(module).__name__, "torch.onnx.export(dynamo=True) needs the onnxscript package"
        ) from None
    x = torch.zeros(1, in_channels, *size)
    was_training = module.training
    module.eval()
    quiet = io.StringIO()
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(quiet),
            _quiet_loggers(),
            torch.no_grad(),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (x,),
                dynamo=True,
                optimize=False,
                verbose=False,
                report=False,
                custom_translation_table={
                    torch.ops.aten.adaptive_avg_pool2d.default: _adaptive_avg_pool2d(),
                    torch.ops.aten.pixel_unshuffle.default: _pixel_unshuffle,
                },
            )
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise field_error(
            "model",
            type(module).__name__,
            f"torch.onnx.export(dynamo=True) failed at {size[0]}x{size[1]}: {msg[:240]}",
        ) from None
    finally:
        module.train(was_training)
    _drop_weights(program.model)
    return program.model_proto


def _drop_weights(model) -> None:
    """Large initializers become references to external data that is never read: the importer needs their
    shapes only, the ModelProto stays small (VGG-16: 79 KB instead of 553 MB, serialised in 2 ms), and
    models above protobuf's 2 GB limit (regnet_y_128gf) import too."""
    import onnx_ir as ir

    from rfsweep.network.importers.onnx_model import LARGE

    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is not None and tensor.nbytes > LARGE:
            value.const_value = ir.ExternalTensor(
                "rfsweep-weights-not-kept", 0, tensor.nbytes, tensor.dtype, shape=tensor.shape, name=value.name
            )


ADAPTIVE_DOMAIN = "rfsweep"


def _adaptive_avg_pool2d():
    """An onnxscript translation of aten.adaptive_avg_pool2d: ReduceMean for 1x1, else our own node."""
    from onnx import defs
    from onnxscript import opset18 as op
    from onnxscript.values import Opset

    if not defs.has("AdaptiveAvgPool2d", ADAPTIVE_DOMAIN):
        schema = defs.OpSchema(
            "AdaptiveAvgPool2d",
            ADAPTIVE_DOMAIN,
            1,
            doc="PyTorch's adaptive_avg_pool2d: unit i of o pools floor(i*n/o) .. ceil((i+1)*n/o)-1",
            inputs=[defs.OpSchema.FormalParameter("X", "T")],
            outputs=[defs.OpSchema.FormalParameter("Y", "T")],
            type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"], "")],
            attributes=[defs.OpSchema.Attribute("output_size", defs.OpSchema.AttrType.INTS, "[h, w]")],
        )
        defs.register_schema(schema)
    ours = Opset(ADAPTIVE_DOMAIN, 1)

    def adaptive_avg_pool2d(self, output_size):
        size = [int(v) for v in output_size]
        if size == [1, 1]:
            return op.ReduceMean(self, op.Constant(value_ints=[-2, -1]), keepdims=1)
        return ours.AdaptiveAvgPool2d(self, output_size=size)

    return adaptive_avg_pool2d


def _pixel_unshuffle(self, downscale_factor):
    """aten.pixel_unshuffle as ONNX SpaceToDepth: the same geometry and channel count (the channel order
    differs, which no receptive field sees); torch's own translation is a 6-D Reshape/Transpose."""
    from onnxscript import opset18 as op

    return op.SpaceToDepth(self, blocksize=int(downscale_factor))


@contextlib.contextmanager
def _quiet_loggers():
    """The exporter logs its progress, warnings and, on failure, whole graphs to stderr through torch's own
    loggers; rfsweep promises one line. Silenced while it runs, restored afterwards."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("torch", "onnxscript", "onnx_ir")]
    loggers = [logging.getLogger(n) for n in ("torch", "onnxscript", "onnx_ir", *names)]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level, disabled in saved:
            lg.setLevel(level)
            lg.disabled = disabled
