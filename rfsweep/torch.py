"""Candidates and network specs as PyTorch modules: ``rfsweep.torch.build``.

torch is an optional dependency, imported inside :func:`build` only: ``import rfsweep`` (and this module)
never loads it. The modules are those of the exported source (``rfsweep export --to pytorch``): both come
from one list, :func:`rfsweep.nas.torch_modules.chain_modules` (chains) or
:func:`rfsweep.nas.torch_modules.block_modules` (candidates of a space of stages, rfsweep/nas/torch_blocks.py's
classes).

Example::

    import rfsweep.torch
    model = rfsweep.torch.build(408793350, space="candidates.parquet")   # an arch_id of that file
    model = rfsweep.torch.build(row, space="candidates.parquet", norm="bn")  # a row (dict or Series)
    model = rfsweep.torch.build(json.loads(line))  # a line of `rfsweep export --to jsonl`
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rfsweep.core.errors import field_error
from rfsweep.nas._suggest import Candidate
from rfsweep.nas.export import (
    arch_id_of,
    candidate_network,
    check_block_options,
    load_space,
    network_with,
    with_classes,
)
from rfsweep.nas.torch_build import instantiate_blocks
from rfsweep.nas.torch_modules import TorchModule, block_modules, chain_modules
from rfsweep.space import ids


def build(
    candidate: Any,
    *,
    space: Any = None,
    act: str | None = None,
    norm: str | None = None,
    num_classes: int | None = None,
):
    """An ``nn.Sequential`` of standard torch modules for a candidate or a chain network spec; a
    ``BlockNet`` for a candidate of a space of stages.

    Parameters
    ----------
    candidate : int, row or network spec
        An arch_id (any int-like value: a ``Decimal`` id of a space of stages too), or a row of a search
        output (a dict or pandas Series with ``arch_id``; the layer list columns, when present, must match
        the decoding), or a line of ``rfsweep export --to jsonl`` (it carries its arch_id), with ``space``;
        or a network spec of a
        chain (a dict as ``rfsweep analyze`` reads, e.g. a line of ``rfsweep export --to jsonl``, or a
        parsed :class:`rfsweep.network.spec.Network`).
    space : str, Path, dict or Space, optional
        For an arch_id or a row: the search output it comes from (its path), its ``rfsweep.spec``
        metadata (``rfsweep.output.sink.read_spec``), or the :class:`rfsweep.space.Space`.
    act, norm, num_classes
        As ``rfsweep export``: ``act`` relu|relu6|silu|none after every conv, ``norm`` bn|none (a
        BatchNorm2d between conv and activation, 2·C parameters), ``num_classes`` K adds a head
        (global average pool, flatten, Linear(C, K): C·K + K parameters). For a candidate the defaults
        are the export's (relu, none, no head), so the parameters equal the row's ``params``; for a spec
        the default is the spec as it is, and a given option adds those layers to it. A space of stages
        takes ``num_classes`` only (its head's last linear layer gets K outputs, or a global pool and a
        linear layer are added: ``rfsweep.nas.export.with_classes``); its blocks carry their own
        BatchNorm and activations.

    Returns
    -------
    torch.nn.Sequential or rfsweep.nas.torch_blocks.BlockNet
        A chain: takes ``(N, C_in, H, W)`` and returns the last feature map (or ``(N, K)`` logits with a
        head). At the search's input size the map is ``out_size`` on each side; 'tf_same' padding is
        resolved at that size, so other input sizes keep those pads. A candidate of a space of stages: a
        ``BlockNet`` whose ``features`` return the map before the head's global pool (``out_size`` on
        each side; the row's rf and jump) and whose ``forward`` runs the head too; its parameters are the
        row's ``params`` (head included).
    """
    if isinstance(candidate, Candidate):  # rfsweep.nas.suggest's answer: its arch_id in its space
        candidate, space = candidate.arch_id, candidate.space if space is None else space
    if _is_row(candidate, space):
        sp = load_space(space)
        if sp.has_blocks:
            check_block_options(act, norm, num_classes)
            return instantiate_blocks(block_modules(with_classes(sp, num_classes), sp.decode(arch_id_of(candidate))))
        net = candidate_network(
            candidate,
            sp,
            act="relu" if act is None else act,
            norm="none" if norm is None else norm,
            num_classes=num_classes,
        )
    else:
        net = network_with(candidate, act=act, norm=norm, num_classes=num_classes)
        for previous, layer in zip(["input"] + [x.name for x in net.layers], net.layers):
            if layer.inputs != (previous,):
                raise field_error(
                    "inputs",
                    list(layer.inputs),
                    "a network spec with branches (residual adds, SE gates: a candidate of a space of stages) "
                    "is built from its arch_id and search output: build(arch_id, space=FILE), or "
                    "build(line, space=FILE) for a line of `rfsweep export --to jsonl` (it carries its arch_id)",
                    layer.name,
                )
    return instantiate(chain_modules(net))


def _is_row(candidate: Any, space: Any = None) -> bool:
    """An arch_id, or a row (dict or pandas Series with arch_id), as opposed to a network spec; with a
    ``space``, a JSONL line of ``rfsweep export`` too (a spec that carries its arch_id)."""
    if isinstance(candidate, bool):
        return False
    if space is not None and isinstance(candidate, Mapping) and "arch_id" in candidate:
        return True
    if ids.is_arch_id(candidate):  # int, numpy integer, Decimal (a space of stages' decimal128 ids), ...
        return True
    if hasattr(candidate, "to_dict") and not isinstance(candidate, Mapping):  # a pandas Series
        return "arch_id" in candidate.index
    return isinstance(candidate, Mapping) and "arch_id" in candidate and "layers" not in candidate


def instantiate(modules: list[TorchModule]):
    """``nn.Sequential(OrderedDict(...))`` of the listed modules."""
    from collections import OrderedDict

    from torch import nn

    return nn.Sequential(OrderedDict((m.name, getattr(nn, m.cls)(*m.args, **dict(m.kwargs))) for m in modules))


__all__ = ["build", "instantiate", "instantiate_blocks"]
