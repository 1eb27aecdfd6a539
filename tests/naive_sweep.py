"""Slow, obviously-correct sweep reference: enumerate every candidate with itertools and evaluate it
with the foundation arithmetic (rfsweep.arithmetic), one layer at a time, in plain Python."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

from rfsweep import arithmetic as ar
from rfsweep.analyze import sees_whole_input


def evaluate_candidate(space, idx):
    """Metrics of one candidate as the analyzer computes them, or None if some layer does not fit."""
    n = space.input_size
    a = ar.input_axis(n)
    params = macs = 0
    layers = space.layers(idx)
    cin = space.in_channels
    unproductive = False
    per_layer = []
    for layer in layers:
        k, s = layer["kernel"], layer["stride"]
        d = layer.get("dilation", 1)
        keff = ar.effective_kernel(k, d)
        if keff > 1 and sees_whole_input(a, n):
            unproductive = True
        pl, pr = ar.resolve_padding(space.padding, a.size, keff, s)
        a = ar.conv_axis(a, k, s, d, pl, pr)
        if a.size < 1:
            return None
        if layer["op"] == "conv":
            w = k * k * cin * layer["channels"]
            params += w + (layer["channels"] if space.bias else 0)
            macs += w * a.size * a.size
            cin = layer["channels"]
        per_layer.append(a)
    return {"layers": per_layer, "spec": layers,"rf": int(a.rf), "jump": int(a.jump), "eff_padding": int(a.eff_padding), "center": float(a.center),
            "out_size": a.size, "params": params, "macs": macs, "erf_sigma": math.sqrt(a.erf_var),
            "unproductive": unproductive}


def meets(space, m):
    if m is None:
        return False
    if m["rf"] < space.rf_min or (space.rf_max is not None and m["rf"] > space.rf_max):
        return False
    if m["out_size"] < space.min_out_size:
        return False
    if space.max_params is not None and m["params"] > space.max_params:
        return False
    if space.max_macs is not None and m["macs"] > space.max_macs:
        return False
    if space.jumps and m["jump"] not in space.jumps:
        return False
    if space.no_unproductive and m["unproductive"]:
        return False
    if sum(layer["op"] == "conv" for layer in m["spec"]) < space.min_convs:
        return False
    return all(level_tap(space, m, lv) is not None for lv in space.levels)


def level_tap(space, m, level):
    """Index of the level's tap (last layer whose jump is the level's stride) if it meets the level."""
    taps = [i for i, a in enumerate(m["layers"]) if a.jump == level.stride]
    if not taps:
        return None
    a = m["layers"][taps[-1]]
    lo, hi = str(space.settings["anchor_rf"]).split(":")
    erf_min = Fraction(str(space.settings["anchor_erf"]))
    if a.rf < Fraction(lo) * level.anchor or (hi.strip() and a.rf > Fraction(hi) * level.anchor):
        return None
    if 4 * a.erf_var < (erf_min * level.anchor) ** 2:  # 2 sigma >= erf_min x anchor, exactly
        return None
    return taps[-1]


def depth_first(space):
    """Every candidate's choice indices in depth-first (pre-)order."""
    def rec(prefix):
        if len(prefix) >= space.depth_min:
            yield list(prefix)
        if len(prefix) < space.depth_max:
            for c in range(space.radices[len(prefix)]):
                yield from rec(prefix + [c])
    yield from rec([])


def naive_search(space):
    """[(arch_id, choice indices, metrics)] of every survivor, in depth-first order."""
    rows = []
    for idx in depth_first(space):
        m = evaluate_candidate(space, idx)
        if meets(space, m):
            rows.append((space.encode(idx), idx, m))
    return rows


def naive_count(space):
    return sum(1 for idx in itertools.chain(depth_first(space)) if meets(space, evaluate_candidate(space, idx)))
