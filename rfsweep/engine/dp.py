"""The counting programme's pieces, shared by the exact count (:mod:`rfsweep.engine.count`) and the
engine's suffix tables (:mod:`rfsweep.engine.run`): reachable jumps and their transitions, the rf cap,
the table's size, and exact integers of any size from residues modulo primes below 2^62.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from rfsweep.space import Space
from rfsweep.space.settings import INT_LIMIT

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


def counts_fit(space: Space, t: int) -> bool:
    """Whether every subtree below a node of depth ``t`` holds fewer than 2^62 candidates: a suffix table's
    int64 counts are exact from there down (a space past int64, OFA's 2.2e19, wraps only the rows of
    short prefixes)."""
    return (space.depth_max - t + 1) * math.prod(space.radices[t:]) < INT_LIMIT


def suffix_counts(space: Space, K, rf_min: int, rf_max: int | None):
    """(jump values, rf cap, table) of ``kernels.cpu.suffix_table`` for the rf window [rf_min, rf_max] (None:
    no upper bound) and the rest of ``K``'s constraints that the programme tracks, or None when the table
    would hold more than ``DP_CELLS_MAX`` cells. ``table[t, j, rf, m]`` counts the survivors below a node
    of depth t in state (jump_values[j], rf, convs m); ``table[0, 0, 1, 0]`` those of the whole space."""
    from rfsweep.engine import steer
    from rfsweep.kernels import layer_math as lm
    from rfsweep.kernels.cpu import suffix_table

    cap = dp_cap(space, rf_min, rf_max)
    jv, nxt, final = jump_tables(space)
    if (space.depth_max + 1) * len(jv) * (cap + 1) * (space.min_convs + 1) > DP_CELLS_MAX:
        return None
    cons = K.cons.copy()
    cons[lm.C_RF_MIN] = rf_min
    cons[lm.C_RF_MAX] = cap if rf_max is not None or space.padding == "valid" else space.rf_bound
    table = np.zeros((space.depth_max + 1, len(jv), cap + 1, space.min_convs + 1), np.int64)
    steer.call(suffix_table, K._replace(cons=cons), jv, nxt, final, cap, table)
    return jv, cap, table


def dp_cells(space: Space, cap: int) -> int:
    return len(jump_tables(space)[0]) * (cap + 1) * (space.min_convs + 1) * len(moduli_for(space.size))
