"""Slow, obviously-correct references for one axis of a layer chain, written without rfsweep.arithmetic.

A chain is a list of dicts, one per layer, on ONE axis (axes are separable):

    {"op": "conv" | "maxpool" | "avgpool", "kernel": k, "stride": s, "dilation": d,
     "padding": p | (left, right) | "valid" | "same" | "tf_same", "ceil_mode": False}
    {"op": "deconv", "kernel": k, "stride": s, "dilation": d, "padding": p | (left, right),
     "output_padding": 0}
    {"op": "upsample", "scale": s, "mode": "nearest" | "bilinear"}

Missing fields take the usual defaults (stride 1, dilation 1, padding 0).

Every map is seen as an infinite row of units indexed by any integer: units 0..n-1 are real, the others are
the virtual extension (padding). The same index formulas are used inside and outside, never clamped, so the
"pixels" a unit reaches may be negative or >= n (padded positions count, as in the usual RF definition).

* :func:`impulse_support` composes index sets layer by layer: which input pixels reach each output unit.
* :func:`impulse_gradient` pushes a unit impulse back from the centre-most output unit through the same
  network with every weight 1 (Luo et al.'s uniform-weight linear model) and returns the input-gradient
  weights, normalised to sum 1.
"""

from __future__ import annotations

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
            for i, weight in reads(layers[level - 1], ns[level - 1], j):
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
