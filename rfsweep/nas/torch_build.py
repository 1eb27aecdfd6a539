"""torch modules from rfsweep.nas.torch_modules' descriptions (torch imported here, lazily, only when called):
one builder shared by :func:`rfsweep.torch.build` and the latency measurements (rfsweep.nas.latency_measure), so
a block is timed exactly as the exported model builds it."""

from __future__ import annotations

from rfsweep.nas.torch_modules import BlockModel, TorchModule


def instantiate_blocks(model: BlockModel):
    """``BlockNet(features, head)`` of rfsweep/nas/torch_blocks.py's classes and torch.nn modules."""
    from torch import nn

    from rfsweep.nas import torch_blocks

    def make(m: TorchModule):
        return getattr(torch_blocks if m.block else nn, m.cls)(*m.args, **dict(m.kwargs))

    return torch_blocks.BlockNet([(m.name, make(m)) for m in model.features], [(m.name, make(m)) for m in model.head])


__all__ = ["instantiate_blocks"]
