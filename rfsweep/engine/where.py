"""The ``--where`` filter language over search outputs: parsed here (never ``eval``), exact on integers.

Comparisons between the file's numeric columns and numbers, joined with ``and``, ``or``, ``not`` and
parentheses; comparisons chain as in Python. For example::

    params < 2e6 and depth >= 5
    200 <= rf <= 250 and not (jump == 32 or out_size < 7)

Integer columns compare exactly with any number: ``2e6`` is the integer 2000000 and ``rf < 10.5`` means
``rf <= 10``, never a float comparison that rounds large values. A parsed filter evaluates on a pyarrow
Table or RecordBatch, or on a dict of numpy columns (:meth:`Where.mask`, the semantics export and search
share), and converts to a ``pyarrow.compute`` Expression for ``pyarrow.dataset`` scans
(:attr:`Where.expression`, which selects the same rows).

The search can apply the same filter to its survivors: ``parse_where(text, sink.schema(space))`` before
the run, then ``mask(table)`` on each table it writes (or on a dict of numpy columns named as the
output's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from math import ceil, floor
from typing import Any

import numpy as np
import pyarrow as pa

from rfsweep.core.errors import field_error

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
KEYWORDS = ("and", "or", "not")

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|<|>|=)"
    r"|(?P<punct>[()\-])"
    r")"
)


# ------------------------------------------------------------------ the filter tree


@dataclass(frozen=True)
class Compare:
    """``column op value``: value is a number (int for integer columns, float otherwise) or a column."""

    column: str
    op: str
    value: int | float | str
    value_is_column: bool = False


@dataclass(frozen=True)
class Const:
    """A comparison whose answer the literal alone decides (e.g. ``rf == 1.5`` on an integer column)."""

    value: bool


@dataclass(frozen=True)
class Logic:
    op: str  # "and", "or", "not"
    items: tuple


Node = Compare | Const | Logic


@dataclass
class Where:
    """A parsed, column-checked filter. ``columns`` are the columns it reads."""

    text: str
    root: Node
    columns: tuple[str, ...] = field(default_factory=tuple)

    def mask(self, data: pa.Table | pa.RecordBatch | Mapping[str, Any]) -> np.ndarray:
        """Boolean numpy mask of the rows of ``data`` (a pyarrow Table/RecordBatch or a dict of columns)."""
        cols = {name: numpy_column(data, name) for name in self.columns}
        n = num_rows(data)
        return np.asarray(_eval(self.root, cols, n), dtype=bool)

    @property
    def expression(self):
        """The same filter as a ``pyarrow.compute`` Expression (for ``pyarrow.dataset`` scans)."""
        return _expr(self.root)


def num_rows(data) -> int:
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return data.num_rows
    return len(next(iter(data.values()))) if data else 0


def numpy_column(data, name: str) -> np.ndarray:
    col = data.column(name) if isinstance(data, (pa.Table, pa.RecordBatch)) else data[name]
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    arr = col.to_numpy(zero_copy_only=False) if isinstance(col, pa.Array) else np.asarray(col)
    # compare integers as int64 (unsigned narrow types against negative literals), floats as float64
    return arr.astype(np.int64 if arr.dtype.kind in "iub" else np.float64, copy=False)


_NP_OPS = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def _eval(node: Node, cols: dict[str, np.ndarray], n: int) -> np.ndarray:
    if isinstance(node, Const):
        return np.full(n, node.value)
    if isinstance(node, Compare):
        right = cols[node.value] if node.value_is_column else node.value
        return _NP_OPS[node.op](cols[node.column], right)
    if node.op == "not":
        return ~_eval(node.items[0], cols, n)
    parts = [_eval(item, cols, n) for item in node.items]
    out = parts[0]
    for p in parts[1:]:
        out = (out & p) if node.op == "and" else (out | p)
    return out


def _expr(node: Node):
    import pyarrow.compute as pc

    if isinstance(node, Const):
        return pc.scalar(node.value)
    if isinstance(node, Compare):
        left = pc.field(node.column)
        if node.value_is_column:
            right = pc.field(node.value)
        elif isinstance(node.value, int):
            left, right = left.cast(pa.int64()), pc.scalar(node.value)
        else:
            left, right = left.cast(pa.float64()), pc.scalar(float(node.value))
        return {
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
            "==": left == right,
            "!=": left != right,
        }[node.op]
    if node.op == "not":
        return ~_expr(node.items[0])
    out = _expr(node.items[0])
    for item in node.items[1:]:
        out = (out & _expr(item)) if node.op == "and" else (out | _expr(item))
    return out


# ------------------------------------------------------------------ parsing


def filter_columns(schema: pa.Schema) -> dict[str, str]:
    """The columns a filter may name: every integer or floating-point column -> 'int' or 'float'."""
    out = {}
    for f in schema:
        if pa.types.is_integer(f.type):
            out[f.name] = "int"
        elif pa.types.is_floating(f.type):
            out[f.name] = "float"
    return out


def parse_where(text: str, schema: pa.Schema) -> Where:
    """Parse ``text`` against the columns of ``schema``; every mistake is one line naming 'where'."""
    if not isinstance(text, str) or not text.strip():
        raise field_error("where", text, "must be a non-empty filter, e.g. 'params < 2e6 and depth >= 5'")
    kinds = filter_columns(schema)
    parser = _Parser(text, kinds, {f.name for f in schema})
    root = parser.parse()
    return Where(text, root, tuple(sorted(parser.used)))


class _Parser:
    """Recursive descent: or_ := and_ ('or' and_)*; and_ := not_ ('and' not_)*; not_ := 'not' not_ | atom;
    atom := '(' or_ ')' | operand (cmp operand)+; operand := column | ['-'] number."""

    def __init__(self, text: str, kinds: dict[str, str], all_columns: set[str]):
        self.text, self.kinds, self.all_columns = text, kinds, all_columns
        self.tokens = self._tokenize()
        self.pos = 0
        self.used: set[str] = set()

    def _fail(self, why: str, at: int | None = None):
        where = f" (at character {at + 1})" if at is not None else ""
        raise field_error("where", self.text, why + where)

    def _tokenize(self) -> list[tuple[str, str, int]]:
        tokens, i, text = [], 0, self.text
        while i < len(text):
            if text[i:].strip() == "":
                break
            m = _TOKEN.match(text, i)
            if not m or m.end() == i:
                start = i + len(text[i:]) - len(text[i:].lstrip())
                self._fail(
                    f"unexpected character {text[start]!r}; the filter takes columns, numbers, "
                    "comparisons (< <= > >= == !=), and, or, not and parentheses",
                    start,
                )
            kind = m.lastgroup
            value = m.group(kind)
            start = m.start(kind)
            if kind == "name" and value.lower() in KEYWORDS:
                kind, value = "kw", value.lower()
            tokens.append((kind, value, start))
            i = m.end()
        tokens.append(("end", "", len(text)))
        return tokens

    def _peek(self):
        return self.tokens[self.pos]

    def _take(self):
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def parse(self) -> Node:
        node = self._or()
        kind, value, at = self._peek()
        if kind != "end":
            self._fail(f"unexpected {value!r}; expected and, or or the end", at)
        return node

    def _or(self) -> Node:
        items = [self._and()]
        while self._peek()[:2] == ("kw", "or"):
            self._take()
            items.append(self._and())
        return items[0] if len(items) == 1 else Logic("or", tuple(items))

    def _and(self) -> Node:
        items = [self._not()]
        while self._peek()[:2] == ("kw", "and"):
            self._take()
            items.append(self._not())
        return items[0] if len(items) == 1 else Logic("and", tuple(items))

    def _not(self) -> Node:
        if self._peek()[:2] == ("kw", "not"):
            self._take()
            return Logic("not", (self._not(),))
        return self._atom()

    def _atom(self) -> Node:
        kind, value, at = self._peek()
        if (kind, value) == ("punct", "("):
            self._take()
            node = self._or()
            kind, value, at = self._take()
            if (kind, value) != ("punct", ")"):
                self._fail(f"expected ')' but found {_shown(value)}", at)
            return node
        left = self._operand()
        comparisons = []
        while self._peek()[0] == "op":
            op = self._take()[1]
            right = self._operand()
            comparisons.append(self._compare(left, "==" if op == "=" else op, right))
            left = right
        if not comparisons:
            kind, value, at = self._peek()
            self._fail(f"expected a comparison after {left[1]!r}, e.g. '{left[1]} < 10'", left[2])
        return comparisons[0] if len(comparisons) == 1 else Logic("and", tuple(comparisons))

    def _operand(self) -> tuple[str, Any, int]:
        """('column', name, at) or ('number', Fraction, at)."""
        kind, value, at = self._take()
        sign = 1
        if (kind, value) == ("punct", "-"):
            sign = -1
            kind, value, _ = self._take()
            if kind != "num":
                self._fail("'-' must be followed by a number", at)
        if kind == "num":
            try:
                return ("number", sign * Fraction(value.replace("_", "")), at)
            except (ValueError, ZeroDivisionError):
                self._fail(f"{value!r} is not a number", at)
        if kind == "name":
            if value not in self.kinds:
                if value in self.all_columns:
                    self._fail(
                        f"column {value!r} holds lists; a filter compares the numeric columns: {', '.join(self.kinds)}",
                        at,
                    )
                self._fail(f"no column {value!r} in this file; columns: {', '.join(self.kinds)}", at)
            self.used.add(value)
            return ("column", value, at)
        self._fail(f"expected a column or a number but found {_shown(value)}", at)

    def _compare(self, left, op: str, right) -> Node:
        if left[0] == "number" and right[0] == "number":
            self._fail("a comparison needs a column on at least one side", left[2])
        if left[0] == "number":  # 5 <= depth  ->  depth >= 5
            left, op, right = right, FLIP[op], left
        column = left[1]
        if right[0] == "column":
            return Compare(column, op, right[1], value_is_column=True)
        return literal_compare(column, self.kinds[column], op, right[1])


def _shown(token: str) -> str:
    return repr(token) if token else "the end"


def literal_compare(column: str, kind: str, op: str, x: Fraction) -> Compare | Const:
    """``column op x`` exactly: on an integer column x becomes an integer bound (floor or ceil), and
    bounds beyond int64 become constants, so no comparison goes through a rounding float."""
    if kind == "float":
        try:
            return Compare(column, op, float(x))
        except OverflowError:  # beyond any float64: every finite value is on one side
            return Const(op == "!=" or (op in ("<", "<=")) == (x > 0))
    if op in ("==", "!="):
        if x.denominator != 1 or not INT64_MIN <= x <= INT64_MAX:
            return Const(op == "!=")
        return Compare(column, op, int(x))
    bound = {"<": ceil, ">=": ceil, "<=": floor, ">": floor}[op](x)
    if bound > INT64_MAX:
        return Const(op in ("<", "<="))
    if bound < INT64_MIN:
        return Const(op in (">", ">="))
    return Compare(column, op, int(bound))


__all__ = ["Where", "parse_where", "filter_columns", "literal_compare", "numpy_column", "num_rows"]
