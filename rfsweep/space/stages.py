"""Spaces of stages: the search spaces NAS pipelines use (Once-for-All, ProxylessNAS, MnasNet, ResNets).

A space of stages is a fixed stem, a list of stages and a fixed head. Each stage repeats one block type
(``mbconv``, ``basic``, ``bottleneck``, ``conv``) a number of times from its ``depth`` choices; each block
of it takes one of the stage's ``kernel``, ``expand``, ``dilation`` and ``se`` choices; the stage outputs
one of its ``channels``; its first block has the stage's ``stride``. In TOML::

    input_size = 224
    stem = [{op = "conv", kernel = 3, stride = 2, channels = 16, act = "hardswish"}]
    [[stages]]
    block = "mbconv"
    depth = [2, 3, 4]
    kernel = [3, 5, 7]
    expand = [3, 4, 6]
    channels = 24
    stride = 2
    head = [{op = "conv", kernel = 1, channels = 960}, {op = "global_pool"}, {op = "linear", channels = 1000}]

The sweep sees one position per stage whose choices are the stage's configurations (depth and the
blocks' choices, in canonical order: by the rf the configuration adds, then depth, then the blocks'
choices in order), plus the stem and the head as positions of one choice. ``arch_id`` is the mixed-radix
number of the configurations, as for chains. The constraints (``target_rf``, ``max_macs``, ``anchors``,
...) are the chain sweep's; the candidate's rf, jump, out size are those of the map before the head's
global pool.
"""

from __future__ import annotations

import itertools
from importlib import resources
from pathlib import Path
from typing import Any

from rfsweep.core.errors import field_error
from rfsweep.space import latency
from rfsweep.space import settings as st
from rfsweep.space.blocks import Block, check_block_in_space, parse_block
from rfsweep.space.model import Choice, Space, parse_levels, rf_window
from rfsweep.space.packing import check_representable

STAGE_FIELDS = ("name", "block", "depth", "kernel", "expand", "dilation", "se", "channels", "stride", "act")
STAGE_BLOCKS = ("mbconv", "basic", "bottleneck", "conv")
MAX_CONFIGS = 32767  # choices at one position (the choice-index columns are int16)


def shipped_spaces() -> list[str]:
    """Names of the spaces shipped in data/spaces/ (``--space NAME`` finds them)."""
    folder = resources.files("rfsweep._data") / "spaces"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def shipped_path(name: str):
    """The file of a shipped space, or None."""
    folder = resources.files("rfsweep._data") / "spaces"
    path = folder / f"{name}.toml"
    return path if path.is_file() else None


def _list(where: str, value: Any) -> list:
    if isinstance(value, (list, tuple)):
        if not value:
            raise field_error(where, value, "must not be empty")
        return list(value)
    return [value]


def _blocks(where: str, raw: Any) -> tuple[Block, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise field_error(where, raw, "must be a list of blocks (tables with an op)")
    return tuple(parse_block(b, f"{where}[{i}]") for i, b in enumerate(raw))


def stage_configs(raw: Any, index: int, padding: str) -> tuple[str, list[tuple[Block, ...]]]:
    """A stage's name and every configuration of it, as block sequences (canonical order is the caller's)."""
    where = f"stages[{index}]"
    if not isinstance(raw, dict):
        raise field_error(where, raw, "a stage is a table (block, depth, kernel, expand, channels, stride, ...)")
    for key in raw:
        if key not in STAGE_FIELDS:
            raise field_error(f"{where}.{key}", raw[key], f"unknown stage field; allowed: {', '.join(STAGE_FIELDS)}")
    name = raw.get("name", f"stage{index + 1}")
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise field_error(f"{where}.name", name, "must be a name of letters, digits and underscores")
    block = raw.get("block", "mbconv")
    if block not in STAGE_BLOCKS:
        raise field_error(f"{where}.block", block, f"must be one of {', '.join(STAGE_BLOCKS)}")
    depths = sorted({st.parse_int(f"{where}.depth", d, 1, 64) for d in _list(f"{where}.depth", raw.get("depth", 1))})
    kernels = sorted(
        {st.parse_int(f"{where}.kernel", k, 1, st.MAX_KERNEL) for k in _list(f"{where}.kernel", raw.get("kernel", 3))}
    )
    dilations = sorted(
        {
            st.parse_int(f"{where}.dilation", d, 1, st.MAX_KERNEL)
            for d in _list(f"{where}.dilation", raw.get("dilation", 1))
        }
    )
    expands = sorted(
        {st.parse_fraction(f"{where}.expand", e, 64) for e in _list(f"{where}.expand", raw.get("expand", 1))}
    )
    ses = _list(f"{where}.se", raw.get("se", False))
    if not all(isinstance(v, bool) for v in ses):
        raise field_error(f"{where}.se", raw.get("se"), "must be true, false or a list of them")
    ses = sorted(set(ses))
    if "channels" not in raw:
        raise field_error(f"{where}.channels", None, "every stage needs its output channels (or a list of choices)")
    channels = sorted(
        {st.parse_int(f"{where}.channels", c, 1, st.MAX_CHANNELS) for c in _list(f"{where}.channels", raw["channels"])}
    )
    stride = st.parse_int(f"{where}.stride", raw.get("stride", 1), 1, st.MAX_KERNEL)
    act = raw.get("act", "relu")
    if any(e <= 0 for e in expands):
        raise field_error(f"{where}.expand", raw.get("expand"), "every expansion must be > 0")
    per_block = [
        {"op": block, "kernel": k, "dilation": d if k > 1 else 1, "expand": e, "se": se, "act": act}
        for k in kernels
        for d in dilations
        for e in expands
        for se in ses
    ]
    per_block = [dict(t) for t in dict.fromkeys(tuple(sorted(b.items())) for b in per_block)]  # k = 1: dilation 1
    count = sum(len(per_block) ** d for d in depths) * len(channels)
    if count > MAX_CONFIGS:
        raise field_error(
            where, name, f"{count:,} configurations (depth x per-block choices x channels); at most {MAX_CONFIGS:,}"
        )
    configs = []
    for c in channels:
        # the stage's first block (with the stride) and the others, once per per-block choice
        variants = []
        for first in (True, False):
            row = []
            for b in per_block:
                fields = {**b, "expand": str(b["expand"]), "stride": stride if first else 1, "channels": c}
                blk = parse_block(fields, f"{where}.block")
                check_block_in_space(blk, where, padding)
                row.append(blk)
            variants.append(row)
        steps = [b.dilation * (b.kernel - 1) for b in variants[1]]
        for d in depths:
            for combo in itertools.product(range(len(per_block)), repeat=d):
                # canonical order: the rf the configuration adds, then depth, channels, the blocks' choices
                # (the per-block choices are listed in (kernel, dilation, expand, se) order)
                rf_add = steps[combo[0]] + stride * sum(steps[j] for j in combo[1:])
                blocks = tuple(variants[i > 0][j] for i, j in enumerate(combo))
                configs.append(((rf_add, d, c, combo), blocks))
    configs.sort(key=lambda kc: kc[0])
    return name, [blocks for _, blocks in configs]


def build_stage_space(s: dict[str, Any], *, for_search: bool = True):
    """A Space whose positions are the stem, the stages and the head (see the module docstring)."""

    for key in st.CHAIN_KEYS:
        if key != "depth" and key in s and s[key] is not None and s[key] != st.DEFAULTS[key]:
            raise field_error(key, s[key], "is a setting of chain spaces; a space of stages takes stem, stages, head")
    padding = s.get("padding") or "same"
    if not isinstance(padding, str):
        raise field_error("padding", padding, "must be same")
    depth = s.get("depth")
    if depth is not None and depth != st.DEFAULTS["depth"]:
        raise field_error("depth", depth, "a space of stages takes the depth of each stage from its stages")
    if padding != "same":
        raise field_error("padding", padding, "spaces of stages use 'same' padding")
    n = st.parse_int("input_size", s["input_size"], 1, st.MAX_CHANNELS)
    cin = st.parse_int("in_channels", s["in_channels"], 1, st.MAX_CHANNELS)
    raw_stages = s["stages"]
    if not isinstance(raw_stages, list) or not raw_stages:
        raise field_error("stages", raw_stages, "must be a non-empty list of stage tables")
    positions, names, stage_positions = [], [], []
    stem = _blocks("stem", s.get("stem"))
    head = _blocks("head", s.get("head"))
    for part, blocks in (("stem", stem), ("head", head)):
        for i, b in enumerate(blocks):
            check_block_in_space(b, f"{part}[{i}]", padding)
    if stem:
        positions.append([_choice(Choice, "stem", stem)])
        names.append("stem")
    for i, raw in enumerate(raw_stages):
        name, configs = stage_configs(raw, i, padding)
        if name in names:
            raise field_error(f"stages[{i}].name", name, "stage names must be unique")
        stage_positions.append(len(positions))
        positions.append([_choice(Choice, name, c) for c in configs])
        names.append(name)
    if head:
        positions.append([_choice(Choice, "head", head)])
        names.append("head")
    if len(positions) > st.MAX_DEPTH:
        raise field_error("stages", len(raw_stages), f"at most {st.MAX_DEPTH} positions (stem, stages, head)")
    rf_min, rf_max, target = rf_window(s, n)
    jumps = tuple(st.parse_int_list("jump", s["jump"])) if s["jump"] is not None else ()
    resolved = {k: s.get(k) for k in st.DEFAULTS if k not in st.CHAIN_KEYS}
    resolved["padding"] = padding
    space = Space(
        depth_min=len(positions),
        depth_max=len(positions),
        input_size=n,
        in_channels=cin,
        padding=padding,
        bias=False,
        width=1,
        max_width=1,
        positions=positions,
        rf_min=rf_min,
        rf_max=rf_max,
        min_out_size=st.parse_int("min_out_size", s["min_out_size"], 1, st.MAX_CHANNELS),
        max_params=None if s["max_params"] is None else st.parse_int("max_params", s["max_params"], 0),
        max_macs=None if s["max_macs"] is None else st.parse_int("max_macs", s["max_macs"], 0),
        jumps=jumps,
        no_unproductive=st.parse_bool("no_unproductive", s["no_unproductive"]),
        target_rf=target,
        levels=parse_levels(s["anchors"], s["anchor_rf"], s["anchor_erf"]),
        min_convs=0 if s["min_convs"] is None else st.parse_int("min_convs", s["min_convs"], 0, 10**6),
        max_peak_act=None if s["max_peak_act"] is None else st.parse_int("max_peak_act", s["max_peak_act"], 0),
        act_bytes=st.parse_act_dtype(s["act_dtype"]),
        settings=resolved,
        names=names,
        stage_positions=tuple(stage_positions),
    )

    check_representable(space, for_search=for_search)
    latency.attach(space, s)
    return space


def _choice(Choice, name: str, blocks: tuple[Block, ...]):
    cout = blocks[-1].channels or 0
    return Choice(op=name, kernel=0, stride=1, dilation=1, channels=cout, blocks=blocks)


def load(name_or_path: str) -> dict[str, Any]:
    """The settings of a space file, or of a shipped space by name (``ofa_mbv3``: data/spaces/ofa_mbv3.toml)."""
    text = str(name_or_path)
    if not Path(text).exists() and not Path(text).suffix:
        path = shipped_path(text)
        if path is None:
            raise field_error(
                "space", text, f"no such file, nor a shipped space ({', '.join(shipped_spaces()) or 'none'})"
            )
        return st.load_space_file(path)
    return st.load_space_file(text)


__all__ = ["build_stage_space", "load", "shipped_spaces", "stage_configs"]
