"""Exact numbers as users read them: plain JSON scalars, short decimal text, rounded floats."""

from __future__ import annotations

from fractions import Fraction


def plain(x: Fraction | int | None) -> int | float | None:
    """An exact number as a JSON/pandas scalar: int when integral, else float."""
    if x is None:
        return None
    if isinstance(x, Fraction):
        return int(x) if x.denominator == 1 else float(x)
    return x


def fmt_number(x) -> str:
    """Exact, short: integers plain, terminating fractions as decimals, others as a/b."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    d = x.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:
        return format(float(x), ".10g")
    return f"{x.numerator}/{x.denominator}"


def rounded(x: float, nd: int = 6) -> float:
    """A float rounded to ``nd`` decimals for JSON output."""
    return round(float(x), nd)


def json_number(x) -> int | float:
    """An exact number as JSON: an int when integral, else a float rounded to 6 decimals."""
    v = plain(Fraction(x))
    return v if isinstance(v, int) else rounded(v)
