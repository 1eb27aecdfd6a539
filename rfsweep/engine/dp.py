"""The counting programme's pieces, shared by the exact count (:mod:`rfsweep.engine.count`) and the
engine's suffix tables (:mod:`rfsweep.engine.run`): reachable jumps and their transitions, the rf cap,
the table's size, and exact integers of any size from residues modulo primes below 2^62.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from rfsweep.space import Space

DP_CELLS_MAX = 10_000_000  # (jump x rf x convs x primes) states of the programme; beyond it, enumerate


# ------------------------------------------------------------------ exact integers


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24 (these bases suffice)."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for p in bases:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


@cache
def primes(count: int) -> tuple[int, ...]:
    """The ``count`` largest primes below 2^62 (the sum of two stays below 2^63: int64 never wraps)."""
    out, n = [], (1 << 62) - 1
    while len(out) < count:
        if _is_prime(n):
            out.append(n)
        n -= 2
    return tuple(out)


def moduli_for(bound: int) -> tuple[int, ...]:
    """Enough primes that their product exceeds ``bound`` (every count is at most the space size)."""
    k = 1
    while math.prod(primes(k)) <= bound:
        k += 1
    return primes(k)


def crt(residues: list[int], moduli: tuple[int, ...]) -> int:
    """The integer in [0, prod(moduli)) with these residues."""
    total, prod = 0, math.prod(moduli)
    for r, m in zip(residues, moduli):
        part = prod // m
        total += int(r) * part * pow(part, -1, m)
    return total % prod


# ------------------------------------------------------------------ the programme


def jump_tables(space: Space):
    """Reachable jumps that can still end on an allowed jump, and the transition table between them."""

    def ok(j):
        return not space.jumps or any(a % j == 0 for a in space.jumps)

    values = {1}
    frontier = {1}
    for p in range(space.depth_max):
        frontier = {j * c.jump_factor for j in frontier for c in space.positions[p] if ok(j * c.jump_factor)}
        values |= frontier
    jv = sorted(values)
    index = {j: i for i, j in enumerate(jv)}
    nxt = np.full((len(jv), space.depth_max, max(space.radices)), -1, np.int64)
    for i, j in enumerate(jv):
        for p, options in enumerate(space.positions):
            for c, ch in enumerate(options):
                nxt[i, p, c] = index.get(j * ch.jump_factor, -1)
    final = np.array([1 if not space.jumps or j in space.jumps else 0 for j in jv], np.int64)
    return np.array(jv, np.int64), nxt, final


def dp_cap(space: Space, rf_min: int, rf_max: int | None) -> int:
    """The programme's last rf bucket: the upper bound when there is one, else rf_min (saturating).

    With 'valid' padding the out size follows from the rf, so nothing may saturate: no unit of a map
    has an rf above the input size, which bounds it instead.
    """
    hi = space.rf_bound if rf_max is None else min(rf_max, space.rf_bound)
    if space.padding == "valid":
        return min(hi, space.input_size)
    return rf_min if rf_max is None else hi


def dp_cells(space: Space, cap: int) -> int:
    return len(jump_tables(space)[0]) * (cap + 1) * (space.min_convs + 1) * len(moduli_for(space.size))
