"""Latency look-up tables: a space of stages' blocks keyed as Once-for-All keys them, each block's measured
time read from a table, and a candidate's predicted latency as the sum of its blocks' entries.

Keys (Once-for-All's ``MBv3LatencyTable``; github.com/mit-han-lab/once-for-all,
ofa/nas/efficiency_predictor/latency_lookup_table.py), shapes as ``HxWxC`` of the block's input and output
at the resolution the space gives it:

* an MBConv: ``expanded_conv-input:28x28x40-output:28x28x40-expand:120-kernel:5-stride:1-idskip:1-se:1-hs:0``
  (``expand`` is the inner width, as OFA's MBv3 table has it; ``hs`` 1 for h-swish; other activations
  and dilations add ``-act:silu``, ``-dilation:2``);
* a conv block: ``Conv`` (stem and stages), ``Conv_1`` (the head's conv before the global pool), ``Conv_2``
  (a conv on the pooled vector), each with ``-kernel:K-stride:S-act:A-bn:B`` after the shapes; a table
  without those fields (OFA's own YAML) is read by the shapes alone;
* ``AvgPool2D-input:7x7x960-output:1x1x960`` (the global pool), ``Logits-input:1x1x1280-output:1000`` (a
  linear layer);
* OFA's ``ProxylessNASLatencyTable`` keys, read too: an MBConv without SE in ReLU6/ReLU as
  ``expanded_conv-input:56x56x32-output:56x56x32-expand:3-kernel:3-stride:1-idskip:1`` (the expand *ratio*),
  and the global pool with the linear layer after it as one ``Logits-input:7x7x1280-output:1000``;
* ResNet blocks and pools (not in OFA's tables): ``basic``/``bottleneck``/``maxpool``/``avgpool`` with the
  shapes, kernel, stride, dilation (and the projection or inner width).

**Integer resolution.** Each entry's time is rounded once to a whole number of microseconds (``RESOLUTION_US``);
a candidate's ``latency_ms`` is the sum of its blocks' rounded entries divided by 1000, and a budget
``--max-latency-ms B`` keeps the candidates whose sum is at most ``floor(1000 B)`` microseconds. The same
integers enter the exact counts (rfsweep.engine.stage_count), so counting and enumeration agree exactly.

**Files.** rfsweep's JSON (written by ``rfsweep latency measure``: machine, backend, versions, threads,
warm-up and repeats, and per key the median, p10 and p90 and the repeats) or OFA's YAML (``key:`` lines with
indented ``mean:``, ``std:``, ``count:``; the mean is the time, as OFA's ``query`` returns it). The YAML
is read by a small parser of exactly that shape (no PyYAML needed); anything else is refused with one line.

Chain spaces have no blocks to key: a latency table is refused for them (one line).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.core.files import read_text
from rfsweep.kernels import costs
from rfsweep.space.blocks import Block

RESOLUTION_US = 1  # every entry is a whole number of microseconds
FORMAT = "rfsweep latency table"
TIME_FIELDS = ("median_ms", "p10_ms", "p90_ms")


@dataclass
class Table:
    """A latency table: ``entries[key]`` the time in ms (median, or OFA's mean), ``info`` the rest of the file."""

    entries: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def units(self, key: str) -> int | None:
        """The entry in whole microseconds (rounded to nearest), None when the table has no such key."""
        ms = self.entries.get(key)
        return None if ms is None else int(round(ms * 1000 / RESOLUTION_US))


def _time(path: str, key: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise field_error("latency_lut", path, f"entry {key!r}: {what} {value!r} must be a finite time >= 0 ms")
    return float(value)


def parse_json(text: str, path: str) -> Table:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise field_error("latency_lut", path, f"is not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("entries"), dict):
        raise field_error(
            "latency_lut", path, f"is not a latency table (a JSON object with format {FORMAT!r} and entries)"
        )
    entries = {}
    for key, e in raw["entries"].items():
        if not isinstance(e, dict) or "median_ms" not in e:
            raise field_error("latency_lut", path, f"entry {key!r} has no median_ms")
        for f in TIME_FIELDS:
            if f in e:
                _time(path, key, e[f], f)
        entries[key] = float(e["median_ms"])
    info = {k: v for k, v in raw.items() if k != "entries"}
    return Table(entries, info, path)


def parse_ofa_yaml(text: str, path: str) -> Table:
    """OFA's LUT YAML: ``KEY:`` at the start of a line, then indented ``name: number`` lines (mean, std, count)."""
    entries: dict[str, float] = {}
    fields: dict[str, float] = {}
    key = None

    def close(lineno: int):
        if key is None:
            return
        if "mean" not in fields:
            raise field_error("latency_lut", path, f"entry {key!r} (before line {lineno}) has no mean")
        entries[key] = _time(path, key, fields["mean"], "mean")

    for lineno, line in enumerate(text.splitlines(), 1):
        body = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not body.strip():
            continue
        if not line[0].isspace():
            close(lineno)
            if not body.endswith(":"):
                raise field_error("latency_lut", path, f"line {lineno}: expected 'KEY:' (OFA's LUT YAML), got {body!r}")
            key, fields = body[:-1].strip().strip("'\""), {}
            if key in entries:
                raise field_error("latency_lut", path, f"line {lineno}: key {key!r} appears twice")
            continue
        name, sep, value = body.strip().partition(":")
        if key is None or not sep:
            raise field_error("latency_lut", path, f"line {lineno}: expected an indented 'name: number', got {body!r}")
        try:
            fields[name.strip()] = float(value.strip())
        except ValueError:
            raise field_error(
                "latency_lut", path, f"line {lineno}: {name.strip()} {value.strip()!r} is not a number"
            ) from None
    close(len(text.splitlines()) + 1)
    if not entries:
        raise field_error("latency_lut", path, "holds no entries")
    return Table(entries, {"format": "ofa yaml"}, path)


def read_table(path: str) -> Table:
    """A latency table from rfsweep's JSON or OFA's YAML (by extension: .yaml/.yml, else JSON)."""
    text = read_text(path, "latency_lut")
    if str(path).lower().endswith((".yaml", ".yml")):
        return parse_ofa_yaml(text, str(path))
    return parse_json(text, str(path))


# ---------------------------------------------------------------- keys


def _shape(n: int | None, c: int) -> str:
    return str(c) if n is None else f"{n}x{n}x{c}"


def block_key(block: Block, cin: int, n: int | None, role: str) -> tuple[str, str | None, int, int | None]:
    """(key, OFA's shorter key or None, output channels, output size) of a block whose input is ``n x n x cin``
    (``n`` None: a flat vector). ``role``: 'stem', 'stage', 'head' (before the global pool) or 'pooled'."""
    cout = block.out_channels(cin)
    m = n
    for _, s, _ in block.spatial:
        m = -(-m // s)  # 'same' padding: ceil(n / s) (spaces of stages pad 'same')
    io = f"-input:{_shape(n, cin)}-output:{_shape(m, cout)}"
    op, k, s, d, act = block.op, block.kernel, block.stride, block.dilation, block.act
    extra = (f"-dilation:{d}" if d > 1 else "") + (f"-act:{act}" if act not in ("relu", "hardswish") else "")
    if op == "mbconv":
        mid = costs.mbconv_mid(cin, block.expand.numerator, block.expand.denominator)
        skip = int(costs.residual(block.code, s, cin, cout))
        hs = int(act == "hardswish")
        key = f"expanded_conv{io}-expand:{mid}-kernel:{k}-stride:{s}-idskip:{skip}-se:{int(block.se)}-hs:{hs}{extra}"
        return key, None, cout, m
    if op == "conv":
        name = {"head": "Conv_1", "pooled": "Conv_2"}.get(role, "Conv")
        short = f"{name}{io}"
        return (
            f"{short}-kernel:{k}-stride:{s}-dilation:{d}-act:{act}-bn:{int(block.bn)}-bias:{int(block.bias)}",
            short,
            cout,
            m,
        )
    if op == "global_pool":
        return f"AvgPool2D{io[: io.index('-output')]}-output:1x1x{cout}", None, cout, 1
    if op == "linear":
        key = f"Logits-input:{_shape(n, cin)}-output:{cout}"
        return key + (f"-act:{act}" if act != "none" else "") + ("" if block.bias else "-bias:0"), None, cout, None
    key = f"{op}{io}-kernel:{k}-stride:{s}-dilation:{d}"
    if op == "basic":
        key += f"-projection:{int(costs.has_shortcut_conv(block.code, s, cin, cout))}"
    elif op == "bottleneck":
        mid = costs.bottleneck_mid(cout, block.expand.numerator, block.expand.denominator)
        key += f"-mid:{mid}-projection:{int(costs.has_shortcut_conv(block.code, s, cin, cout))}"
    return key, None, cout, m


def proxyless_key(b: BlockAt) -> str:
    """An MBConv's key in OFA's ProxylessNASLatencyTable: the shapes, its expand *ratio*, kernel, stride and
    identity skip, no se/hs/act fields (that table's blocks are ReLU6 MBConvs without SE)."""
    block = b.block
    cout = block.out_channels(b.cin)
    m = -(-b.n // block.stride)
    skip = int(costs.residual(block.code, block.stride, b.cin, cout))
    e = block.expand
    ratio = str(e.numerator) if e.denominator == 1 else f"{float(e):g}"
    return (f"expanded_conv-input:{_shape(b.n, b.cin)}-output:{_shape(m, cout)}-expand:{ratio}"
            f"-kernel:{block.kernel}-stride:{block.stride}-idskip:{skip}")  # fmt: skip


@dataclass(frozen=True)
class BlockAt:
    """One block at the shape it sees: its key, OFA's shorter key (conv blocks), input channels and size."""

    key: str
    short: str | None
    block: Block
    cin: int
    n: int | None
    role: str


def choice_blocks(
    space, p: int, c: int, cin: int, n: int | None, pooled: bool
) -> tuple[list[BlockAt], int, int | None, bool]:
    """The blocks of choice c at position p with cin channels in at size n: (blocks, cout, size out, pooled)."""
    name = (space.names or [""] * len(space.positions))[p]
    out = []
    for block in space.positions[p][c].blocks:
        if block.op in ("global_pool", "linear"):
            pooled = True
        role = (
            "pooled"
            if pooled and block.op != "global_pool"
            else ("stem" if name == "stem" else "head" if name == "head" else "stage")
        )
        key, short, cout, m = block_key(block, cin, n, role)
        out.append(BlockAt(key, short, block, cin, n, role))
        cin, n = cout, m
    return out, cin, n, pooled


def walk(space):
    """Per position p: (input size, {cin: [(blocks of choice c, cout) for every choice c]}) over the channels a
    prefix can deliver. Every choice of a position of a space of stages has one stride, so one size."""
    n, pooled = space.input_size, False
    inputs = {space.in_channels}
    levels = []
    for p, options in enumerate(space.positions):
        per_cin, outs, n_next, pooled_next = {}, set(), n, pooled
        for cin in sorted(inputs):
            row = []
            for c in range(len(options)):
                blocks, cout, m, pl = choice_blocks(space, p, c, cin, n, pooled)
                row.append((blocks, cout))
                outs.add(cout)
                n_next, pooled_next = m, pl
            per_cin[cin] = row
        levels.append((n, per_cin))
        inputs, n, pooled = outs, n_next, pooled_next
    return levels


def distinct_blocks(space) -> list[BlockAt]:
    """Every distinct block (by key) of the space at the shapes it sees, stem and head included, in order."""
    seen: dict[str, BlockAt] = {}
    for _, per_cin in walk(space):
        for row in per_cin.values():
            for blocks, _ in row:
                for b in blocks:
                    seen.setdefault(b.key, b)
    return list(seen.values())


def check_space(space) -> None:
    if not space.has_blocks or space.depth_min != space.depth_max:
        raise field_error(
            "latency_lut",
            space.settings.get("latency_lut"),
            "applies to spaces of stages (a chain space has no blocks to key)",
        )


# ---------------------------------------------------------------- costs of a space


@dataclass
class Costs:
    """A space's latency in whole microseconds: ``units[p][cin][c]`` for choice c at position p with cin
    channels in; ``path`` the table read."""

    units: list[dict[int, np.ndarray]]
    couts: list[dict[int, np.ndarray]]
    path: str

    def row_units(self, choice: np.ndarray, in_channels: int) -> np.ndarray:
        """Per candidate (``choice[p, i]``), the sum of its blocks' entries in microseconds."""
        choice = np.asarray(choice)
        n = choice.shape[1] if choice.ndim == 2 else 0
        total = np.zeros(n, np.int64)
        cin = np.full(n, in_channels, np.int64)
        for p, per_cin in enumerate(self.units):
            nxt = np.zeros(n, np.int64)
            for c_in, units in per_cin.items():
                at = cin == c_in
                if at.any():
                    idx = choice[p, at].astype(np.int64)
                    total[at] += units[idx]
                    nxt[at] = self.couts[p][c_in][idx]
            cin = nxt
        return total

    def latency_ms(self, choice: np.ndarray, in_channels: int) -> np.ndarray:
        return self.row_units(choice, in_channels) / (1000 // RESOLUTION_US)


def costs_of(space, table: Table) -> Costs:
    """The space's per-choice latency units from a table; a missing key is one line naming it (and the
    space the table was measured for, when it says and it is another)."""
    check_space(space)
    units, couts = [], []
    for _, per_cin in walk(space):
        u, co = {}, {}
        for cin, row in per_cin.items():
            vals = np.zeros(len(row), np.int64)
            for c, (blocks, _) in enumerate(row):
                i = 0
                while i < len(blocks):
                    b = blocks[i]
                    v = table.units(b.key)
                    if v is None and b.short is not None:
                        v = table.units(b.short)
                    if v is None and b.block.op == "mbconv":
                        v = table.units(proxyless_key(b))
                    if v is None and b.block.op == "global_pool" and i + 1 < len(blocks):
                        # OFA's ProxylessNAS table: one 'Logits' entry for the pool and the linear layer after it
                        nxt = blocks[i + 1]
                        if nxt.block.op == "linear":
                            both = f"Logits-input:{_shape(b.n, b.cin)}-output:{nxt.block.out_channels(nxt.cin)}"
                            v = table.units(both)
                            if v is not None:
                                i += 1
                    if v is None:
                        raise _missing(space, table, b.key)
                    vals[c] += v
                    i += 1
            u[cin] = vals
            co[cin] = np.array([cout for _, cout in row], np.int64)
        units.append(u)
        couts.append(co)
    return Costs(units, couts, table.path)


def _missing(space, table: Table, key: str):
    measured_for = (table.info.get("space") or {}).get("name") if isinstance(table.info.get("space"), dict) else None
    here = space.settings.get("name")
    if measured_for is not None and here is not None and measured_for != here:
        why = f"was measured for space {measured_for!r}, not {here!r} (it has no entry {key!r})"
    else:
        why = (
            f"has no entry for block {key!r} (measure it: --measure-missing, or rfsweep latency measure "
            "--space ... --resume)"
        )
    return field_error("latency_lut", table.path, why)


def budget_units(value: Any) -> int:
    """``--max-latency-ms`` as whole microseconds: floor(1000 x value), exactly (decimal text kept exact)."""
    raw = value
    try:
        frac = Fraction(str(value).strip())  # a float by its shortest decimal (0.938, not 0.93799...)
    except (ValueError, ZeroDivisionError):
        raise field_error("max_latency_ms", raw, "must be a number of milliseconds") from None
    if frac < 0:
        raise field_error("max_latency_ms", raw, "must be >= 0")
    if frac > 10**12:
        raise field_error("max_latency_ms", raw, "must be at most 1e12")
    return math.floor(frac * 1000 / RESOLUTION_US)


def attach(space, settings: dict) -> None:
    """Read ``latency_lut`` and ``max_latency_ms`` of the settings onto the space (``space.latency``,
    ``space.max_latency`` in microseconds)."""
    path, budget = settings.get("latency_lut"), settings.get("max_latency_ms")
    if path is None:
        if budget is not None:
            raise field_error("max_latency_ms", budget, "needs a latency table (--latency-lut FILE)")
        return
    if not isinstance(path, str) or not path:
        raise field_error("latency_lut", path, "must be a file name")
    check_space(space)
    space.max_latency = None if budget is None else budget_units(budget)
    space.latency = costs_of(space, read_table(path))


__all__ = [
    "RESOLUTION_US",
    "BlockAt",
    "Costs",
    "Table",
    "attach",
    "block_key",
    "budget_units",
    "costs_of",
    "distinct_blocks",
    "parse_json",
    "parse_ofa_yaml",
    "read_table",
    "walk",
]
