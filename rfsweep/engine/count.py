"""Exact counting: the number of candidates meeting the constraints, without enumerating them where the
constraints allow.

rf, jump, out-size and min-convs constraints and a head are counted by a dynamic programme over
(jump, rf, convs) states (``kernels.cpu.count_dp``), whose cost does not grow with the size of the
space; budgets (params, MACs), ``--no-unproductive`` and detector levels need the whole prefix and are
counted by the pruned enumeration. Counts are exact integers of any size: the programme runs modulo
primes below 2^62, as many as the space needs, and the Chinese remainder theorem rebuilds the number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.engine import run as engine
from rfsweep.engine import steer
from rfsweep.engine.dp import DP_CELLS_MAX, counts_fit, crt, dp_cap, dp_cells, jump_tables, moduli_for, suffix_counts
from rfsweep.engine.run import Stats
from rfsweep.kernels import layer_math as lm
from rfsweep.space import Space, build_space

METHODS = ("auto", "dp", "stages", "enumerate")


def make_space(space: Space | dict | None = None, *, for_search: bool = True, **settings: Any) -> Space:
    """A Space from a Space, a settings dict and/or keyword settings (keywords win)."""
    if isinstance(space, Space):
        if settings:
            return build_space({**space.settings, **settings}, for_search=for_search)
        return space
    return build_space({**(space or {}), **settings}, for_search=for_search)


def rf_histogram(space: Space, rf_min: int, rf_max: int | None) -> list[int]:
    """Exact number of candidates per final rf (index = rf) meeting the jump, out-size and min-convs
    constraints (and a head). With ``rf_max`` None the last bucket (index ``rf_min``) holds every
    rf >= rf_min, except with 'valid' padding, where every rf has its own bucket."""
    from rfsweep.kernels.cpu import count_dp

    jv, nxt, final = jump_tables(space)
    cap = dp_cap(space, rf_min, rf_max)
    if cap < rf_min:
        return [0] * (cap + 1)  # nothing reaches rf_min (callers sum hist[rf_min:])
    K = space.kernel
    cons = K.cons.copy()
    cons[lm.C_RF_MIN] = rf_min
    cons[lm.C_RF_MAX] = cap if rf_max is not None or space.padding == "valid" else space.rf_bound
    mods = moduli_for(space.size)
    hist = np.zeros((cap + 1, len(mods)), np.int64)
    steer.call(count_dp, K._replace(cons=cons), jv, nxt, final, cap, np.array(mods, np.int64), steer.control(), hist)
    return [crt(list(row), mods) for row in hist]


def prefix_flags(space: Space) -> list[str]:
    """The flags set on the space whose constraints need a candidate's whole prefix (the programme's
    states do not track them)."""
    flags = (
        ("--max-params", space.max_params is not None),
        ("--max-macs", space.max_macs is not None),
        ("--max-peak-act", space.max_peak_act is not None),
        ("--max-latency-ms", space.max_latency is not None),
        ("--no-unproductive", space.no_unproductive),
        ("--anchors", bool(space.levels)),
    )
    return [flag for flag, on in flags if on]


def count_method(space: Space) -> tuple[str, str]:
    """('dp', 'stages' or 'enumerate', why): the programme unless a constraint needs the whole prefix;
    for a space of stages under one budget, the split method of rfsweep.engine.stage_count."""
    from rfsweep.engine import stage_count

    if space.has_blocks and stage_count.applicable(space) is None:
        if space.max_params is None and space.max_macs is None and space.max_latency is None:
            return "stages", "per-stage tables of the choices within the peak-activation budget, rf sums convolved"
        return "stages", "per-stage tables split by cost granularity (exact meet in the middle under the budget)"
    if space.max_latency is not None:  # the kernels' walk does not know latency: only the split method counts it
        raise field_error("max_latency_ms", space.settings.get("max_latency_ms"),
                          f"is counted by the stages method only, which cannot count this space: "
                          f"{stage_count.applicable(space)}")  # fmt: skip
    needs = prefix_flags(space)
    if needs:
        return "enumerate", f"{', '.join(needs)} need{'s' if len(needs) == 1 else ''} the whole prefix"
    cells = dp_cells(space, dp_cap(space, space.rf_min, space.rf_max))
    if cells > DP_CELLS_MAX:
        return (
            "enumerate",
            f"the programme would need {cells:.3g} states (at most {DP_CELLS_MAX:.0e}); narrow the rf window",
        )
    return "dp", "dynamic programme over (jump, rf, convs) states"


@dataclass
class CountResult:
    count: int
    space_size: int
    method: str
    reason: str
    seconds: float
    device: str
    evaluated: int | None = None

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "space_size": self.space_size,
            "method": self.method,
            "reason": self.reason,
            "seconds": round(self.seconds, 6),
            "device": self.device,
            "evaluated": self.evaluated,
            "rate": (self.space_size / self.seconds) if self.seconds > 0 else None,
        }


def count_details(
    space: Space | dict | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    method: str = "auto",
    progress=None,
    **settings: Any,
) -> CountResult:
    """Exact number of candidates meeting the constraints, and how it was found (and why so).

    rf, jump, out-size and min-convs constraints (and a head) are counted by dynamic programming over
    (jump, rf, convs) states, without enumerating: the cost does not grow with the space. Budgets
    (params, MACs), --no-unproductive and detector levels need the whole prefix, so they are counted
    by the pruned enumeration; so is a space whose programme would be too large (the reason says so).
    """
    sp = make_space(space, for_search=False, **settings)
    if method not in METHODS:
        raise field_error("method", method, f"must be one of {', '.join(METHODS)}")
    engine.check_threads(threads)
    if device != "cpu":  # refuse a device that is not there even when the DP (CPU-only) answers
        from rfsweep.engine import device as gpu

        gpu.backend(device)
    best, why = count_method(sp)
    if method == "dp" and best != "dp":
        if best == "stages":
            why = "a budget needs the split method (--method stages)"
        raise field_error("method", "dp", f"the programme cannot count this space: {why}; use enumerate")
    if method == "auto":
        method = best
    elif method != best:
        why = "asked for (--method)"
    if method == "stages" and best != "stages":
        from rfsweep.engine import stage_count

        raise field_error("method", "stages", f"cannot count this space: {stage_count.applicable(sp)}")
    t0 = time.perf_counter()
    if method == "dp":
        hist = rf_histogram(sp, sp.rf_min, sp.rf_max)
        return CountResult(sum(hist[sp.rf_min :]), sp.size, "dp", why, time.perf_counter() - t0, "cpu")
    if method == "stages":
        from rfsweep.engine import stage_count

        n = stage_count.count(sp, threads=threads, progress=progress)
        return CountResult(n, sp.size, "stages", why, time.perf_counter() - t0, "cpu")
    stats = Stats()
    n = engine.count_by_enumeration(sp, device=device, threads=threads, stats=stats, progress=progress)
    return CountResult(n, sp.size, "enumerate", why, time.perf_counter() - t0, stats.device, stats.evaluated)


def count(space: Space | dict | None = None, **kwargs: Any) -> int:
    """Exact number of candidates meeting the constraints (see :func:`count_details`)."""
    return count_details(space, **kwargs).count


def nearest_rfs(space: Space, limit: int = 3) -> tuple[list[int], list[int]]:
    """Reachable final rfs just below and just above the space's RF window (jump, out-size and min-convs
    constraints respected; budgets, --no-unproductive and levels not)."""
    hi_cap = min(space.rf_bound, max(2 * (space.rf_max or space.rf_min), space.rf_min + 64))
    if dp_cells(space, hi_cap) > DP_CELLS_MAX:
        return [], []
    hist = rf_histogram(space, 1, hi_cap)
    below = [r for r in range(min(space.rf_min - 1, len(hist) - 1), 0, -1) if hist[r]][:limit]
    above_start = (space.rf_max or space.rf_min) + 1
    above = [r for r in range(above_start, len(hist)) if hist[r]][:limit]
    return below, above


def window_count(space: Space) -> int | None:
    """Candidates in the rf window under the programme's constraints alone (None when it cannot say):
    the exact survivor count when nothing else constrains, else an upper bound."""
    cap = dp_cap(space, space.rf_min, space.rf_max)
    if dp_cells(space, cap) > DP_CELLS_MAX:
        return None
    if counts_fit(space, 0):
        # the count pass's table (kernels.cpu.suffix_table) holds it: a search compiles one programme, not two
        table = suffix_counts(space, space.kernel, space.rf_min, space.rf_max)
        if table is not None:
            return int(table[2][0, 0, 1, 0])
    return sum(rf_histogram(space, space.rf_min, space.rf_max)[space.rf_min :])


__all__ = ["CountResult", "count", "count_details", "count_method", "nearest_rfs", "rf_histogram", "window_count"]
