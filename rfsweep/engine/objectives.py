"""What candidates are ranked by: sort keys, Pareto objectives, and the survivor columns they read.

One definition serves the search (``--sort``, ``--pareto``, ``--where`` on survivor batches) and the
selection of rows in a written file (``rfsweep export --top --sort``): a key is computed from a dict of
numpy columns named as the output's columns, ascending, ties to the smaller arch_id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.kernels import layer_math as lm
from rfsweep.space.settings import INT_LIMIT

SORT_KEYS = ("params", "macs", "rf_error", "erf", "peak_act", "latency_ms")
OBJECTIVES = ("params", "macs", "rf_error", "erf", "depth", "peak_act", "latency_ms")  # --pareto: minimised (erf max)
KEY_COLUMNS = {"params": "params", "macs": "macs", "rf_error": "rf", "erf": "erf_sigma", "depth": "depth",
               "peak_act": "peak_act", "latency_ms": "latency_ms"}  # fmt: skip


def rf_target2(space) -> int:
    """Twice the rf that ``rf_error`` measures from: the target, else the middle of the rf window."""
    if space.target_rf is not None:
        return 2 * space.target_rf
    return space.rf_min + (space.rf_max or space.rf_min)


def key(cols: Mapping[str, Any], name: str, target2: int | None = None) -> np.ndarray:
    """An ascending numpy key: fewest params, MACs, layers or peak activation elements, rf closest to the
    target (``|2 rf - target2|``, exact), largest ERF (``-erf_sigma``)."""
    if name == "depth" and name not in cols:
        raise field_error("pareto", name, "a space of stages has no depth column (its rows have every stage)")
    if name in ("params", "macs", "depth", "peak_act"):
        return np.asarray(cols[name], dtype=np.int64)
    if name == "latency_ms":
        if "latency_us" in cols:
            return np.asarray(cols["latency_us"], dtype=np.int64)  # whole microseconds: exact ties
        if "latency_ms" in cols:  # a written file's column: back to the whole microseconds it was summed in
            return np.rint(np.asarray(cols["latency_ms"], dtype=np.float64) * 1000).astype(np.int64)
        raise field_error("sort", name, "needs a latency table (--latency-lut FILE, a space of stages)")
    if name == "rf_error":
        if target2 is None:
            raise field_error("sort", name, "needs the space's target rf or rf window")
        return np.abs(2 * np.asarray(cols["rf"], dtype=np.int64) - target2)
    if name == "erf":
        return -np.asarray(cols["erf_sigma"], dtype=np.float64)
    raise field_error("sort", name, f"must be one of {', '.join(OBJECTIVES)}")


def survivor_columns(out: np.ndarray, space, choice: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The scalar output columns of a block of survivors (``out[O_*, :]``, column-major), as numpy arrays
    (views of ``out`` where no arithmetic is needed). With a latency table (``space.latency``) and the
    survivors' choices (``choice[p, i]``), also ``latency_ms`` (and ``latency_us``, its whole microseconds,
    which keys compare: not an output column)."""
    rf = out[lm.O_RF]
    pad = out[lm.O_PAD]
    cols = {
        "arch_id": out[lm.O_ARCH],  # the kernels' id: not for a space whose ids pass int64 (rfsweep.space.ids)
        "depth": out[lm.O_DEPTH],
        "rf": rf,
        "jump": out[lm.O_JUMP],
        "eff_padding": pad,
        "center": (rf - 1) / 2.0 - pad,
        "out_size": out[lm.O_N],
        "params": out[lm.O_PARAMS],
        "macs": out[lm.O_MACS],
        "erf_sigma": np.sqrt(out[lm.O_ERF] / 12.0),
        "peak_act": out[lm.O_PEAK],
        "peak_act_bytes": out[lm.O_PEAK_BYTES],
    }
    if space.id_space >= INT_LIMIT:
        del cols["arch_id"]
    if space.has_blocks:  # every candidate has all the positions: no depth column
        del cols["depth"]
    for i, lv in enumerate(space.levels):  # per detector level: its tap (layer index), rf and ERF sigma
        base = lm.NO + 3 * i
        cols[f"s{lv.stride}_tap"] = out[base]
        cols[f"s{lv.stride}_rf"] = out[base + 1]
        cols[f"s{lv.stride}_erf_sigma"] = np.sqrt(out[base + 2] / 12.0)
    if getattr(space, "latency", None) is not None and choice is not None:
        from rfsweep.space.latency import RESOLUTION_US

        units = space.latency.row_units(choice, space.in_channels)
        cols["latency_ms"] = units / (1000 // RESOLUTION_US)  # the nearest double to the exact ms
        cols["latency_us"] = units
    return cols


def parse_objectives(text: Any) -> tuple[str, ...]:
    """``"params,macs"`` -> ("params", "macs"): two or three distinct objectives."""
    raw = text
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text or ())
    if not 2 <= len(items) <= 3 or len(set(items)) != len(items):
        raise field_error("pareto", raw, f"name two or three different objectives of {', '.join(OBJECTIVES)}")
    for t in items:
        if t not in OBJECTIVES:
            raise field_error("pareto", t, f"must be one of {', '.join(OBJECTIVES)}")
    return tuple(items)


def front_mask(keys: list[np.ndarray]) -> np.ndarray:
    """Rows no other row dominates (another row at least as good in every key and better in one).

    Rows with identical keys do not dominate each other: all of them are kept. Exact and O(n log n):
    the distinct key vectors are taken in lexicographic order, so every vector that dominates one comes
    before it; a Fenwick tree over the second key's ranks holds the least third key seen so far, and a
    vector is dominated exactly when some earlier one has second and third keys no larger.
    """
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, bool)
    k1, k2 = keys[0], keys[1]
    k3 = keys[2] if len(keys) > 2 else np.zeros(n)
    stacked = np.stack([_ranks(k1), _ranks(k2), _ranks(k3)], axis=1)
    uniq, inverse = np.unique(stacked, axis=0, return_inverse=True)  # lexicographic order
    keep_u = _front_sorted(uniq[:, 1].astype(np.int64), uniq[:, 2].astype(np.int64))
    return keep_u[inverse.ravel()]


def _ranks(a: np.ndarray) -> np.ndarray:
    """Dense ranks (0..) of a key: equal values equal ranks, order kept; works for floats and ints."""
    _, inv = np.unique(a, return_inverse=True)
    return inv.ravel()


def _front_sorted(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    from rfsweep.kernels.cpu import pareto_sorted

    keep = np.empty(len(b), np.bool_)
    pareto_sorted(b, c, keep)
    return keep


__all__ = ["KEY_COLUMNS", "OBJECTIVES", "SORT_KEYS", "front_mask", "key", "parse_objectives", "rf_target2"]
