"""Spaces of candidates: chain spaces and spaces of stages (blocks, NAS search spaces), their settings,
mixed-radix ids, the stage graph, and their packing into the arrays every kernel takes.

May import: rfsweep.network, rfsweep.kernels, rfsweep.core.

The names users build spaces with are re-exported here: ``from rfsweep.space import build_space, Space``.
"""

from rfsweep.space.chain import build_space
from rfsweep.space.model import OP_CODES, PAD_CODES, POOL_OPS, SEARCH_OPS, Choice, Level, Space, parse_levels

__all__ = ["build_space", "Space", "Choice", "Level", "parse_levels", "OP_CODES", "PAD_CODES", "POOL_OPS",
           "SEARCH_OPS"]  # fmt: skip
