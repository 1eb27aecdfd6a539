"""Exact effective receptive fields: the whole input-gradient distribution, not just its sigma.

Model (Luo et al. 2016, uniform weights): every conv/pool layer averages its ``k`` taps with equal
weights, so the input gradient of one output unit, normalised to mass 1, is per axis the distribution of
``sum_l jump_{l-1}·d_l·(M_l - (k_l-1)/2)`` with ``M_l`` uniform on ``{0..k_l-1}``: a convolution of
dilated box filters, one per layer, the box of layer ``l`` having ``k_l`` taps spaced ``jump_{l-1}·d_l``
input pixels apart. The 2-D map is the outer product of the two axes. Max pooling is modelled like
average pooling (it shares the RF update); 1x1 layers, BN and activations change nothing; padding only
matters for border units, which this model does not describe (a unit whose RF lies inside the input).

Merges are mixtures of the branches' distributions, aligned on the centre they share: ``add`` weighs its
branches equally, ``concat`` by channel count (the same weights as :func:`rfsweep.network.arithmetic.merge_axes`).

Fractional jumps (after a transposed conv or upsampling) put taps between input pixels. The distribution
then lives on a grid of step ``1/L`` input pixels, ``L`` the least common multiple of the denominators
that occur (the tap offsets of every layer on the path); :func:`erf_summary` reports that step. Such a
layer contributes its phase-averaged kernel: a transposed conv all its ``k`` taps with equal weight,
bilinear upsampling the two-tap interpolation kernel averaged over the ``s`` output phases, nearest
upsampling nothing. That is the model :mod:`rfsweep.network.arithmetic` uses for ``erf_var``; for nets with
fractional jumps it describes the average unit, not any single one.

Positions are relative to the unit's centre (``center + i·jump`` in :mod:`rfsweep.network.arithmetic`), in input
pixels. Adaptive pooling contributes its windows averaged over the phases of a period (the same model as
``erf_var``), space-to-depth by ``b`` a box of ``b`` taps, depth-to-space nothing (a nearest upsample), a
gate the gated map only. For a conv/pool chain the grid step is 1 and the support is exactly the RF: ``rf``
points from ``-(rf-1)/2`` to ``(rf-1)/2``. The standard deviation equals ``sqrt(erf_var)`` of the arithmetic up to
float rounding; extents come from the distribution itself (strided stacks are far from Gaussian).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from rfsweep.core.errors import SpecError, field_error
from rfsweep.network import arithmetic as ar
from rfsweep.network.analyze import LayerResult, evaluate
from rfsweep.network.spec import ADAPTIVE_OPS, POOL_OPS, Network, is_merge

MASSES = (0.5, 0.9, 0.95)
MAX_POINTS = 1 << 25  # a grid larger than this (per axis) is refused rather than filling the memory
_TOL = 1e-9  # relative tolerance on the mass left outside an extent (probabilities carry float rounding)


def _frac_gcd(values: Iterable[Fraction]) -> Fraction:
    """Greatest common divisor of fractions: the coarsest grid step that holds them all (0 if all 0)."""
    vals = [Fraction(v) for v in values if v != 0]
    if not vals:
        return Fraction(0)
    den = 1
    for v in vals:
        den = den * v.denominator // math.gcd(den, v.denominator)
    g = 0
    for v in vals:
        g = math.gcd(g, abs(v.numerator * (den // v.denominator)))
    return Fraction(g, den)


@dataclass(frozen=True)
class AxisDist:
    """A probability vector on the grid ``lo + i·step`` (input pixels, relative to the unit's centre)."""

    step: Fraction
    lo: Fraction
    probs: np.ndarray

    @property
    def hi(self) -> Fraction:
        return self.lo + (len(self.probs) - 1) * self.step

    def positions(self) -> np.ndarray:
        """Grid positions as float64 (exact for every grid that fits in the memory)."""
        return float(self.lo) + np.arange(len(self.probs), dtype=np.float64) * float(self.step)

    def refine(self, step: Fraction) -> AxisDist:
        """The same distribution on a finer grid (``self.step`` must be a multiple of ``step``)."""
        if step == self.step:
            return self
        m = self.step / step
        if m.denominator != 1:
            raise ValueError(f"grid step {step} does not divide {self.step}")
        m = int(m)
        n = (len(self.probs) - 1) * m + 1
        _check_size(n)
        out = np.zeros(n)
        out[::m] = self.probs
        return AxisDist(step, self.lo, out)

    def placed(self, step: Fraction, lo: Fraction, n: int) -> np.ndarray:
        """Probabilities on the grid ``lo + i·step``, ``i < n``, which must contain this grid."""
        d = self.refine(step)
        start = (d.lo - lo) / step
        assert start.denominator == 1 and start >= 0
        out = np.zeros(n)
        out[int(start) : int(start) + len(d.probs)] = d.probs
        return out


def _check_size(n: int) -> None:
    if n > MAX_POINTS:
        raise SpecError(
            f"erf: the exact distribution needs {n:,} grid points per axis (more than {MAX_POINTS:,}); "
            "fractional jumps make the grid fine and large dilations make it long"
        )


def delta() -> AxisDist:
    """A unit of the input: all its mass at its own centre."""
    return AxisDist(Fraction(1), Fraction(0), np.ones(1))


def convolve_taps(dist: AxisDist, offsets: list[Fraction], weights: list[float]) -> AxisDist:
    """Distribution of ``X + T`` where ``T`` takes value ``offsets[t]`` with probability ``weights[t]``.

    Sparse: one shifted add per tap (a box filter of k taps costs k passes, whatever its dilation).
    """
    total = float(sum(weights))
    offsets = [Fraction(o) for o in offsets]
    base = min(offsets)
    step = _frac_gcd([dist.step] + [o - base for o in offsets])
    d = dist.refine(step)
    span = (max(offsets) - base) / step
    n = len(d.probs) + int(span)
    _check_size(n)
    out = np.zeros(n)
    for o, w in zip(offsets, weights):
        if w == 0:
            continue
        i = int((o - base) / step)
        out[i : i + len(d.probs)] += (w / total) * d.probs
    return AxisDist(step, d.lo + base, out)


def box(dist: AxisDist, kernel: int, spacing: Fraction) -> AxisDist:
    """Convolve with a centred box of ``kernel`` equal taps spaced ``spacing`` apart."""
    if kernel == 1:
        return dist
    half = Fraction(kernel - 1, 2)
    return convolve_taps(dist, [(m - half) * spacing for m in range(kernel)], [1.0] * kernel)


def mixture(dists: list[AxisDist], weights: list[float]) -> AxisDist:
    """Weighted mixture of distributions that share the centre (weights need not sum to 1)."""
    lo = min(d.lo for d in dists)
    hi = max(d.hi for d in dists)
    step = _frac_gcd([d.step for d in dists] + [d.lo - lo for d in dists])
    n = int((hi - lo) / step) + 1
    _check_size(n)
    total = float(sum(weights))
    out = np.zeros(n)
    for d, w in zip(dists, weights):
        out += (float(w) / total) * d.placed(step, lo, n)
    return AxisDist(step, lo, out)


def _bilinear(dist: AxisDist, scale: int, jump: Fraction) -> AxisDist:
    """Bilinear upsampling (align_corners=False), phase-averaged: phase ``j`` samples input position
    ``(j+0.5)/s - 0.5``, i.e. weight ``1-f`` at ``-f·jump`` and ``f`` at ``(1-f)·jump`` from the output unit."""
    offsets, weights = [], []
    for j in range(scale):
        f = (Fraction(2 * j + 1, 2 * scale) - Fraction(1, 2)) % 1
        offsets += [-f * jump, (1 - f) * jump]
        weights += [float(1 - f) / scale, float(f) / scale]
    return convolve_taps(dist, offsets, weights)


def _layer_dist(
    r: LayerResult,
    in_axes: tuple[ar.Axis, ar.Axis],
    inputs: list[tuple[AxisDist, AxisDist]],
    weights: list[float] | None,
    axis: int,
) -> AxisDist:
    layer = r.layer
    src = inputs[0][axis]
    jump = in_axes[axis].jump
    if is_merge(layer):
        return mixture([d[axis] for d in inputs], weights)
    k, s, dil = layer.kernel[axis], layer.stride[axis], layer.dilation[axis]
    if layer.op == "conv" or layer.op in POOL_OPS:
        return box(src, k, jump * dil)
    if layer.op == "deconv":
        return box(src, k, jump * dil / s)
    if layer.op == "upsample":
        if layer.mode == "bilinear" and layer.scale[axis] > 1:
            return _bilinear(src, layer.scale[axis], jump)
        return src
    if layer.op in ADAPTIVE_OPS:
        return _adaptive(src, in_axes[axis].size, layer.output[axis], jump)
    if layer.op == "space_to_depth":
        return box(src, layer.block, jump)
    return src  # pointwise, slice, gate (the gated map), depth_to_space (a nearest upsample)


def _adaptive(dist: AxisDist, n: int, out: int, jump: Fraction) -> AxisDist:
    """Adaptive pooling, phase-averaged: window ``u`` (``w_u`` taps) weighs each tap ``1/w_u``, placed
    relative to the unit's reference point ``(u·n/out + (n/out-1)/2)·jump``; the ``out/gcd(n, out)``
    phases of a period weigh equally."""
    ratio = Fraction(n, out)
    period = out // math.gcd(n, out)
    offsets, weights = [], []
    for u in range(period):
        start, stop = ar.adaptive_window(n, out, u)
        ref = u * ratio + (ratio - 1) / 2
        offsets += [(t - ref) * jump for t in range(start, stop)]
        weights += [1.0 / (period * (stop - start))] * (stop - start)
    return convolve_taps(dist, offsets, weights)


def _ancestors(net: Network, names: Iterable[str]) -> set[str]:
    by_name = {layer.name: layer for layer in net.layers}
    todo, seen = list(names), set()
    while todo:
        n = todo.pop()
        if n in seen or n == "input":
            continue
        seen.add(n)
        todo.extend(by_name[n].inputs)
    return seen


def _check_layer(net: Network, results: dict[str, LayerResult], name: str, fieldname: str) -> LayerResult:
    if name not in results:
        raise field_error(fieldname, name, "no layer of that name in " + repr(net.name))
    r = results[name]
    if r.axes[0].whole:
        raise field_error(
            fieldname,
            name,
            "a global unit (after a global pool or a linear layer) sees the whole "
            "input; its ERF is not a local distribution",
            layer=name,
        )
    return r


def distributions(
    net: Network, names: Iterable[str], fieldname: str = "layer", results: list[LayerResult] | None = None
) -> dict[str, tuple[AxisDist, AxisDist]]:
    """Exact (h, w) distributions of several layers in one walk of the network.

    ``results`` may be passed when the caller already ran :func:`rfsweep.network.analyze.evaluate` on ``net``.
    """
    names = list(names)
    results = evaluate(net) if results is None else results
    by_name = {r.layer.name: r for r in results}
    for name in names:
        _check_layer(net, by_name, name, fieldname)
    needed = _ancestors(net, names)
    state: dict[str, tuple[AxisDist, AxisDist]] = {"input": (delta(), delta())}
    size = net.input_size or (None, None)  # adaptive pooling right after the input needs its size
    axes_of: dict[str, tuple[ar.Axis, ar.Axis]] = {"input": (ar.input_axis(size[0]), ar.input_axis(size[1]))}
    chans: dict[str, int] = {"input": net.in_channels}
    for r in results:
        name = r.layer.name
        axes_of[name] = r.axes
        chans[name] = r.channels
        if name not in needed:
            continue
        if r.axes[0].whole:  # cannot be an ancestor of a spatial tap
            continue
        inputs = [state[s] for s in r.layer.inputs]
        weights = None
        if is_merge(r.layer) and r.layer.op != "concat":  # add, a pointwise function of several maps
            weights = [1.0] * len(inputs)
        elif r.layer.op == "concat":
            weights = [float(chans[s]) for s in r.layer.inputs]
        in_axes = axes_of[r.layer.inputs[0]]
        state[name] = tuple(_layer_dist(r, in_axes, inputs, weights, axis) for axis in range(2))
    return {name: state[name] for name in names}


def _resolve(net_or_spec: Any, input_size: Any) -> Network:
    from rfsweep.network.spec import parse_input_size
    from rfsweep.network.zoo import resolve

    return resolve(net_or_spec, parse_input_size(input_size))


def erf_distribution(
    net_or_spec: Any, layer_name: str, input_size: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact ERF of one unit of ``layer_name``, per axis.

    Parameters
    ----------
    net_or_spec : Network, spec dict, spec file path or zoo model name
    layer_name : str
        A spatial layer (global pools, linear layers and what follows them are refused).
    input_size : int, (h, w) or 'HxW', optional
        Only needed where the spec needs it (``tf_same`` padding); the distribution itself does not
        depend on the input size.

    Returns
    -------
    positions_h, probs_h, positions_w, probs_w : numpy.ndarray (float64)
        Positions in input pixels relative to the unit's centre (ascending, evenly spaced) and their
        probabilities (summing to 1).
    """
    net = _resolve(net_or_spec, input_size)
    dh, dw = distributions(net, [layer_name])[layer_name]
    return dh.positions(), dh.probs.copy(), dw.positions(), dw.probs.copy()


def erf_extent(positions: np.ndarray, probs: np.ndarray, mass: float, step: float | None = None) -> float:
    """Full width of the smallest centred window holding at least ``mass`` of the distribution.

    The window is ``[-h, h]`` around the unit's centre (position 0), ``h`` the smallest ``|position|``
    such that the probability of ``|X| <= h`` is at least ``mass``. The width is reported as
    ``2·h + step`` (``step`` the grid step, by default taken from ``positions``): the number of pixels
    the window covers when the grid step is one pixel, counted the way rf counts them, so the extent at
    mass 1 of a conv/pool chain equals its rf.
    """
    positions = np.asarray(positions, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if not 0 < mass <= 1:
        raise field_error("mass", mass, "must be in (0, 1]")
    if step is None:
        step = float(positions[1] - positions[0]) if len(positions) > 1 else 1.0
    dist = np.abs(positions)
    order = np.argsort(dist, kind="stable")
    d_sorted, p_sorted = dist[order], probs[order]
    # mass outside the window |x| <= d_sorted[j]: summed from the outer end, so tiny tails stay exact
    outside = np.r_[np.cumsum(p_sorted[::-1])[::-1][1:], 0.0]
    # a window includes every point with |x| <= h: use the last point of each tie in |x|
    last_of_tie = np.r_[d_sorted[1:] - d_sorted[:-1] > 1e-12 * max(1.0, d_sorted[-1]), True]
    d_u, out_u = d_sorted[last_of_tie], outside[last_of_tie]
    allowed = (1.0 - mass) * p_sorted.sum() * (1 + _TOL)
    i = int(np.flatnonzero(out_u <= allowed)[0])
    return 2 * float(d_u[i]) + step


def moments(dist: AxisDist) -> tuple[float, float, float]:
    """(mean, standard deviation, excess kurtosis) of a distribution (kurtosis 0 for a point mass)."""
    x, p = dist.positions(), dist.probs / dist.probs.sum()
    mean = float(np.dot(x, p))
    c = x - mean
    var = float(np.dot(c * c, p))
    if var <= 0:
        return mean, 0.0, 0.0
    return mean, math.sqrt(var), float(np.dot(c**4, p)) / var**2 - 3.0


def summarize(dh: AxisDist, dw: AxisDist, masses: Iterable[float] = MASSES) -> dict:
    """Sigma, extents, excess kurtosis and grid step of an (h, w) pair of distributions."""
    mh, mw = moments(dh), moments(dw)
    extent = {}
    for m in masses:
        extent[mass_key(m)] = [erf_extent(d.positions(), d.probs, m, float(d.step)) for d in (dh, dw)]
    return {
        "erf_sigma": [mh[1], mw[1]],
        "erf_extent": extent,
        "excess_kurtosis": [mh[2], mw[2]],
        "grid_step": [float(dh.step), float(dw.step)],
        "support": [[float(d.lo), float(d.hi)] for d in (dh, dw)],
    }


def mass_key(m: float) -> str:
    """0.5 -> '50', 0.95 -> '95', 0.999 -> '99.9'."""
    return format(round(m * 100, 6), "g")


def erf_summary(net_or_spec: Any, layer_name: str, input_size: Any = None, masses: Iterable[float] = MASSES) -> dict:
    """ERF figures of one unit of ``layer_name``.

    Returns a dict with ``erf_sigma`` ([h, w], equal to ``sqrt(erf_var)`` of the arithmetic),
    ``erf_extent`` ({'50': [h, w], '90': [h, w], '95': [h, w]}: full widths of the centred windows holding
    that share of the mass, see :func:`erf_extent`), ``excess_kurtosis`` ([h, w]; 0 for a Gaussian, -1.2
    for a uniform box), ``grid_step`` ([h, w], 1 unless a fractional jump occurs) and ``support``
    ([[lo, hi], [lo, hi]] relative to the centre).
    """
    net = _resolve(net_or_spec, input_size)
    dh, dw = distributions(net, [layer_name])[layer_name]
    out = {"layer": layer_name}
    out.update(summarize(dh, dw, masses))
    return out


def heatmap(dh: AxisDist, dw: AxisDist) -> np.ndarray:
    """The 2-D ERF (rows h, columns w): the outer product of the axes."""
    return np.outer(dh.probs, dw.probs)


__all__ = [
    "erf_distribution",
    "erf_extent",
    "erf_summary",
    "distributions",
    "summarize",
    "moments",
    "heatmap",
    "AxisDist",
    "MASSES",
]
