"""Search space + constraints -> compact int64 arrays for the kernels; arch_id encoding and decoding.

A candidate is a chain of ``depth`` layers, depth in [depth_min, depth_max]; position ``p`` picks one
choice from its own list (op, kernel, stride, dilation, channels). Choices are canonical: each network
appears once (dilation > 1 only for conv with kernel > 1; pools have dilation 1 and pass channels), and
each position lists them by the rf they add per unit of jump, d(k-1), then op, kernel, stride,
dilation and channels.

``arch_id`` is the candidate's mixed-radix index: depths in increasing order, and within one depth
the choice indices read as digits (position 0 most significant) of radices ``n_choices[p]``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from rfsweep.errors import field_error
from rfsweep.kernels import layer_math as lm

INT63 = 2**62  # every bound the kernels can reach must stay below this (int64 wraps silently)
REACH_MAX = 1 << 16  # rf upper bounds up to this get the exact reachability table
ROLE_BODY, ROLE_HEAD = lm.ROLE_BODY, lm.ROLE_HEAD
POOL_OPS = ("maxpool", "avgpool")
SEARCH_OPS = ("conv",) + POOL_OPS
OP_CODES = {"conv": lm.OP_CONV, "maxpool": lm.OP_MAXPOOL, "avgpool": lm.OP_AVGPOOL}
PAD_CODES = {"valid": lm.PAD_VALID, "same": lm.PAD_SAME, "tf_same": lm.PAD_TF_SAME}

# Defaults of `rfsweep search` when a field is given neither on the command line nor in --space.
DEFAULTS: dict[str, Any] = {
    "depth": "1-8",
    "ops": ["conv", "maxpool"],
    "kernels": [1, 3, 5, 7],
    "pool_kernels": [2, 3],
    "strides": [1, 2],
    "pool_strides": None,  # None: the same as strides
    "dilations": [1],
    "channels": None,  # None: the width rule
    "width": 32,
    "max_width": 512,
    "padding": "same",
    "input_size": 224,
    "in_channels": 3,
    "bias": True,
    "positions": [],
    # constraints
    "target_rf": None,
    "tolerance": 0,
    "rf_min": None,
    "rf_max": None,
    "min_out_size": 1,
    "max_params": None,
    "max_macs": None,
    "jump": None,
    "max_rf_ratio": None,
    "no_unproductive": False,
    "min_convs": 0,
    "anchors": None,  # detector levels "32@8,64@16": anchor size @ stride
    "anchor_rf": "1:4",
    "anchor_erf": "1",
}
POSITION_KEYS = ("index", "ops", "kernels", "pool_kernels", "strides", "pool_strides", "dilations", "channels")


@dataclass(frozen=True)
class Choice:
    """One layer a position can take. channels: an int, CH_PASS (pools) or CH_WIDTH (width rule)."""

    op: str
    kernel: int
    stride: int
    dilation: int
    channels: int


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
    # roles[p][c]: bit 1, the choice may be followed by more layers; bit 2, it may be a candidate's
    # last layer. All 3 unless a head (positions index -1) gives the last layer its own choices.
    roles: list[list[int]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.roles:
            self.roles = [[ROLE_BODY | ROLE_HEAD] * len(p) for p in self.positions]

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

    @property
    def size(self) -> int:
        """Number of candidates (Python int, exact)."""
        body = [sum(1 for r in rs if r & ROLE_BODY) for rs in self.roles]
        head = [sum(1 for r in rs if r & ROLE_HEAD) for rs in self.roles]
        return sum(math.prod(body[: d - 1]) * head[d - 1] for d in range(self.depth_min, self.depth_max + 1))

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

    def growth(self) -> list[int]:
        """growth[t]: the most rf the layers at positions t.. can add, in units of the jump at t."""
        g = [0] * (self.depth_max + 1)
        for t in range(self.depth_max - 1, -1, -1):
            g[t] = max((c.dilation * (c.kernel - 1)) + c.stride * g[t + 1] for c in self.positions[t])
        return g

    # ---- arch ids ----
    def digits(self, arch_id: int) -> list[int]:
        """arch_id -> choice indices, without checking that they name a candidate."""
        arch_id = int(arch_id)
        if arch_id < 0 or arch_id >= self.id_space:
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
                "is not a candidate of this space (its last layer is not a head choice, "
                "or an earlier one is head-only)",
            )
        return idx

    def encode(self, idx: list[int]) -> int:
        pid = 0
        for p, c in enumerate(idx):
            pid = pid * self.radices[p] + c
        return self.depth_offsets()[len(idx)] + pid

    def layers(self, idx: list[int]) -> list[dict[str, Any]]:
        """The layers of one candidate with channels resolved, as network-spec layer dicts."""
        cin, ndown, out = self.in_channels, 0, []
        for p, c in enumerate(idx):
            ch = self.positions[p][c]
            ndown += ch.stride > 1
            layer = {"name": f"l{p}", "op": ch.op, "kernel": ch.kernel, "stride": ch.stride, "padding": self.padding}
            if ch.op == "conv":
                cin = self.width_channels(ndown) if ch.channels == lm.CH_WIDTH else ch.channels
                layer.update(dilation=ch.dilation, channels=cin, bias=self.bias)
            out.append(layer)
        return out

    def width_channels(self, ndown: int) -> int:
        return lm.width_channels(self.width, self.max_width, ndown)  # the kernels' own rule

    def network_spec(self, idx: list[int], name: str = "candidate") -> dict[str, Any]:
        """A network spec `rfsweep analyze` takes, for one candidate."""
        return {
            "name": name,
            "input": {"size": self.input_size, "channels": self.in_channels},
            "layers": self.layers(idx),
        }

    # ---- kernel inputs ----
    def kernel_arrays(self) -> dict[str, np.ndarray]:
        """The int64 arrays every kernel takes: choices, nch, cons, jumps, growth, dep_off."""
        dmax = self.depth_max
        width = max(self.radices)
        choices = np.zeros((dmax, width, lm.NF), np.int64)
        for p, options in enumerate(self.positions):
            for c, ch in enumerate(options):
                choices[p, c] = (OP_CODES[ch.op], ch.kernel, ch.stride, ch.dilation, ch.channels, self.roles[p][c])
        cons = np.zeros(lm.NC, np.int64)
        cons[lm.C_RF_MIN] = self.rf_min
        cons[lm.C_RF_MAX] = self.rf_cap
        cons[lm.C_MIN_OUT] = max(1, self.min_out_size)
        cons[lm.C_MAX_PARAMS] = INT63 if self.max_params is None else self.max_params
        cons[lm.C_MAX_MACS] = INT63 if self.max_macs is None else self.max_macs
        cons[lm.C_NO_UNPROD] = int(self.no_unproductive)
        cons[lm.C_N] = self.input_size
        cons[lm.C_CIN] = self.in_channels
        cons[lm.C_PAD] = PAD_CODES[self.padding]
        cons[lm.C_BIAS] = int(self.bias)
        cons[lm.C_WIDTH] = self.width
        cons[lm.C_MAX_WIDTH] = self.max_width
        cons[lm.C_DMIN] = self.depth_min
        cons[lm.C_DMAX] = dmax
        cons[lm.C_NJUMPS] = len(self.jumps)
        cons[lm.C_NLEVELS] = len(self.levels)
        cons[lm.C_MIN_CONVS] = self.min_convs
        jumps = np.array(self.jumps or (0,), np.int64)
        anchors = np.zeros((max(1, len(self.levels)), lm.NA), np.int64)
        for i, lv in enumerate(self.levels):
            anchors[i] = (lv.stride, lv.rf_lo, lv.rf_hi, lv.erf12)
        return {
            "choices": choices,
            "nch": np.array(self.radices, np.int64),
            "cons": cons,
            "jumps": jumps,
            "anchors": anchors,
            "growth": self.growth_table(),
            "dep_off": np.array(self.depth_offsets(), np.int64),
        }

    def growth_table(self) -> np.ndarray:
        """growth[t, 0]: the most rf positions t.. add per unit of jump; with an rf upper bound of at most
        REACH_MAX, growth[t, 1 + x] also counts the relative increments v <= x that positions t.. can
        add (v = 0 when depth t may stop), so the kernels prune every prefix that cannot land in the window.
        """
        g = np.array(self.growth(), np.int64)[:, None]
        if self.rf_max is None or self.rf_cap > REACH_MAX:
            return np.ascontiguousarray(g)
        width = self.rf_cap + 1  # increments 0..rf_cap-1 matter (rf starts at 1)
        reach = np.zeros(width, bool)
        reach[0] = True  # after the last position nothing is added
        table = np.zeros((self.depth_max + 1, 1 + width), np.int64)
        table[self.depth_max, 1:] = np.cumsum(reach)
        for t in range(self.depth_max - 1, -1, -1):
            nxt = np.zeros(width, bool)
            nxt[0] = t >= self.depth_min
            vals = np.nonzero(reach)[0]
            for c in self.positions[t]:
                v = c.dilation * (c.kernel - 1) + c.stride * vals
                nxt[v[v < width]] = True
            reach = nxt
            table[t, 1:] = np.cumsum(reach)
        table[:, 0] = g[:, 0]
        return table

    @property
    def rf_bound(self) -> int:
        """The largest rf any candidate reaches."""
        return 1 + self.growth()[0]

    @property
    def rf_cap(self) -> int:
        return self.rf_bound if self.rf_max is None else min(self.rf_max, self.rf_bound)

    @property
    def jump_bound(self) -> int:
        return math.prod(max(c.stride for c in p) for p in self.positions)

    @property
    def max_channels(self) -> int:
        chans = [self.in_channels]
        for p in self.positions:
            for c in p:
                chans.append(self.max_width if c.channels == lm.CH_WIDTH else c.channels)
        return max(chans)

    def params_bound(self) -> int:
        cmax = self.max_channels
        return sum(max(c.kernel for c in p) ** 2 * cmax * cmax + cmax for p in self.positions)

    def erf_bound(self) -> int:
        total, jump = 0, 1
        for p in self.positions:
            total += max((jump * c.dilation) ** 2 * (c.kernel**2 - 1) for c in p)
            jump *= max(c.stride for c in p)
        return total

    def check_representable(self) -> None:
        """Refuse spaces whose ids or metrics could wrap int64 inside the kernels."""
        checks = [
            ("space size", self.id_space),
            ("largest rf", self.rf_bound),
            ("largest jump", self.jump_bound),
            ("largest params", self.params_bound()),
            ("largest MACs", self.params_bound() * self.input_size**2),
            ("largest erf variance x12", self.erf_bound()),
        ]
        for what, value in checks:
            if value >= INT63:
                raise field_error(
                    "space",
                    self.settings.get("depth"),
                    f"{what} {value:.3e} does not fit in int64; narrow the space (depth, kernels, strides)",
                )


# ---------------------------------------------------------------- parsing


def _int_list(name: str, value: Any, minimum: int = 1) -> list[int]:
    if isinstance(value, str):
        parts = [v.strip() for v in value.split(",") if v.strip()]
        try:
            value = [int(v) for v in parts]
        except ValueError:
            raise field_error(name, value, "must be a comma-separated list of integers") from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise field_error(name, value, "must be a non-empty list of integers")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise field_error(name, value, f"every entry must be an integer >= {minimum}")
    return sorted(set(value))


def _str_list(name: str, value: Any, allowed: tuple[str, ...]) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise field_error(name, value, f"must be a non-empty list of {', '.join(allowed)}")
    out = []
    for v in value:
        if v not in allowed:
            raise field_error(name, v, f"must be one of {', '.join(allowed)}")
        if v not in out:
            out.append(v)
    return out


def _int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            raise field_error(name, value, "must be an integer") from None
        if not f.is_integer():
            raise field_error(name, value, "must be an integer")
        value = int(value) if value.strip().lstrip("-").isdigit() else int(f)
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(name, value, "must be an integer")
    if minimum is not None and value < minimum:
        raise field_error(name, value, f"must be >= {minimum}")
    return value


def parse_depth(value: Any) -> tuple[int, int]:
    """7 | '7' | '2-8' | [2, 8] -> (min, max)."""
    raw = value
    if isinstance(value, str):
        parts = value.split("-")
        if len(parts) not in (1, 2):
            raise field_error("depth", raw, "must be N or MIN-MAX")
        value = [_int("depth", p.strip()) for p in parts]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 2):
        raise field_error("depth", raw, "must be N or MIN-MAX")
    lo, hi = _int("depth", value[0], 1), _int("depth", value[-1], 1)
    if lo > hi:
        raise field_error("depth", raw, "minimum is larger than maximum")
    if hi > lm.MAX_DEPTH:
        raise field_error("depth", raw, f"at most {lm.MAX_DEPTH} layers")
    return lo, hi


def _choices(opts: dict[str, Any], where: str) -> list[Choice]:
    ops = _str_list(f"{where}ops", opts["ops"], SEARCH_OPS)
    kernels = _int_list(f"{where}kernels", opts["kernels"])
    strides = _int_list(f"{where}strides", opts["strides"])
    pool_kernels = _int_list(f"{where}pool_kernels", opts["pool_kernels"] or opts["kernels"])
    pool_strides = _int_list(f"{where}pool_strides", opts["pool_strides"] or opts["strides"])
    dilations = _int_list(f"{where}dilations", opts["dilations"])
    channels = [lm.CH_WIDTH] if opts["channels"] is None else _int_list(f"{where}channels", opts["channels"])
    out: list[Choice] = []
    for op in ops:
        if op == "conv":
            for k in kernels:
                for s in strides:
                    for d in dilations if k > 1 else [1]:
                        for c in channels:
                            out.append(Choice("conv", k, s, d, c))
        else:
            for k in pool_kernels:
                for s in pool_strides:
                    out.append(Choice(op, k, s, 1, lm.CH_PASS))
    out.sort(key=_canonical)
    for c in out:
        if c.kernel > 255 or c.stride > 255 or c.dilation > 255:
            raise field_error(f"{where}kernels", c.kernel, "kernel, stride and dilation must be at most 255")
    if len(out) > 32767:
        raise field_error(f"{where}ops", ops, f"{len(out)} choices at one position; at most 32767")
    return out


def _canonical(c: Choice):
    """Canonical order: by the rf a choice adds per unit of jump, d(k-1), then op, kernel, stride,
    dilation, channels. The walk relies on it: once a choice overshoots the rf maximum, every later
    choice at that position does too, and the loop stops (R7 at [223, 225]: 5x fewer layer updates)."""
    return (c.dilation * (c.kernel - 1), SEARCH_OPS.index(c.op), c.kernel, c.stride, c.dilation, c.channels)


def _with_head(positions: list[list[Choice]], head: list[Choice] | None, dmin: int):
    """Merge the head's choices (the last layer of every candidate, index -1) into each position where a
    candidate can end, and mark which choices may continue (body) and which may end (head)."""
    if head is None:
        return positions, [[ROLE_BODY | ROLE_HEAD] * len(p) for p in positions]
    merged, roles = [], []
    for p, body in enumerate(positions):
        if p + 1 < dmin:  # no candidate ends here
            merged.append(body)
            roles.append([ROLE_BODY] * len(body))
            continue
        union = sorted(set(body) | set(head), key=_canonical)
        merged.append(union)
        roles.append([(ROLE_BODY if c in body else 0) | (ROLE_HEAD if c in head else 0) for c in union])
    return merged, roles


def load_space_file(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML space file (keys as the long CLI flags, with underscores)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise field_error("space", str(p), exc.strerror or "cannot be read") from None
    except tomllib.TOMLDecodeError as exc:
        raise field_error("space", str(p), f"is not valid TOML: {exc}") from None
    return data


def build_space(settings: dict[str, Any]) -> Space:
    """Validate settings (CLI flags and/or a TOML file) into a Space; unknown keys are errors."""
    for key in settings:
        if key not in DEFAULTS:
            raise field_error(key, settings[key], f"unknown setting; known: {', '.join(DEFAULTS)}")
    s = {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    dmin, dmax = parse_depth(s["depth"])
    padding = s["padding"]
    if padding not in PAD_CODES:
        raise field_error("padding", padding, "must be same, valid or tf_same")
    n = _int("input_size", s["input_size"], 1)
    cin = _int("in_channels", s["in_channels"], 1)
    width = _int("width", s["width"], 1)
    max_width = _int("max_width", s["max_width"], 1)
    if max_width < width:
        raise field_error("max_width", max_width, f"must be >= width ({width})")
    if not isinstance(s["bias"], bool):
        raise field_error("bias", s["bias"], "must be true or false")

    base = {k: s[k] for k in ("ops", "kernels", "pool_kernels", "strides", "pool_strides", "dilations", "channels")}
    positions = [list(_choices(base, "")) for _ in range(dmax)]
    head: list[Choice] | None = None
    raw_positions = s["positions"]
    if not isinstance(raw_positions, list):
        raise field_error("positions", raw_positions, "must be a list of tables with an index")
    for entry in raw_positions:
        if not isinstance(entry, dict) or "index" not in entry:
            raise field_error("positions", entry, "each entry needs an index")
        for key in entry:
            if key not in POSITION_KEYS:
                raise field_error(f"positions.{key}", entry[key], f"unknown field; allowed: {', '.join(POSITION_KEYS)}")
        idx = _int("positions.index", entry["index"], -1)
        if idx >= dmax:
            raise field_error(
                "positions.index", idx, f"must be below the largest depth ({dmax}), or -1 for the last layer"
            )
        opts = {**base, **{k: v for k, v in entry.items() if k != "index"}}
        if idx == -1:
            if head is not None:
                raise field_error("positions.index", idx, "one entry for the last layer (-1)")
            head = _choices(opts, "positions[-1].")
        else:
            positions[idx] = _choices(opts, f"positions[{idx}].")
    positions, roles = _with_head(positions, head, dmin)

    # constraints
    rf_min, rf_max = 1, None
    target = s["target_rf"]
    if target is not None:
        target = _int("target_rf", target, 1)
        tol = _int("tolerance", s["tolerance"], 0)
        rf_min, rf_max = max(1, target - tol), target + tol
    if s["rf_min"] is not None:
        rf_min = max(rf_min, _int("rf_min", s["rf_min"], 1))
    if s["rf_max"] is not None:
        v = _int("rf_max", s["rf_max"], 1)
        rf_max = v if rf_max is None else min(rf_max, v)
    if s["max_rf_ratio"] is not None:
        try:
            ratio = float(s["max_rf_ratio"])
        except (TypeError, ValueError):
            raise field_error("max_rf_ratio", s["max_rf_ratio"], "must be a number") from None
        if not ratio > 0:
            raise field_error("max_rf_ratio", s["max_rf_ratio"], "must be positive")
        cap = math.floor(ratio * n)
        rf_max = cap if rf_max is None else min(rf_max, cap)
    if rf_max is not None and rf_max < rf_min:
        raise field_error("rf_max", rf_max, f"the RF window is empty (minimum {rf_min})")
    jumps: tuple[int, ...] = ()
    if s["jump"] is not None:
        jumps = tuple(_int_list("jump", s["jump"]))
    max_params = None if s["max_params"] is None else _int("max_params", s["max_params"], 0)
    max_macs = None if s["max_macs"] is None else _int("max_macs", s["max_macs"], 0)
    if not isinstance(s["no_unproductive"], bool):
        raise field_error("no_unproductive", s["no_unproductive"], "must be true or false")

    levels = parse_levels(s["anchors"], s["anchor_rf"], s["anchor_erf"])

    resolved = {k: s[k] for k in DEFAULTS}
    resolved["depth"] = [dmin, dmax]
    space = Space(
        depth_min=dmin,
        depth_max=dmax,
        input_size=n,
        in_channels=cin,
        padding=padding,
        bias=s["bias"],
        width=width,
        max_width=max_width,
        positions=positions,
        rf_min=rf_min,
        rf_max=rf_max,
        min_out_size=_int("min_out_size", s["min_out_size"], 1),
        max_params=max_params,
        max_macs=max_macs,
        jumps=jumps,
        no_unproductive=s["no_unproductive"],
        target_rf=target,
        levels=levels,
        min_convs=_int("min_convs", s["min_convs"], 0),
        roles=roles,
        settings=resolved,
    )
    if space.max_channels >= 2**31:
        raise field_error("channels", space.max_channels, "at most 2^31 - 1 channels")
    space.check_representable()
    return space


def _fraction(name: str, value: Any) -> Fraction:
    try:
        f = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise field_error(name, value, "must be a number") from None
    if f < 0:
        raise field_error(name, value, "must be >= 0")
    return f


def parse_levels(anchors: Any, anchor_rf: Any, anchor_erf: Any) -> tuple[Level, ...]:
    """'32@8,64@16' (or [[32, 8], ...]) with rf ratio window 'MIN:MAX' and ERF minimum -> Levels."""
    if anchors is None:
        return ()
    pairs = []
    items = anchors.split(",") if isinstance(anchors, str) else anchors
    if not isinstance(items, (list, tuple)) or not items:
        raise field_error("anchors", anchors, "must be a list of SIZE@STRIDE, e.g. 32@8,64@16")
    for item in items:
        parts = item.split("@") if isinstance(item, str) else list(item) if isinstance(item, (list, tuple)) else []
        if len(parts) != 2:
            raise field_error("anchors", item, "each level is SIZE@STRIDE, e.g. 32@8")
        pairs.append((_int("anchors", parts[0], 1), _int("anchors", parts[1], 1)))
    strides = [p[1] for p in pairs]
    if len(set(strides)) != len(strides):
        raise field_error("anchors", anchors, "one level per stride")
    if len(pairs) > lm.MAX_LEVELS:
        raise field_error("anchors", anchors, f"at most {lm.MAX_LEVELS} levels")
    text = str(anchor_rf)
    if ":" not in text:
        raise field_error("anchor_rf", anchor_rf, "must be MIN:MAX (rf / anchor), e.g. 1:4")
    lo_s, hi_s = text.split(":", 1)
    lo = _fraction("anchor_rf", lo_s)
    hi = _fraction("anchor_rf", hi_s) if hi_s.strip() else None
    if hi is not None and hi < lo:
        raise field_error("anchor_rf", anchor_rf, "MIN is larger than MAX")
    erf = _fraction("anchor_erf", anchor_erf)
    levels = []
    for anchor, stride in sorted(pairs, key=lambda p: p[1]):
        rf_lo = math.ceil(lo * anchor)
        rf_hi = INT63 if hi is None else math.floor(hi * anchor)
        # 2 sigma >= e A  <=>  4 var >= (e A)^2  <=>  12 var >= 3 (e A)^2
        erf12 = math.ceil(3 * (erf * anchor) ** 2)
        if erf12 >= INT63:
            raise field_error("anchor_erf", anchor_erf, f"too large for anchor {anchor}")
        levels.append(Level(anchor, stride, rf_lo, rf_hi, erf12, float(erf)))
    return tuple(levels)


__all__ = ["Space", "Choice", "Level", "build_space", "load_space_file", "DEFAULTS"]
