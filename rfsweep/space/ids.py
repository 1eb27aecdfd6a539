"""arch_ids beyond int64: the ids of spaces with 2^62 or more of them (Once-for-All's 2.2e19 subnets).

A space whose ids fit int64 gets them from the kernels (``out[O_ARCH]``) and writes them as int64. A
larger space (up to 10^38 ids) writes them as ``decimal128(38, 0)``, an exact integer type every
Parquet reader knows (pandas: Python ``Decimal``; duckdb: ``DECIMAL(38,0)``; polars: ``Decimal``): the
sink computes them from the survivors' choice indices in 128-bit arithmetic (two uint64 limbs), since
the kernels' int64 id wraps. Orders and ties never need the id itself: a candidate's arch_id order is
its (depth, choices) lexicographic order (depths in increasing order, then the mixed-radix digits), so
:func:`order_keys` gives :func:`numpy.lexsort` keys that rank rows by arch_id for any space.
"""

from __future__ import annotations

import numbers
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from rfsweep.core.errors import field_error
from rfsweep.kernels import layer_math as lm
from rfsweep.space.settings import INT_LIMIT

ID_LIMIT = 10**38  # decimal128(38, 0) holds 38 digits
DECIMAL = pa.decimal128(38, 0)
MASK64 = (1 << 64) - 1


def is_arch_id(value: Any) -> bool:
    """Whether ``value`` is an int-like arch_id (what :func:`as_arch_id` takes), not a row or a spec."""
    if isinstance(value, bool):
        return False
    return isinstance(value, (numbers.Integral, np.integer, Decimal, numbers.Rational, float, np.floating))


def as_arch_id(value: Any, field: str = "arch_id") -> int:
    """An arch_id as a Python int from any int-like value: int, numpy integer, ``Decimal`` (what pandas reads
    from the ``decimal128`` ids of a space of stages), an integral float or fraction, or decimal text.
    Anything else, a fraction part, or a negative value: one line naming the field."""
    raw = value
    out = None
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except ArithmeticError:
            value = None
    if isinstance(value, bool) or value is None:
        out = None
    elif isinstance(value, (numbers.Integral, np.integer)):
        out = int(value)
    elif isinstance(value, numbers.Rational):
        out = int(value) if value.denominator == 1 else None
    elif isinstance(value, (Decimal, float, np.floating)):
        d = Decimal(float(value)) if isinstance(value, np.floating) else Decimal(value)
        out = int(d) if d.is_finite() and d == d.to_integral_value() else None
    if out is None or out < 0:
        raise field_error(field, raw, "must be an integer >= 0")
    return out


def big(space) -> bool:
    """Whether the space's arch_ids pass int64 (the kernels' id wraps; the sink computes them)."""
    return space.id_space >= INT_LIMIT


def arrow_type(space) -> pa.DataType:
    return DECIMAL if big(space) else pa.int64()


def order_keys(out: np.ndarray, choice: np.ndarray, space) -> list[np.ndarray]:
    """:func:`numpy.lexsort` keys (least significant first) that order survivors by arch_id."""
    if not big(space):
        return [out[lm.O_ARCH]]
    return [choice[p] for p in range(choice.shape[0] - 1, -1, -1)] + [out[lm.O_DEPTH]]


def limbs(choice: np.ndarray, depth: np.ndarray, space) -> np.ndarray:
    """arch_ids as (n, 2) uint64 little-endian limbs (low, high): ``offset[depth] + digits`` in mixed radix,
    by Horner's rule in 128-bit arithmetic (each radix < 2^32, so a limb times a radix splits in halves)."""
    n = len(depth)
    lo = np.zeros(n, np.uint64)
    hi = np.zeros(n, np.uint64)
    low32 = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    for p, radix in enumerate(space.radices):
        live = depth > p  # rows whose candidate has a layer at p
        r = np.uint64(radix)
        digit = choice[p].astype(np.uint64)
        a, b = lo & low32, lo >> s32  # lo = b * 2^32 + a
        pa_, pb = a * r, b * r  # each < 2^64
        new_lo = pa_ + ((pb & low32) << s32)
        carry = (pb >> s32) + (new_lo < pa_).astype(np.uint64)
        new_hi = hi * r + carry
        summed = new_lo + digit
        new_hi += (summed < new_lo).astype(np.uint64)
        lo = np.where(live, summed, lo)
        hi = np.where(live, new_hi, hi)
    offsets = space.depth_offsets()
    off_lo = np.array([o & MASK64 for o in offsets], np.uint64)[depth]
    off_hi = np.array([o >> 64 for o in offsets], np.uint64)[depth]
    out = np.empty((n, 2), np.uint64)
    out[:, 0] = lo + off_lo
    out[:, 1] = hi + off_hi + (out[:, 0] < lo).astype(np.uint64)
    return out


def arrow_ids(out: np.ndarray, choice: np.ndarray, space) -> pa.Array:
    """The arch_id column of a batch of survivors (int64, or decimal128 for a big space)."""
    if not big(space):
        return pa.array(np.array(out[lm.O_ARCH], np.int64))
    depth = np.asarray(out[lm.O_DEPTH], np.int64)
    data = limbs(np.asarray(choice), depth, space)
    return pa.Array.from_buffers(DECIMAL, len(depth), [None, pa.py_buffer(data)])


def python_ids(column) -> list[int]:
    """An arch_id column (int64 or decimal128; Arrow or numpy) as Python ints."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column, pa.Array):
        column = column.to_pylist()
    return [int(v) for v in column]


def sort_keys(column) -> list[np.ndarray]:
    """:func:`numpy.lexsort` keys (least significant first) ranking an arch_id column (of a file) exactly."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column, pa.Array) and pa.types.is_decimal(column.type):
        data = np.frombuffer(column.buffers()[1], np.uint64)[2 * column.offset : 2 * (column.offset + len(column))]
        data = data.reshape(-1, 2)
        return [data[:, 0], data[:, 1]]
    if isinstance(column, pa.Array):
        column = column.to_numpy(zero_copy_only=False)
    return [np.asarray(column, np.int64)]


__all__ = ["DECIMAL", "ID_LIMIT", "arrow_ids", "arrow_type", "big", "limbs", "order_keys", "python_ids", "sort_keys"]
