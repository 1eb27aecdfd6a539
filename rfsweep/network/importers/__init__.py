"""Importers: real models -> the spec dict a user could write (then spec.py and the analyzer as usual).

An importer only translates; every check the analyzer makes (alignment of merges, channel counts,
unknown fields) applies to imported models too. ``onnx`` and ``torch`` are imported only when an
importer is called, so ``import rfsweep`` stays light.
"""

from __future__ import annotations

from typing import Any


def from_onnx(model: Any, input_size: Any = None) -> dict:
    """The network spec of an ONNX model.

    Parameters
    ----------
    model : str, path or onnx.ModelProto
        A ``.onnx`` file or a loaded model with one image input ``[N, C, H, W]``.
    input_size : int, (h, w) or 'HxW', optional
        Re-run ONNX shape inference at this size instead of the model's own (needed when the model's
        height and width are symbolic). Sizes baked into constants (a Reshape to ``[1, 9216]``) stop it:
        that is an error naming the node.

    Returns
    -------
    dict
        A spec (``name``, ``source``, ``input``, ``layers``) that :func:`rfsweep.network.analyze` reads; every
        layer is named after its ONNX node (its first output when the node has no name), or after the
        PyTorch module that made it when the exporter recorded the module scopes.

    Raises
    ------
    rfsweep.RFSweepError
        A node whose geometry rfsweep does not know (one line: the node, its op type, its input and
        output shapes), a file that is not an ONNX model, or onnx not installed.
    """
    from rfsweep.network.importers.onnx_ops import translate
    from rfsweep.network.spec import parse_input_size

    return translate(model, parse_input_size(input_size))


def from_torch(module: Any, input_size: Any = 224, in_channels: int = 3) -> dict:
    """The network spec of a PyTorch ``nn.Module``, exported in memory with ``torch.onnx.export(dynamo=True)``.

    Parameters
    ----------
    module : torch.nn.Module
        Exported in eval mode (its training mode is restored afterwards); its weights are not changed.
    input_size : int, (h, w) or 'HxW'
        The input the module is traced at (224 by default).
    in_channels : int
        Channels of the input (3).

    Returns
    -------
    dict
        As :func:`from_onnx`; layers are named after the modules (``layer1.0.conv1``; a module called
        several times gets ``_1``, ``_2`` suffixes; functional ops inside a module ``layer1.0.add``).
    """
    from rfsweep.network.importers.torch_module import export_onnx
    from rfsweep.network.spec import parse_input_size

    size = parse_input_size(input_size)
    if size is None:
        size = (224, 224)
    proto = export_onnx(module, size, in_channels)
    from rfsweep.network.importers.onnx_ops import translate

    spec = translate(proto, None, name=type(module).__name__)
    spec["source"] = f"PyTorch {type(module).__module__}.{type(module).__qualname__} via torch.onnx.export(dynamo=True)"
    return spec


__all__ = ["from_onnx", "from_torch"]
