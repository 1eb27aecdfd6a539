"""A search space: the choices at each position, which candidates they make, and their numbering.

A candidate is a chain of ``depth`` layers, depth in [depth_min, depth_max]; position ``p`` picks one
choice from its own list (op, kernel, stride, dilation, channels). Choices are canonical: each network
appears once (dilation > 1 only for conv with kernel > 1; pools have dilation 1 and pass channels), and
each position lists them by the rf they add per unit of jump, d(k-1), then op, kernel, stride,
dilation and channels.

``arch_id`` is the candidate's mixed-radix index: depths in increasing order, and within one depth
the choice indices read as digits (position 0 most significant) of radices ``n_choices[p]``.

Settings are parsed in :mod:`rfsweep.space.settings`; the kernels' arrays and the int64 bounds are built in
:mod:`rfsweep.space.packing`; chain spaces are built from settings in :mod:`rfsweep.space.chain`, spaces of
stages in :mod:`rfsweep.space.stages`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from rfsweep.core.errors import field_error
from rfsweep.kernels import layer_math as lm
from rfsweep.space import settings as st
from rfsweep.space.blocks import expand, jump_factor, rf_step
from rfsweep.space.ids import as_arch_id
from rfsweep.space.packing import kernel_arrays

ROLE_BODY, ROLE_HEAD = lm.ROLE_BODY, lm.ROLE_HEAD
POOL_OPS, SEARCH_OPS, OP_CODES, PAD_CODES = st.POOL_OPS, st.SEARCH_OPS, st.OP_CODES, st.PAD_CODES
DEFAULTS = st.DEFAULTS


@dataclass(frozen=True)
class Choice:
    """One layer a position can take (channels: an int, CH_PASS for pools or CH_WIDTH for the width rule),
    or, with ``blocks``, a sequence of blocks (a stage configuration of a NAS space, a stem, a head:
    rfsweep.space.stages builds those; ``op`` then names it and ``channels`` is its output)."""

    op: str
    kernel: int
    stride: int
    dilation: int
    channels: int
    blocks: tuple = ()

    @cached_property
    def rf_step(self) -> int:
        """The rf the choice adds per unit of the jump before it."""
        if self.blocks:
            return rf_step(self.blocks)
        return self.dilation * (self.kernel - 1)

    @cached_property
    def jump_factor(self) -> int:
        """The choice's whole stride."""
        if self.blocks:
            return jump_factor(self.blocks)
        return self.stride

    @cached_property
    def convs(self) -> int:
        """Convs the choice adds, towards --min-convs (each block but the pools for a choice of blocks)."""
        if self.blocks:
            return sum(1 for b in self.blocks if b.op not in ("maxpool", "avgpool", "global_pool"))
        return int(self.op == "conv")


@dataclass(frozen=True)
class Level:
    """A detector level: anchors of ``anchor`` pixels on the map of jump ``stride``.

    Met by the level's tap, the last layer at that jump, when ``rf_lo <= rf <= rf_hi`` and
    ``2 x erf_sigma >= erf_min`` (as 12 x erf variance >= ``erf12``, exact in integers).
    """

    anchor: int
    stride: int
    rf_lo: int
    rf_hi: int
    erf12: int
    erf_min: float


@dataclass
class Space:
    """A validated search space with its constraints, and the settings it was built from."""

    depth_min: int
    depth_max: int
    input_size: int
    in_channels: int
    padding: str
    bias: bool
    width: int
    max_width: int
    positions: list[list[Choice]]
    rf_min: int
    rf_max: int | None
    min_out_size: int
    max_params: int | None
    max_macs: int | None
    jumps: tuple[int, ...]
    no_unproductive: bool
    target_rf: int | None
    min_convs: int = 0
    levels: tuple[Level, ...] = ()
    max_peak_act: int | None = None  # peak activation memory budget, elements (kernels.costs.block_peak)
    act_bytes: int = 4  # bytes per activation element (--act-dtype)
    # roles[p][c]: bit 1, the choice may be followed by more layers; bit 2, it may be a candidate's
    # last layer. All 3 unless a head (positions index -1) gives the last layer its own choices.
    roles: list[list[int]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    names: list[str] | None = None  # the positions' names in written-out layers (a space of stages' stages)
    stage_positions: tuple[int, ...] = ()  # a space of stages: the positions its [[stages]] fill
    latency: Any = None  # rfsweep.space.latency.Costs of --latency-lut (spaces of stages)
    max_latency: int | None = None  # --max-latency-ms in whole microseconds (rfsweep.space.latency)

    def __post_init__(self):
        if not self.roles:
            self.roles = [[ROLE_BODY | ROLE_HEAD] * len(p) for p in self.positions]

    @cached_property
    def kernel(self) -> lm.KernelArrays:
        """The arrays every kernel takes, built once (see :func:`rfsweep.space.packing.kernel_arrays`)."""
        return kernel_arrays(self)

    @property
    def has_head(self) -> bool:
        return any(r != ROLE_BODY | ROLE_HEAD for rs in self.roles for r in rs)

    @property
    def out_width(self) -> int:
        """Columns of a kernel output row: the metrics, then tap, rf and 12 x erf variance per level."""
        return lm.NO + 3 * len(self.levels)

    # ---- sizes ----
    @property
    def radices(self) -> list[int]:
        return [len(p) for p in self.positions]

    def depth_size(self, depth: int) -> int:
        """arch_ids reserved for one depth: the product of the radices (mixed-radix numbering)."""
        return math.prod(self.radices[:depth])

    @property
    def id_space(self) -> int:
        """arch_ids run over [0, id_space); without a head every id is a candidate."""
        return sum(self.depth_size(d) for d in range(self.depth_min, self.depth_max + 1))

    @cached_property
    def size(self) -> int:
        """Number of candidates (Python int, exact)."""
        body = [sum(1 for r in rs if r & ROLE_BODY) for rs in self.roles]
        head = [sum(1 for r in rs if r & ROLE_HEAD) for rs in self.roles]
        return sum(math.prod(body[: d - 1]) * head[d - 1] for d in range(self.depth_min, self.depth_max + 1))

    def subtree_size(self, prefix: list[int]) -> int:
        """Candidates at or below the node ``prefix`` (the prefix itself when it is a candidate)."""
        t = len(prefix)
        if t and not all(self.roles[p][c] & ROLE_BODY for p, c in enumerate(prefix[:-1])):
            return 0
        body = [sum(1 for r in rs if r & ROLE_BODY) for rs in self.roles]
        head = [sum(1 for r in rs if r & ROLE_HEAD) for rs in self.roles]
        total = 1 if t and self.is_candidate(prefix) else 0
        if t and not self.roles[t - 1][prefix[-1]] & ROLE_BODY:
            return total
        for d in range(max(t + 1, self.depth_min), self.depth_max + 1):
            total += math.prod(body[t : d - 1]) * head[d - 1]
        return total

    def depth_offsets(self) -> list[int]:
        """arch_id of the first candidate of each depth (index = depth; 0 below depth_min)."""
        out, acc = [], 0
        for d in range(self.depth_max + 1):
            out.append(acc if d >= self.depth_min else 0)
            if d >= self.depth_min:
                acc += self.depth_size(d)
        return out

    def is_candidate(self, idx: list[int]) -> bool:
        """Every layer but the last may be followed, and the last may end a candidate."""
        return (
            self.depth_min <= len(idx) <= self.depth_max
            and all(self.roles[p][c] & ROLE_BODY for p, c in enumerate(idx[:-1]))
            and bool(self.roles[len(idx) - 1][idx[-1]] & ROLE_HEAD)
        )

    # ---- arch ids ----
    def digits(self, arch_id: int) -> list[int]:
        """arch_id -> choice indices, without checking that they name a candidate."""
        arch_id = as_arch_id(arch_id)
        if arch_id >= self.id_space:
            raise field_error("arch_id", arch_id, f"must be in [0, {self.id_space})")
        offsets = self.depth_offsets()
        depth = max(d for d in range(self.depth_min, self.depth_max + 1) if offsets[d] <= arch_id)
        rest = arch_id - offsets[depth]
        digits = []
        for r in reversed(self.radices[:depth]):
            rest, digit = divmod(rest, r)
            digits.append(digit)
        return digits[::-1]

    def decode(self, arch_id: int) -> list[int]:
        """arch_id -> the choice index at each position."""
        idx = self.digits(arch_id)
        if not self.is_candidate(idx):
            raise field_error(
                "arch_id",
                arch_id,
                "is not a candidate of this space (its last layer is not a head choice, or an earlier one is "
                "head-only)",
            )
        return idx

    def encode(self, idx: list[int]) -> int:
        pid = 0
        for p, c in enumerate(idx):
            pid = pid * self.radices[p] + c
        return self.depth_offsets()[len(idx)] + pid

    def layers(self, idx: list[int]) -> list[dict[str, Any]]:
        """The layers of one candidate with channels resolved, as network-spec layer dicts (a choice of
        blocks written out as its layers, rfsweep.space.blocks.expand)."""
        cin, ndown, out = self.in_channels, 0, []
        src = "input"
        for p, c in enumerate(idx):
            ch = self.positions[p][c]
            if ch.blocks:
                for b, block in enumerate(ch.blocks):
                    layers, src, cin = expand(block, cin, f"{self.position_names[p]}.{b}.", src, self.padding)
                    out += layers
                continue
            ndown += ch.stride > 1
            cin = lm.layer_channels(OP_CODES[ch.op], ch.channels, cin, self.width, self.max_width, ndown)
            layer = {"name": f"l{p}", "op": ch.op, "kernel": ch.kernel, "stride": ch.stride, "padding": self.padding}
            if ch.op == "conv":
                layer.update(dilation=ch.dilation, channels=cin, bias=self.bias)
            out.append(layer)
            src = layer["name"]
        return out

    def network_spec(self, idx: list[int], name: str = "candidate") -> dict[str, Any]:
        """A network spec `rfsweep analyze` takes, for one candidate."""
        return {
            "name": name,
            "input": {"size": self.input_size, "channels": self.in_channels},
            "layers": self.layers(idx),
        }

    def growth(self) -> list[int]:
        """growth[t]: the most rf the layers at positions t.. can add, in units of the jump at t."""
        g = [0] * (self.depth_max + 1)
        for t in range(self.depth_max - 1, -1, -1):
            g[t] = max(c.rf_step + c.jump_factor * g[t + 1] for c in self.positions[t])
        return g

    @property
    def rf_bound(self) -> int:
        """The largest rf any candidate reaches."""
        return 1 + self.growth()[0]

    @property
    def rf_cap(self) -> int:
        return self.rf_bound if self.rf_max is None else min(self.rf_max, self.rf_bound)

    @property
    def jump_bound(self) -> int:
        return math.prod(max(c.jump_factor for c in p) for p in self.positions)

    @property
    def has_blocks(self) -> bool:
        """Some choice is made of blocks (a NAS space of stages: rfsweep.space.stages)."""
        return any(c.blocks for p in self.positions for c in p)

    @property
    def position_names(self) -> list[str]:
        """Names of the positions in written-out layers: the stages' names for a space of stages."""
        return self.names or [f"l{p}" for p in range(self.depth_max)]


# ---------------------------------------------------------------- shared by chains and stages


def rf_window(s: dict[str, Any], n: int) -> tuple[int, int | None, int | None]:
    """(rf_min, rf_max, target) from target_rf/tolerance, rf_min/rf_max and max_rf_ratio."""
    rf_min, rf_max = 1, None
    target = s["target_rf"]
    tol = st.parse_int("tolerance", s["tolerance"], 0)
    if target is not None:
        target = st.parse_int("target_rf", target, 1)
        rf_min, rf_max = max(1, target - tol), target + tol
        if rf_max >= st.INT_LIMIT:
            raise field_error("tolerance", s["tolerance"], f"target_rf + tolerance must stay below {st.INT_LIMIT}")
    elif tol:
        raise field_error("tolerance", s["tolerance"], "needs --target-rf (the window is target +- tolerance)")
    if s["rf_min"] is not None:
        rf_min = max(rf_min, st.parse_int("rf_min", s["rf_min"], 1))
    if s["rf_max"] is not None:
        v = st.parse_int("rf_max", s["rf_max"], 1)
        rf_max = v if rf_max is None else min(rf_max, v)
    if s["max_rf_ratio"] is not None:
        ratio = st.parse_ratio("max_rf_ratio", s["max_rf_ratio"])
        cap = min(math.floor(ratio * n), st.INT_LIMIT - 1)
        if cap < 1:
            raise field_error("max_rf_ratio", s["max_rf_ratio"], f"leaves no rf >= 1 at input size {n}")
        rf_max = cap if rf_max is None else min(rf_max, cap)
    if rf_max is not None and rf_max < rf_min:
        raise field_error("rf_max", rf_max, f"the RF window is empty (minimum {rf_min})")
    return rf_min, rf_max, target


def parse_levels(anchors: Any, anchor_rf: Any, anchor_erf: Any) -> tuple[Level, ...]:
    """'32@8,64@16' (or [[32, 8], ...]) with rf ratio window 'MIN:MAX' and ERF minimum -> Levels."""
    if anchors is None:
        return ()
    pairs = []
    items = anchors.split(",") if isinstance(anchors, str) else anchors
    if not isinstance(items, (list, tuple)) or not items:
        raise field_error("anchors", anchors, "must be a list of SIZE@STRIDE, e.g. 32@8,64@16")
    limit = 1 << 31
    for item in items:
        parts = item.split("@") if isinstance(item, str) else list(item) if isinstance(item, (list, tuple)) else []
        if len(parts) != 2:
            raise field_error("anchors", item, "each level is SIZE@STRIDE, e.g. 32@8")
        pairs.append((st.parse_int("anchors", parts[0], 1, limit), st.parse_int("anchors", parts[1], 1, limit)))
    strides = [p[1] for p in pairs]
    if len(set(strides)) != len(strides):
        raise field_error("anchors", anchors, "one level per stride")
    if len(pairs) > lm.MAX_LEVELS:
        raise field_error("anchors", anchors, f"at most {lm.MAX_LEVELS} levels")
    text = str(anchor_rf)
    if ":" not in text:
        raise field_error("anchor_rf", anchor_rf, "must be MIN:MAX (rf / anchor), e.g. 1:4")
    lo_s, hi_s = text.split(":", 1)
    lo = st.parse_fraction("anchor_rf", lo_s)
    hi = st.parse_fraction("anchor_rf", hi_s) if hi_s.strip() else None
    if hi is not None and hi < lo:
        raise field_error("anchor_rf", anchor_rf, "MIN is larger than MAX")
    erf = st.parse_fraction("anchor_erf", anchor_erf)
    levels = []
    for anchor, stride in sorted(pairs, key=lambda p: p[1]):
        rf_lo = math.ceil(lo * anchor)
        rf_hi = st.INT_LIMIT if hi is None else math.floor(hi * anchor)
        # 2 sigma >= e A  <=>  4 var >= (e A)^2  <=>  12 var >= 3 (e A)^2
        erf12 = math.ceil(3 * (erf * anchor) ** 2)
        if erf12 >= st.INT_LIMIT:
            raise field_error("anchor_erf", anchor_erf, f"too large for anchor {anchor}")
        levels.append(Level(anchor, stride, rf_lo, rf_hi, erf12, float(erf)))
    return tuple(levels)


__all__ = ["Space", "Choice", "Level", "parse_levels", "DEFAULTS"]
