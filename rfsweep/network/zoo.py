"""Networks by name or path: the built-in models (spec files shipped in data/models/, installed as
rfsweep._data), spec files, ONNX models and PyTorch modules resolved to a Network, and :func:`analyze`
(``rfsweep.analyze``), the per-layer table of any of them."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas costs 0.3 s to import: to_frame imports it when a table is made
    import pandas as pd

from rfsweep.core.errors import SpecError
from rfsweep.network.analyze import evaluate, to_frame
from rfsweep.network.spec import Network, load_spec_data, parse_input_size, parse_network


def _models_dir():
    return resources.files("rfsweep._data") / "models"


def list_models() -> list[str]:
    """Names of the built-in models, sorted."""
    return sorted(p.name[: -len(".json")] for p in _models_dir().iterdir() if p.name.endswith(".json"))


def model_data(name: str) -> dict[str, Any]:
    """The raw spec of a built-in model."""
    path = _models_dir() / f"{name}.json"
    if not path.is_file():
        raise SpecError(
            f"model {name!r}: not a spec file, a built-in model (`rfsweep zoo` lists them), nor a torchvision or "
            "timm model name (with torch installed)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def resolve(spec_or_name: Any, input_size: Any = None) -> Network:
    """A Network from a Network, a spec dict, a spec file path, an ONNX model (``.onnx``), a PyTorch
    ``nn.Module`` (exported at ``input_size``, 224 by default) or a zoo model name."""
    from rfsweep.network.importers.torch_module import is_module

    if isinstance(spec_or_name, Network):
        if input_size is None:
            return spec_or_name
        spec_or_name = spec_or_name.extra.get("raw") or spec_or_name
        if isinstance(spec_or_name, Network):
            raise SpecError("input-size: cannot override the input size of a Network object; pass its spec")
    if isinstance(spec_or_name, dict):
        data = spec_or_name
    elif is_module(spec_or_name):
        from rfsweep.network.importers import from_torch

        data = from_torch(spec_or_name, input_size=input_size or 224)
    else:
        text = str(spec_or_name)
        path = Path(text)
        if path.suffix.lower() == ".onnx":
            from rfsweep.network.importers import from_onnx

            data = from_onnx(path, input_size=input_size)
        elif path.suffix.lower() in (".json", ".toml") or path.is_file():
            data = load_spec_data(path)
        elif text in list_models():
            data = model_data(text)
        else:  # a torchvision (or timm) model name, with torch installed
            from rfsweep.network.importers import from_torch
            from rfsweep.network.importers.torch_module import named_module

            module = named_module(text)
            if module is None:
                model_data(text)  # the zoo's one-line error
            data = from_torch(module, input_size=input_size or 224)
    net = parse_network(data, input_size=input_size)
    net.extra["raw"] = data
    return net


def analyze(spec_or_name: Any, input_size: Any = None) -> pd.DataFrame:
    """Per-layer receptive-field table of a network.

    Parameters
    ----------
    spec_or_name : str, path, dict or Network
        A built-in model name (``rfsweep zoo``), a JSON/TOML spec file, an ONNX model (``.onnx``, needs
        ``rfsweep[onnx]``), a spec dict, a Network, or a PyTorch ``nn.Module`` (imported through ONNX at
        ``input_size``, default 224); with torch installed, any ``torchvision.models`` name
        (``"mobilenet_v2"``, built without weights) and, with timm installed, a timm model name.
    input_size : int, (h, w) or 'HxW', optional
        Overrides the spec's input size.

    Returns
    -------
    pandas.DataFrame
        Columns name, op, out_size, channels, jump, rf, eff_padding, center, params, macs, erf_sigma
        (spatial ones as (h, w) tuples), global (the layer sees the whole input) and flags
        (``rf>input``, ``unproductive``, ``gated``).
    """
    net = resolve(spec_or_name, parse_input_size(input_size))
    return to_frame(evaluate(net))
