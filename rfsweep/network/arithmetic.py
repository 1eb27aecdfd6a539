"""Per-axis receptive-field arithmetic in plain Python: the semantics everything else must match.

One axis (height or width) of one feature map is described by an :class:`Axis`: its size ``n``, the
``jump`` between neighbouring units in input pixels (effective stride), the receptive field ``rf``, the
``center`` of unit 0 in 0-indexed input pixels and the variance of the effective-RF distribution.
Everything is exact: jumps become fractions after transposed convolutions and upsampling, so all
quantities are :class:`fractions.Fraction`.

Notes
-----
Conventions (see the design notes), for a layer with kernel ``k``, stride ``s``, dilation ``d`` and
left/right padding ``pL``/``pR``, effective kernel ``k' = d(k-1)+1``:

* ``rf_out = rf_in + (k'-1)·jump_in``, ``jump_out = jump_in·s`` (Araujo et al., Distill 2019);
* ``eff_padding_out = eff_padding_in + pL·jump_in`` and ``center = -eff_padding + (rf-1)/2``;
* ``n_out = floor((n + pL + pR - k')/s) + 1`` (ceil with ``ceil_mode``, PyTorch's rule);
* effective RF (Luo et al. 2016, uniform weights): the input gradient of a unit is the distribution of
  ``sum_l jump_{l-1}·d_l·M_l`` with ``M_l`` uniform on ``{0..k_l-1}``, so
  ``erf_var = sum_l (jump_{l-1}·d_l)²·(k_l²-1)/12``.

Transposed convolutions and upsampling divide the jump by their stride. Their receptive field is the
largest support over output units, which is exact and an integer number of input units: a 4x4
stride-2 transposed conv reaches 2 input units per output unit, not 4/2 + 1.5. After them the units of a
map no longer all have the same support (a nearest x2 upsample makes units 2t and 2t+1 copies of unit t),
so the recurrence ``rf + (k'-1)·jump`` is no longer exact for the layers that follow: the axis then keeps
the hull of every phase of the (periodic) map in ``Axis.phases`` and rf is the largest hull, exactly.

Adaptive pooling (PyTorch's rule: unit ``i`` of ``o`` pools input units ``floor(i·n/o) .. ceil((i+1)·n/o)-1``)
uses the same machinery: its windows repeat every ``o/gcd(n, o)`` units, so the map is periodic with jump
``n/o`` input units, and rf is again the largest hull, exact. Space-to-depth by ``b`` is, per axis, a
``b``-tap stride-``b`` pool (a unit gathers ``b`` neighbours into its channels) and depth-to-space a nearest
upsample by ``b`` (unit ``v`` is one channel group of input unit ``floor(v/b)``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from math import floor, gcd, lcm

ZERO = Fraction(0)
ONE = Fraction(1)


@dataclass(frozen=True)
class Axis:
    """One axis of one feature map, referred to the network input.

    ``size`` is None when the input size is unknown. ``whole`` marks a map whose units see the whole
    input (after a global pool or a linear layer); rf, jump and center mean nothing there.

    ``phases`` is None while every unit's support is ``center + u·jump ± (rf-1)/2`` (conv/pool chains).
    After a transposed conv or an upsample it holds, for each phase ``u mod len(phases)``, the first and
    last input pixel a unit reaches relative to ``center + u·jump`` (None where a unit reaches nothing,
    e.g. the gaps of a 1x1 stride-2 transposed conv); rf is then the largest hull.
    """

    size: int | None
    jump: Fraction = ONE
    rf: Fraction = ONE
    center: Fraction = ZERO
    erf_var: Fraction = ZERO
    whole: bool = False
    phases: tuple[tuple[Fraction, Fraction] | None, ...] | None = None

    @property
    def eff_padding(self) -> Fraction:
        """Left padding referred to the input: ``(rf-1)/2 - center``."""
        return (self.rf - 1) / 2 - self.center

    def phase_hulls(self) -> tuple[tuple[Fraction, Fraction] | None, ...]:
        """Per-phase hull offsets relative to ``center + u·jump`` (one phase for a regular map)."""
        if self.phases is not None:
            return self.phases
        half = (self.rf - 1) / 2
        return ((-half, half),)

    def hull(self, u: int) -> tuple[Fraction, Fraction] | None:
        """First and last input pixel (padding included) unit ``u`` reaches; None if it reaches none."""
        phases = self.phase_hulls()
        offsets = phases[u % len(phases)]
        if offsets is None:
            return None
        base = self.center + u * self.jump
        return base + offsets[0], base + offsets[1]


def _resample(a: Axis, period: int, reads, center: Fraction, jump: Fraction):
    """rf and phases of a new map whose unit ``u`` reads the input units ``reads(u)``.

    ``period`` is a multiple of the new map's period; the result is reduced to the shortest period and
    to ``phases=None`` when every unit has the same hull, symmetric about its centre.
    """
    phases = []
    for u in range(period):
        ends = [h for h in (a.hull(i) for i in reads(u)) if h is not None]
        if not ends:
            phases.append(None)
            continue
        base = center + u * jump
        phases.append((min(h[0] for h in ends) - base, max(h[1] for h in ends) - base))
    return _reduce_phases(phases)


def _reduce_phases(phases: list) -> tuple[Fraction, tuple | None]:
    p = next(
        p
        for p in range(1, len(phases) + 1)
        if len(phases) % p == 0 and all(phases[i] == phases[i % p] for i in range(len(phases)))
    )
    phases = tuple(phases[:p])
    spans = [hi - lo + 1 for lo_hi in phases if lo_hi is not None for lo, hi in [lo_hi]]
    rf = max(spans) if spans else ZERO
    if p == 1 and phases[0] is not None and phases[0][0] == -phases[0][1]:
        return rf, None
    return rf, phases


def input_axis(size: int | None) -> Axis:
    """The network input: every pixel is a unit with rf 1, jump 1, centre at its own index."""
    return Axis(size=size)


def effective_kernel(kernel: int, dilation: int) -> int:
    """``k' = d(k-1)+1``: the extent of a dilated kernel."""
    return dilation * (kernel - 1) + 1


def tf_same_padding(n: int, k_eff: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (left, right) for input size ``n``; output size is ``ceil(n/s)``."""
    if n % stride == 0:
        total = max(k_eff - stride, 0)
    else:
        total = max(k_eff - n % stride, 0)
    return total // 2, total - total // 2


def same_padding(k_eff: int) -> tuple[int, int]:
    """Symmetric 'same' padding: total ``k'-1``, the odd pixel on the right; ``n_out = ceil(n/s)``."""
    total = k_eff - 1
    return total // 2, total - total // 2


def resolve_padding(padding, n: int | None, k_eff: int, stride: int) -> tuple[int, int]:
    """Padding (left, right) on one axis.

    ``padding`` is ``"valid"``, ``"same"``, ``"tf_same"`` or a pair of ints. ``tf_same`` needs ``n``;
    the caller checks that it is known.
    """
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return same_padding(k_eff)
    if padding == "tf_same":
        if n is None:
            raise ValueError("tf_same padding needs the input size")
        return tf_same_padding(n, k_eff, stride)
    left, right = padding
    return int(left), int(right)


def conv_out_size(n: int, k_eff: int, stride: int, pad_left: int, pad_right: int, ceil_mode: bool = False) -> int:
    """Output size of a conv or pool; a value below 1 means the layer does not fit.

    With ``ceil_mode`` PyTorch's rule applies: round up, but the last window must start inside the
    input or its left padding.
    """
    span = n + pad_left + pad_right - k_eff
    if not ceil_mode:
        return span // stride + 1 if span >= 0 else 0
    out = -(-span // stride) + 1  # ceil(span/s) + 1: the last window may overhang by less than a stride
    while out > 0 and (out - 1) * stride >= n + pad_left:
        out -= 1
    return max(out, 0)


def conv_axis(
    a: Axis, kernel: int, stride: int, dilation: int, pad_left: int, pad_right: int, ceil_mode: bool = False
) -> Axis:
    """A convolution or pooling layer (they share the update)."""
    k_eff = effective_kernel(kernel, dilation)
    size = None if a.size is None else conv_out_size(a.size, k_eff, stride, pad_left, pad_right, ceil_mode)
    center = a.center + (Fraction(k_eff - 1, 2) - pad_left) * a.jump
    rf, phases = a.rf + (k_eff - 1) * a.jump, None
    if a.phases is not None:
        rf, phases = _resample(
            a,
            len(a.phases),
            lambda u: [u * stride - pad_left + m * dilation for m in range(kernel)],
            center,
            a.jump * stride,
        )
    return Axis(
        size=size,
        jump=a.jump * stride,
        rf=rf,
        center=center,
        erf_var=a.erf_var + (a.jump * dilation) ** 2 * Fraction(kernel * kernel - 1, 12),
        phases=phases,
    )


def deconv_axis(
    a: Axis, kernel: int, stride: int, dilation: int, pad_left: int, pad_right: int, output_padding: int = 0
) -> Axis:
    """A transposed convolution (PyTorch ConvTranspose semantics: padding crops the output)."""
    k_eff = effective_kernel(kernel, dilation)
    size = None
    if a.size is not None:
        size = (a.size - 1) * stride - pad_left - pad_right + k_eff + output_padding
    center = a.center + (pad_left - Fraction(k_eff - 1, 2)) * a.jump / stride

    def reads(u):  # output u takes input i through tap m when i·s - pad_left + m·d == u
        return [
            (u + pad_left - m * dilation) // stride
            for m in range(kernel)
            if (u + pad_left - m * dilation) % stride == 0
        ]

    rf, phases = _resample(a, len(a.phase_hulls()) * stride, reads, center, a.jump / stride)
    return Axis(
        size=size,
        jump=a.jump / stride,
        rf=rf,
        center=center,
        erf_var=a.erf_var + (a.jump * dilation / stride) ** 2 * Fraction(kernel * kernel - 1, 12),
        phases=phases,
    )


def upsample_axis(a: Axis, scale: int, mode: str = "nearest") -> Axis:
    """Upsampling by an integer factor (PyTorch, align_corners=False).

    Output unit ``j`` samples input position ``(j+0.5)/s - 0.5``: nearest takes one input unit, bilinear
    the two around it with weights ``1-f`` and ``f``; its variance ``f(1-f)`` is averaged over the ``s``
    phases.
    """
    size = None if a.size is None else a.size * scale
    center = a.center + (Fraction(1, 2 * scale) - Fraction(1, 2)) * a.jump
    var = a.erf_var
    if mode == "bilinear" and scale > 1:
        fracs = [(Fraction(2 * j + 1, 2 * scale) - Fraction(1, 2)) % 1 for j in range(scale)]
        var = a.erf_var + a.jump**2 * sum(f * (1 - f) for f in fracs) / scale

    def reads(u):
        if mode == "nearest":  # PyTorch 'nearest': floor(u/s)
            return [u // scale]
        src = Fraction(2 * u + 1, 2 * scale) - Fraction(1, 2)
        i0 = floor(src)
        return [i0, i0 + 1] if src != i0 else [i0]

    rf, phases = _resample(a, len(a.phase_hulls()) * scale, reads, center, a.jump / scale)
    return Axis(size=size, jump=a.jump / scale, rf=rf, center=center, erf_var=var, phases=phases)


def adaptive_window(n: int, out: int, i: int) -> tuple[int, int]:
    """PyTorch's adaptive pooling window ``(start, stop)`` (stop exclusive) of unit ``i`` of ``out`` over ``n``:
    input units ``floor(i·n/out) .. ceil((i+1)·n/out) - 1``."""
    return (i * n) // out, -(-(i + 1) * n // out)


def adaptive_axis(a: Axis, out: int) -> Axis:
    """Adaptive average or max pooling to ``out`` units (the input size ``a.size`` must be known).

    The windows repeat every ``p = out/gcd(n, out)`` units, shifted by ``n/gcd(n, out)`` input units, so the
    jump is ``jump_in·n/out`` and unit ``u`` is referred to ``center + u·jump`` with
    ``center = center_in + (n/out - 1)/2·jump_in`` (the centre of an ideal window ``n/out`` wide); rf is
    the largest hull over the ``p`` phases, exact. When ``out`` divides ``n`` this is the pool with kernel
    and stride ``n/out``.

    The effective-RF variance adds the phase-averaged window (uniform weights, as for transposed convs):
    ``jump_in²·mean_u((w_u²-1)/12 + m_u²)`` with ``w_u`` the width of window ``u`` and ``m_u`` the offset of
    its middle from the unit's reference point; the offsets average to 0 over a period.
    """
    n = a.size
    if n is None:
        raise ValueError("adaptive pooling needs the input size")
    ratio = Fraction(n, out)
    center = a.center + (ratio - 1) / 2 * a.jump
    jump = a.jump * ratio
    period = out // gcd(n, out)
    rf, phases = _resample(a, period * len(a.phase_hulls()), lambda u: range(*adaptive_window(n, out, u)), center, jump)
    spread = ZERO
    for u in range(period):
        start, stop = adaptive_window(n, out, u)
        middle = Fraction(start + stop - 1, 2) - (u * ratio + (ratio - 1) / 2)
        spread += Fraction((stop - start) ** 2 - 1, 12) + middle * middle
    return Axis(
        size=out, jump=jump, rf=rf, center=center, erf_var=a.erf_var + a.jump**2 * spread / period, phases=phases
    )


def space_to_depth_axis(a: Axis, block: int) -> Axis:
    """Space-to-depth (pixel unshuffle) by ``block``: on one axis, a ``block``-tap pool with stride ``block``.

    Output unit ``u`` holds input units ``u·b .. u·b + b - 1`` in its channels; the size must divide by ``b``.
    """
    return conv_axis(a, block, block, 1, 0, 0)


def depth_to_space_axis(a: Axis, block: int) -> Axis:
    """Depth-to-space (pixel shuffle) by ``block``: unit ``v`` is a channel group of input unit ``floor(v/b)``,
    so on one axis it is a nearest upsample by ``block``."""
    return upsample_axis(a, block, "nearest")


def whole_axis(a: Axis) -> Axis:
    """After a global pool or a linear layer every unit sees the whole input."""
    return Axis(size=1, jump=a.jump, rf=a.rf, center=a.center, erf_var=a.erf_var, whole=True, phases=a.phases)


def merge_axes(axes: list[Axis], weights: list[Fraction]) -> Axis:
    """Merge aligned branches (add, concat): the caller has checked equal size, jump and centre.

    The merged rf is the largest (the largest union of the branches' hulls, phase by phase, after a
    transposed conv or an upsample); the effective-RF distribution is the mixture of the branches'
    distributions with ``weights`` (equal for add, channel counts for concat). All branches share the
    same centre, so the mixture's variance is the weighted mean of the variances.
    """
    total = sum(weights)
    var = sum(w * a.erf_var for w, a in zip(weights, axes)) / total
    first = axes[0]
    if all(a.phases is None for a in axes):
        return replace(first, rf=max(a.rf for a in axes), erf_var=var)
    period = lcm(*(len(a.phase_hulls()) for a in axes))
    phases = []
    for u in range(period):
        hulls = [h for h in (a.phase_hulls()[u % len(a.phase_hulls())] for a in axes) if h is not None]
        phases.append((min(h[0] for h in hulls), max(h[1] for h in hulls)) if hulls else None)
    rf, phases = _reduce_phases(phases)
    return replace(first, rf=rf, erf_var=var, phases=phases)
