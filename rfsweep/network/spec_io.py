"""Network specs out: JSON with one layer a line, TOML with one [[layers]] table a layer, written atomically.

The TOML emitter covers what a spec holds (strings, booleans, integers, floats, arrays, tables and arrays
of tables) and nothing more; ``tomllib`` reads its output back equal to the input. TOML has no null: a
key whose value is None is left out, which in a spec means the same (an unknown input size, a default).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from rfsweep.core.errors import field_error
from rfsweep.core.files import atomic, check_output

FORMATS = (".json", ".toml")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def to_json(spec: dict) -> str:
    """JSON with the top-level fields first and one layer a line, so diffs read layer by layer."""
    head = {k: v for k, v in spec.items() if k != "layers"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v)},")
    lines.append('  "layers": [')
    lines.append(",\n".join(f"    {json.dumps(layer)}" for layer in spec.get("layers", [])))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)  # fullmatch: "$" would let "0\n" through


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        if any(item is None for item in v):
            raise field_error(where, list(v), "TOML has no null inside an array")
        return "[" + ", ".join(_value(item, where) for item in v) + "]"
    if isinstance(v, dict):
        items = [f"{_key(str(k))} = {_value(x, f'{where}.{k}')}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise field_error(where, repr(v), "cannot be written as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(item, dict) for item in v)


def to_toml(spec: dict) -> str:
    """TOML: plain keys first (tables inline), then each array of tables as ``[[key]]`` sections."""
    lines = []
    arrays = []
    for k, v in spec.items():
        if v is None:
            continue
        if _is_table_array(v):
            arrays.append((k, v))
        else:
            lines.append(f"{_key(str(k))} = {_value(v, str(k))}")
    for k, tables in arrays:
        for table in tables:
            lines.append("")
            lines.append(f"[[{_key(str(k))}]]")
            for tk, tv in table.items():
                if tv is not None:
                    lines.append(f"{_key(str(tk))} = {_value(tv, f'{k}.{tk}')}")
    return "\n".join(lines) + "\n"


def dumps(spec: dict, fmt: str) -> str:
    """The spec as ``.json`` or ``.toml`` text."""
    return to_toml(spec) if fmt == ".toml" else to_json(spec)


def write_spec(spec: dict, path: str, protect: str | None = None) -> None:
    """Write ``spec`` to ``path`` (format by extension) under a temporary name beside it, renamed when
    complete; ``protect`` names a file that must not be overwritten (the model it was imported from)."""
    suffix = Path(path).suffix.lower()
    if protect is not None and (
        os.path.abspath(path) == os.path.abspath(protect)
        or (os.path.exists(path) and os.path.exists(protect) and os.path.samefile(path, protect))
    ):
        raise field_error("output", path, "is the model being imported; write the spec to another file")
    if suffix not in FORMATS:
        raise field_error("output", path, "must end in .json or .toml")
    text = dumps(spec, suffix)
    out = check_output(path, "output")  # the shared output rule: symlinks followed, devices written in place
    try:
        with atomic(out, suffix) as name, open(name, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise field_error("output", path, f"cannot write there ({exc.strerror or type(exc).__name__})") from None
