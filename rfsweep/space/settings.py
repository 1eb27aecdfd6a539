"""The search settings: their names, defaults and help, and the parsing of each value.

Every setting is a long flag of ``rfsweep search`` / ``rfsweep count`` (``--max-params``) and a key of a
``--space`` TOML file (``max_params``); the CLI options and their ``[default: ...]`` texts are generated
from :data:`SETTINGS`, so the defaults are written once. Each value is checked here with one-line errors
that name the setting and the value, including numbers too large for the kernels' int64 arithmetic.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from rfsweep.core.errors import field_error
from rfsweep.core.files import read_text
from rfsweep.kernels import layer_math as lm

# Every integer the kernels see stays below 2^62, so that the sum of two of them never wraps int64.
INT_LIMIT = 1 << 62
MAX_DEPTH = 32  # kernels.layer_math.MAX_DEPTH (the CUDA kernels size their local state with it)
MAX_CHANNELS = (1 << 31) - 1  # the channels list column is int32
MAX_KERNEL = 255  # kernel, stride and dilation list columns are uint8
MAX_LEVELS = 8  # kernels.layer_math.MAX_LEVELS
SEARCH_OPS = ("conv", "maxpool", "avgpool")
PADDINGS = ("same", "valid", "tf_same")
POOL_OPS = ("maxpool", "avgpool")
OP_CODES = {"conv": lm.OP_CONV, "maxpool": lm.OP_MAXPOOL, "avgpool": lm.OP_AVGPOOL}  # the kernels' op codes
OP_NAMES = sorted(OP_CODES, key=OP_CODES.get)  # op code -> name (the outputs' dictionaries)
PAD_CODES = {"valid": lm.PAD_VALID, "same": lm.PAD_SAME, "tf_same": lm.PAD_TF_SAME}
# --act-dtype: bytes per activation element (the peak_act_bytes column)
ACT_DTYPES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int16": 2, "int8": 1,
              "uint8": 1}  # fmt: skip
# how --help names a setting's value (integers are read by parse_int: 5e6 and 1_000 work too)
INT, INTS = "INTEGER", "INTEGER,..."
KERNEL_BOUNDS = f"1<=x<={MAX_KERNEL}"
CHANNEL_BOUNDS = "1<=x<=2^31-1"


@dataclass(frozen=True)
class Setting:
    """One search setting. ``kind``: 'value' (the flag takes text), 'bool' (--x/--no-x), 'switch' (a flag
    that sets true), 'toml' (a TOML key only). ``shown``: the default as --help says it, when the value
    itself would not read well. ``metavar`` and ``bounds``: the value's kind and range as --help shows
    them (``INTEGER``, ``x>=1``); the parsers below enforce the same bounds."""

    name: str
    default: Any
    help: str
    kind: str = "value"
    shown: str | None = None
    choices: tuple[str, ...] = ()
    metavar: str = "TEXT"
    bounds: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_text(self) -> str | None:
        if self.shown is not None:
            return self.shown
        if self.default is None or self.kind == "switch":
            return None
        if isinstance(self.default, bool):
            return self.name if self.default else f"no-{self.name}"
        if isinstance(self.default, (list, tuple)):
            return ",".join(map(str, self.default))
        return str(self.default)


SETTINGS: tuple[Setting, ...] = (
    # the space
    Setting("depth", "1-8", "Layers per candidate: N or MIN-MAX.", metavar="N|MIN-MAX", bounds=f"1<=N<={MAX_DEPTH}"),
    Setting("ops", ["conv", "maxpool"], "Layer ops to choose from: conv,maxpool,avgpool.", metavar="OP,..."),
    Setting("kernels", [1, 3, 5, 7], "Conv kernel sizes.", metavar=INTS, bounds=KERNEL_BOUNDS),
    Setting("pool_kernels", [2, 3], "Pool kernel sizes.", metavar=INTS, bounds=KERNEL_BOUNDS),
    Setting("strides", [1, 2], "Strides.", metavar=INTS, bounds=KERNEL_BOUNDS),
    Setting("pool_strides", None, "Pool strides.", shown="--strides", metavar=INTS, bounds=KERNEL_BOUNDS),
    Setting("dilations", [1], "Conv dilations (only for kernels > 1).", metavar=INTS, bounds=KERNEL_BOUNDS),
    Setting(
        "channels",
        None,
        "Conv output channels to choose from, instead of the width rule.",
        metavar=INTS,
        bounds=CHANNEL_BOUNDS,
    ),
    Setting(
        "width",
        32,
        "Width rule: conv channels = width x 2^(strided layers so far).",
        metavar=INT,
        bounds=CHANNEL_BOUNDS,
    ),
    Setting("max_width", 512, "Cap of the width rule.", metavar=INT, bounds=CHANNEL_BOUNDS),
    Setting("padding", "same", "Padding of every layer.", choices=PADDINGS),
    Setting("input_size", 224, "Square input size.", metavar=INT, bounds=CHANNEL_BOUNDS),
    Setting("in_channels", 3, "Input channels.", metavar=INT, bounds=CHANNEL_BOUNDS),
    Setting("bias", True, "Conv bias in the parameter count.", kind="bool"),
    Setting("positions", [], "Per-position choices ([[positions]] tables with an index).", kind="toml"),
    # a space of stages (rfsweep.space.stages): these keys instead of the chain's ops, kernels, ...
    Setting("stages", None, "The stages of a NAS space ([[stages]] tables).", kind="toml"),
    Setting("stem", None, "Blocks before the stages.", kind="toml"),
    Setting("head", None, "Blocks after the stages.", kind="toml"),
    Setting("name", None, "The space's name.", kind="toml"),
    Setting("source", None, "Where the space comes from.", kind="toml"),
    Setting("description", None, "What the space is.", kind="toml"),
    # constraints
    Setting("target_rf", None, "Target receptive field (with --tolerance).", metavar=INT, bounds="x>=1"),
    Setting("tolerance", 0, "Allowed |rf - target| (needs --target-rf).", metavar=INT, bounds="x>=0"),
    Setting("rf_min", None, "Smallest rf kept.", metavar=INT, bounds="x>=1"),
    Setting("rf_max", None, "Largest rf kept.", metavar=INT, bounds="x>=1"),
    Setting("min_out_size", 1, "Smallest final feature map size.", metavar=INT, bounds=CHANNEL_BOUNDS),
    Setting("max_params", None, "Parameter budget (e.g. 5e6).", metavar=INT, bounds="x>=0"),
    Setting("max_macs", None, "MAC budget (e.g. 1e9).", metavar=INT, bounds="x>=0"),
    Setting(
        "max_peak_act",
        None,
        "Peak activation memory budget in elements, batch 1 (the peak_act column: the most that is alive "
        "at once, layer by layer, MCUNet's definition), e.g. 2e5.",
        metavar=INT,
        bounds="x>=0",
    ),
    Setting(
        "act_dtype",
        "float32",
        "Activation type the peak_act_bytes column counts (bytes = peak_act x its size).",
        choices=tuple(ACT_DTYPES),
    ),
    Setting(
        "latency_lut",
        None,
        "Latency table (rfsweep latency measure's JSON, or Once-for-All's LUT YAML) of a space of stages: adds "
        "the latency_ms column (the sum of the candidate's blocks' entries, each in whole microseconds).",
        metavar="FILE",
    ),
    Setting(
        "max_latency_ms",
        None,
        "Latency budget in ms, predicted by --latency-lut (e.g. 25).",
        metavar="FLOAT",
        bounds="0<=x<=1e12",
    ),
    Setting("jump", None, "Allowed final jumps (effective strides), e.g. 16,32.", metavar=INTS, bounds="x>=1"),
    Setting("max_rf_ratio", None, "Largest rf / input size.", metavar="FLOAT", bounds="x>0"),
    Setting(
        "no_unproductive",
        False,
        "Drop candidates with a spatial layer whose every input unit already sees the whole input.",
        kind="switch",
    ),
    Setting(
        "min_convs",
        None,
        "Fewest conv layers in a candidate. Pool-only stacks have no parameters and would lead every "
        "--sort params: a chain whose ops include a pool needs one conv unless this says 0.",
        shown="1 (0 for conv-only chains and spaces of stages)",
        metavar=INT,
        bounds=f"0<=x<={MAX_DEPTH}",
    ),
    Setting(
        "anchors",
        None,
        "Detector levels SIZE@STRIDE, e.g. 32@8,64@16,128@32: each needs a tap (the last layer at that "
        "jump) whose rf and ERF suit the anchor.",
        metavar="SIZE@STRIDE,...",
    ),
    Setting(
        "anchor_rf",
        "1:4",
        "Tap rf / anchor window MIN:MAX (S3FD's taps have RFs 1.4-3.6x their anchors, LFFD sizes RFs "
        "2-4x its objects).",
        metavar="MIN:MAX",
        bounds="MIN, MAX >= 0; MAX may be empty",
    ),
    Setting(
        "anchor_erf",
        "1",
        "Smallest 2 x erf_sigma / anchor at the tap (S3FD: anchors should sit inside the effective RF).",
        metavar="FLOAT",
        bounds="x>=0",
    ),
)
DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS}
POSITION_KEYS = ("index", "ops", "kernels", "pool_kernels", "strides", "pool_strides", "dilations", "channels")
# the settings that describe a chain's choices (a space of stages takes stem, stages and head instead)
CHAIN_KEYS = ("depth", "ops", "kernels", "pool_kernels", "strides", "pool_strides", "dilations", "channels", "width",
              "max_width", "bias", "positions")  # fmt: skip
STAGE_KEYS = ("stages", "stem", "head", "name", "source", "description")


# ---------------------------------------------------------------- values


def parse_int(name: str, value: Any, minimum: int | None = None, maximum: int = INT_LIMIT - 1) -> int:
    """An integer from an int, an integral float or text (``5e6``, ``1_000``); bounds checked."""
    raw = value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise field_error(name, raw, "must be an integer") from None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise field_error(name, raw, "must be an integer")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(name, raw, "must be an integer")
    if minimum is not None and value < minimum:
        raise field_error(name, raw, f"must be >= {minimum}")
    if value > maximum:
        raise field_error(name, raw, f"must be at most {maximum}")
    return value


def parse_int_list(name: str, value: Any, minimum: int = 1, maximum: int = INT_LIMIT - 1) -> list[int]:
    """``"1,3,5"``, ``[1, 3, 5]`` or ``3`` -> sorted distinct integers."""
    raw = value
    if isinstance(value, str):
        value = [v for v in (p.strip() for p in value.split(",")) if v]
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise field_error(name, raw, "must be a non-empty list of integers")
    out = []
    for v in value:
        try:
            out.append(parse_int(name, v, minimum, maximum))
        except ValueError:
            raise field_error(
                name, raw, f"every entry must be an integer in {minimum}..{maximum}; {v!r} is not"
            ) from None
    return sorted(set(out))


def parse_str_list(name: str, value: Any, allowed: tuple[str, ...]) -> list[str]:
    """``"conv,maxpool"`` or a list -> distinct names from ``allowed``, in the order given."""
    raw = value
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise field_error(name, raw, f"must be a non-empty list of {', '.join(allowed)}")
    out = []
    for v in value:
        if v not in allowed:
            raise field_error(name, v, f"must be one of {', '.join(allowed)}")
        if v not in out:
            out.append(v)
    return out


def parse_act_dtype(value: Any) -> int:
    """Bytes per element of an --act-dtype name."""
    if value not in ACT_DTYPES:
        raise field_error("act_dtype", value, f"must be one of {', '.join(ACT_DTYPES)}")
    return ACT_DTYPES[value]


def parse_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise field_error(name, value, "must be true or false")
    return value


def parse_depth(value: Any) -> tuple[int, int]:
    """7 | '7' | '2-8' | [2, 8] -> (min, max)."""
    raw = value
    if isinstance(value, str):
        parts = value.strip().split("-")
        if len(parts) not in (1, 2) or not all(p.strip() for p in parts):
            raise field_error("depth", raw, "must be N or MIN-MAX with 1 <= N <= 32")
        value = [p.strip() for p in parts]
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 2):
        raise field_error("depth", raw, "must be N or MIN-MAX with 1 <= N <= 32")
    try:
        lo, hi = (parse_int("depth", v, 1, MAX_DEPTH) for v in (value[0], value[-1]))
    except ValueError:
        raise field_error("depth", raw, f"must be N or MIN-MAX with 1 <= N <= {MAX_DEPTH}") from None
    if lo > hi:
        raise field_error("depth", raw, "minimum is larger than maximum")
    return lo, hi


def parse_fraction(name: str, value: Any, maximum: int = 1 << 20) -> Fraction:
    """A non-negative rational number (``1.5``, ``3/2``) no larger than ``maximum``."""
    try:
        f = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise field_error(name, value, "must be a number") from None
    if f < 0:
        raise field_error(name, value, "must be >= 0")
    if f > maximum:
        raise field_error(name, value, f"must be at most {maximum}")
    return f


def parse_ratio(name: str, value: Any) -> float:
    """A positive, finite real number."""
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise field_error(name, value, "must be a number") from None
    if not math.isfinite(ratio) or not ratio > 0:
        raise field_error(name, value, "must be a positive finite number")
    return ratio


# ---------------------------------------------------------------- files


def load_space_file(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML space file (keys as the long CLI flags, with underscores)."""
    text = read_text(path, "space")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise field_error("space", str(path), f"is not valid TOML: {exc}") from None
    except RecursionError:
        raise field_error("space", str(path), "is nested too deeply to be a space file") from None
    return data


def check_keys(settings: dict[str, Any]) -> None:
    for key in settings:
        if key not in DEFAULTS:
            raise field_error(key, settings[key], f"unknown setting; known: {', '.join(DEFAULTS)}")


__all__ = [
    "ACT_DTYPES",
    "DEFAULTS",
    "INT_LIMIT",
    "SETTINGS",
    "Setting",
    "load_space_file",
    "parse_act_dtype",
    "parse_bool",
    "parse_depth",
    "parse_fraction",
    "parse_int",
    "parse_int_list",
    "parse_ratio",
    "parse_str_list",
    "read_text",
]
