"""Built-in models: spec files shipped in data/models/ (installed as rfsweep._data)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from rfsweep.errors import SpecError
from rfsweep.spec import Network, load_spec_data, parse_network


def _models_dir():
    return resources.files("rfsweep._data") / "models"


def list_models() -> list[str]:
    """Names of the built-in models, sorted."""
    return sorted(p.name[: -len(".json")] for p in _models_dir().iterdir() if p.name.endswith(".json"))


def model_data(name: str) -> dict[str, Any]:
    """The raw spec of a built-in model."""
    path = _models_dir() / f"{name}.json"
    if not path.is_file():
        raise SpecError(f"model {name!r}: not a spec file and not a built-in model (`rfsweep zoo` lists them)")
    return json.loads(path.read_text(encoding="utf-8"))


def resolve(spec_or_name: Any, input_size: Any = None) -> Network:
    """A Network from a Network, a spec dict, a spec file path, an ONNX model (``.onnx``), a PyTorch
    ``nn.Module`` (exported at ``input_size``, 224 by default) or a zoo model name."""
    from rfsweep.importers.torch_module import is_module

    if isinstance(spec_or_name, Network):
        if input_size is None:
            return spec_or_name
        spec_or_name = spec_or_name.extra.get("raw") or spec_or_name
        if isinstance(spec_or_name, Network):
            raise SpecError("input-size: cannot override the input size of a Network object; pass its spec")
    if isinstance(spec_or_name, dict):
        data = spec_or_name
    elif is_module(spec_or_name):
        from rfsweep.importers import from_torch

        data = from_torch(spec_or_name, input_size=input_size or 224)
    else:
        text = str(spec_or_name)
        path = Path(text)
        if path.suffix.lower() == ".onnx":
            from rfsweep.importers import from_onnx

            data = from_onnx(path, input_size=input_size)
        elif path.suffix.lower() in (".json", ".toml") or path.is_file():
            data = load_spec_data(path)
        else:
            data = model_data(text)
    net = parse_network(data, input_size=input_size)
    net.extra["raw"] = data
    return net
