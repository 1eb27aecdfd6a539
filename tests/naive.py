"""Slow, obviously-correct references for one axis of a layer chain, written without rfsweep.arithmetic.

A chain is a list of dicts, one per layer, on ONE axis (axes are separable):

    {"op": "conv" | "maxpool" | "avgpool", "kernel": k, "stride": s, "dilation": d,
     "padding": p | (left, right) | "valid" | "same" | "tf_same", "ceil_mode": False}
    {"op": "deconv", "kernel": k, "stride": s, "dilation": d, "padding": p | (left, right),
     "output_padding": 0}
    {"op": "upsample", "scale": s, "mode": "nearest" | "bilinear"}
    {"op": "adaptive_avgpool" | "adaptive_maxpool", "output": o}
    {"op": "space_to_depth" | "depth_to_space", "block": b}

Missing fields take the usual defaults (stride 1, dilation 1, padding 0).

Every map is seen as an infinite row of units indexed by any integer: units 0..n-1 are real, the others are
the virtual extension (padding). The same index formulas are used inside and outside, never clamped, so the
"pixels" a unit reaches may be negative or >= n (padded positions count, as in the usual RF definition).

* :func:`impulse_support` composes index sets layer by layer: which input pixels reach each output unit.
* :func:`impulse_gradient` pushes a unit impulse back from the centre-most output unit through the same
  network with every weight 1 (Luo et al.'s uniform-weight linear model) and returns the input-gradient
  weights, normalised to sum 1.

The second part is the sweep's reference: :func:`naive_search` enumerates every candidate of a search
space by plain recursion, in depth-first order, and evaluates each one layer by layer with
the foundation arithmetic (``rfsweep.arithmetic``, itself checked against the first part), one
candidate at a time, in plain Python.
"""

from __future__ import annotations

import math
from fractions import Fraction
from math import floor


def layer_fields(layer: dict) -> tuple[int, int, int]:
    """(kernel, stride, dilation) with defaults."""
    return layer.get("kernel", 1), layer.get("stride", 1), layer.get("dilation", 1)


def padding_of(layer: dict, n: int) -> tuple[int, int]:
    """(left, right) padding of a conv/pool layer on an input of size n.

    "same": total k'-1, the odd one on the right. "tf_same": TensorFlow's own formulation, the output is
    ceil(n/s) and the padding is whatever that output needs: total = max((out-1)*s + k' - n, 0),
    left = total // 2.
    """
    k, s, d = layer_fields(layer)
    k_eff = d * (k - 1) + 1
    p = layer.get("padding", 0)
    if p == "valid":
        return 0, 0
    if p == "same":
        total = k_eff - 1
        return total // 2, total - total // 2
    if p == "tf_same":
        out = -(-n // s)
        total = max((out - 1) * s + k_eff - n, 0)
        return total // 2, total - total // 2
    if isinstance(p, int):
        return p, p
    return p[0], p[1]


def deconv_padding(layer: dict) -> tuple[int, int]:
    """(left, right) cropping of a transposed conv (PyTorch's padding)."""
    p = layer.get("padding", 0)
    return (p, p) if isinstance(p, int) else (p[0], p[1])


def output_units(layer: dict, n: int) -> int:
    """How many real units a layer produces from n real input units, by walking its windows."""
    op = layer["op"]
    if op == "upsample":
        return n * layer["scale"]
    if op.startswith("adaptive_"):
        return layer["output"]
    if op == "space_to_depth":  # PyTorch's pixel_unshuffle and ONNX SpaceToDepth need n divisible by b
        return n // layer["block"] if n % layer["block"] == 0 else 0
    if op == "depth_to_space":
        return n * layer["block"]
    k, s, d = layer_fields(layer)
    k_eff = d * (k - 1) + 1
    if op == "deconv":
        # Uncropped output: input i, tap m writes position i*s + m*d. PyTorch crops `left` positions on the
        # left and `right` on the right, then output_padding adds positions on the right.
        left, right = deconv_padding(layer)
        last = max(i * s + m * d for i in range(n) for m in range(k))
        return last + 1 - left - right + layer.get("output_padding", 0)
    left, right = padding_of(layer, n)
    padded = left + n + right  # padded positions 0..padded-1 (position x is input pixel x - left)
    # Window j covers padded positions j*s .. j*s + k' - 1. Floor mode: it must end inside the padded
    # input. Ceil mode (PyTorch): it may run past the end by less than a stride, but it must start inside
    # the input or its left padding.
    allowed_overhang = s - 1 if layer.get("ceil_mode", False) else 0
    count = 0
    while True:
        start = count * s
        end = start + k_eff - 1
        if end - (padded - 1) > allowed_overhang:
            break
        if layer.get("ceil_mode", False) and start - left >= n:
            break
        count += 1
    return count


def sizes(layers: list[dict], n: int) -> list[int]:
    """Real size of every map: [input, after layer 1, ...]."""
    out = [n]
    for layer in layers:
        out.append(output_units(layer, out[-1]) if out[-1] > 0 else 0)
    return out


def reads(layer: dict, n_in: int, j: int) -> list[tuple[int, Fraction]]:
    """(input unit, weight) pairs unit j of this layer reads; weights are the all-ones linear model's.

    n_in is the real size of the layer's input (only tf_same padding depends on it).
    """
    op = layer["op"]
    out = []
    if op in ("conv", "maxpool", "avgpool"):
        k, s, d = layer_fields(layer)
        left, _ = padding_of(layer, n_in)
        for m in range(k):
            out.append((j * s - left + m * d, Fraction(1)))
    elif op == "deconv":
        k, s, d = layer_fields(layer)
        left, _ = deconv_padding(layer)
        # input i reaches output j through tap m when i*s - left + m*d == j
        for m in range(k):
            t = j + left - m * d
            if t % s == 0:
                out.append((t // s, Fraction(1)))
    elif op == "upsample":
        s = layer["scale"]
        if layer.get("mode", "nearest") == "nearest":
            out.append((floor(Fraction(j, s)), Fraction(1)))
        else:
            src = Fraction(2 * j + 1, 2 * s) - Fraction(1, 2)
            i0 = floor(src)
            f = src - i0
            out.append((i0, 1 - f))
            if f > 0:  # a zero weight reaches nothing
                out.append((i0 + 1, f))
    elif op.startswith("adaptive_"):
        # PyTorch's adaptive pooling: unit j pools units floor(j·n/o) .. ceil((j+1)·n/o) - 1, every weight 1
        o = layer["output"]
        first, last = floor(Fraction(j * n_in, o)), math.ceil(Fraction((j + 1) * n_in, o)) - 1
        out.extend((i, Fraction(1)) for i in range(first, last + 1))
    elif op == "space_to_depth":
        # unit j stacks, in its b·b channels, the b·b input units (j·b + r, j'·b + r'): on this axis j·b + r
        b = layer["block"]
        out.extend((j * b + r, Fraction(1)) for r in range(b))
    elif op == "depth_to_space":
        # unit j = t·b + r is channel group r of input unit t
        out.append((floor(Fraction(j, layer["block"])), Fraction(1)))
    else:
        raise ValueError(f"naive model: unknown op {op!r}")
    return out


def impulse_support(layers: list[dict], n: int, units=None) -> dict[int, set[int]]:
    """For each output unit (default: the real ones, 0..n_out-1), the set of input pixels that reach it.

    ``units`` may list other (virtual) unit indices of the last map.
    """
    ns = sizes(layers, n)
    # support[l][j]: pixels reaching unit j of map l (map 0 is the input), filled on demand
    memo: list[dict[int, set[int]]] = [dict() for _ in range(len(layers) + 1)]

    def support(level: int, j: int) -> set[int]:
        if level == 0:
            return {j}
        if j not in memo[level]:
            pixels: set[int] = set()
            for i, _weight in reads(layers[level - 1], ns[level - 1], j):
                pixels |= support(level - 1, i)
            memo[level][j] = pixels
        return memo[level][j]

    if units is None:
        units = range(ns[-1])
    return {j: support(len(layers), j) for j in units}


def impulse_gradient(layers: list[dict], n: int, unit: int | None = None) -> dict[int, Fraction]:
    """Input-gradient weights of one output unit (default: the centre-most real one, (n_out-1)//2).

    Every layer is linear with all weights 1 (bilinear upsampling keeps its interpolation weights); the
    gradient is pushed backwards layer by layer and normalised to sum 1 at the end.
    """
    ns = sizes(layers, n)
    if unit is None:
        unit = (ns[-1] - 1) // 2
    grad: dict[int, Fraction] = {unit: Fraction(1)}
    for level in range(len(layers), 0, -1):
        below: dict[int, Fraction] = {}
        for j, g in grad.items():
            for i, weight in reads(layers[level - 1], ns[level - 1], j):
                below[i] = below.get(i, Fraction(0)) + g * weight
        grad = below
    total = sum(grad.values())
    return {i: g / total for i, g in sorted(grad.items())}


def moments(weights: dict[int, Fraction]) -> tuple[Fraction, Fraction]:
    """Exact mean and variance of a distribution over pixel positions."""
    mean = sum(i * w for i, w in weights.items())
    var = sum((i - mean) ** 2 * w for i, w in weights.items())
    return mean, var


def hull(pixels: set[int]) -> tuple[int, int]:
    """(first, last) pixel of a support."""
    return min(pixels), max(pixels)


# ------------------------------------------------------------------ the sweep reference


def evaluate_candidate(space, idx):
    """Metrics of one candidate as the analyzer computes them, or None if some layer does not fit."""
    from rfsweep import arithmetic as ar
    from rfsweep.analyze import sees_whole_input

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
    return {
        "layers": per_layer,
        "spec": layers,
        "rf": int(a.rf),
        "jump": int(a.jump),
        "eff_padding": int(a.eff_padding),
        "center": float(a.center),
        "out_size": a.size,
        "params": params,
        "macs": macs,
        "erf_sigma": math.sqrt(a.erf_var),
        "unproductive": unproductive,
    }


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
        if not is_candidate(space, idx):
            continue
        m = evaluate_candidate(space, idx)
        if meets(space, m):
            rows.append((space.encode(idx), idx, m))
    return rows


def naive_count(space):
    return sum(
        1 for idx in depth_first(space) if is_candidate(space, idx) and meets(space, evaluate_candidate(space, idx))
    )


def is_candidate(space, idx):
    """With a head (positions index -1): the last layer is a head choice, the others body choices."""
    body = [{c for c, r in enumerate(rs) if r & 1} for rs in space.roles]
    head = [{c for c, r in enumerate(rs) if r & 2} for rs in space.roles]
    return all(c in body[p] for p, c in enumerate(idx[:-1])) and idx[-1] in head[len(idx) - 1]
