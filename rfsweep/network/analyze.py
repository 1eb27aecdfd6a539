"""Network -> per-layer table: out size, channels, jump, rf, eff_padding, center, params, MACs, erf_sigma.

Multi-path networks are walked in topological order; a merge (add, concat) requires its branches to be
aligned (equal size, jump and centre on both axes, as Araujo et al. require) and is refused otherwise,
with the merge and both values named.

A ``gate`` (squeeze-and-excitation: a map multiplied per channel by a branch pooled over the whole map)
takes the geometry of the map: its rf, jump and offsets count the gated map only, and the layer is flagged
``gated`` because its units also depend, through the gate, on the whole input (as does every layer after it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas costs 0.3 s to import; the sweep's Parquet path never needs it
    import pandas as pd

from rfsweep.core.errors import SpecError, field_error
from rfsweep.core.numbers import fmt_number, plain
from rfsweep.network import arithmetic as ar
from rfsweep.network.spec import ADAPTIVE_OPS, BLOCK_OPS, CONV_OPS, POOL_OPS, Layer, Network, is_merge

COLUMNS = ["name", "op", "out_size", "channels", "jump", "rf", "eff_padding", "center", "params", "macs", "erf_sigma"]


@dataclass
class LayerResult:
    """Exact results for one layer; ``axes`` is (h, w)."""

    layer: Layer
    axes: tuple[ar.Axis, ar.Axis]
    channels: int
    params: int
    macs: int | None
    flags: list[str] = field(default_factory=list)


def _axes_of_input(net: Network) -> tuple[ar.Axis, ar.Axis]:
    size = net.input_size or (None, None)
    return ar.input_axis(size[0]), ar.input_axis(size[1])


def sees_whole_input(a: ar.Axis, n: int) -> bool:
    """True when every unit of the map covers input pixels 0..n-1 (padding included).

    Unit ``u`` spans ``[c0 + u·jump - (rf-1)/2, c0 + u·jump + (rf-1)/2]``; the first unit must reach
    ``n-1`` and the last must reach 0.
    """
    if a.whole:
        return True
    if a.size is None:
        return False
    if a.phases is not None:  # after a transposed conv or an upsample: units differ, check each
        return all(h is not None and h[0] <= 0 and h[1] >= n - 1 for h in map(a.hull, range(a.size)))
    half = (a.rf - 1) / 2
    return a.center + half >= n - 1 and a.center + (a.size - 1) * a.jump - half <= 0


def _spatial(layer: Layer, a: ar.Axis, axis: int) -> ar.Axis:
    k, s, d = layer.kernel[axis], layer.stride[axis], layer.dilation[axis]
    pad = layer.padding[axis]
    if a.whole:  # every unit sees the whole input already; only the map's size still changes
        k_eff = ar.effective_kernel(k, d)
        if layer.op == "deconv":
            size = (a.size - 1) * s - pad[0] - pad[1] + k_eff + layer.output_padding[axis]
        else:
            pl, pr = ar.resolve_padding(pad, a.size, k_eff, s)
            size = ar.conv_out_size(a.size, k_eff, s, pl, pr, layer.ceil_mode)
        return replace(a, size=size)
    if layer.op == "deconv":
        pl, pr = pad
        return ar.deconv_axis(a, k, s, d, pl, pr, layer.output_padding[axis])
    if pad == "tf_same" and a.size is None:
        raise field_error(
            "padding", "tf_same", "TensorFlow SAME padding needs the input size (--input-size)", layer=layer.name
        )
    pl, pr = ar.resolve_padding(pad, a.size, ar.effective_kernel(k, d), s)
    return ar.conv_axis(a, k, s, d, pl, pr, layer.ceil_mode)


def _adaptive(layer: Layer, a: ar.Axis, axis: int) -> ar.Axis:
    if a.whole:
        return a
    if a.size is None:
        raise field_error(
            "output", list(layer.output), "adaptive pooling needs the input size (--input-size)", layer=layer.name
        )
    return ar.adaptive_axis(a, layer.output[axis])


def _block_axes(layer: Layer, in_axes: tuple[ar.Axis, ar.Axis], cin: int) -> tuple[tuple[ar.Axis, ar.Axis], int]:
    b = layer.block
    if layer.op == "space_to_depth":
        sizes = [a.size for a in in_axes]
        if any(not a.whole and a.size is not None and a.size % b for a in in_axes):
            raise field_error("block", b, f"must divide the input size {sizes}", layer=layer.name)
        return tuple(a if a.whole else ar.space_to_depth_axis(a, b) for a in in_axes), cin * b * b
    if cin % (b * b):
        raise field_error("block", b, f"block² must divide the input channels ({cin})", layer=layer.name)
    return tuple(a if a.whole else ar.depth_to_space_axis(a, b) for a in in_axes), cin // (b * b)


def _gate(layer: Layer, sources) -> None:
    (map_name, _, _, cin), (gate_name, _, gate_axes, gate_ch) = sources
    if not gate_axes[0].whole:
        raise field_error(
            "inputs",
            [map_name, gate_name],
            f"the gate '{gate_name}' must be a global vector (after a global pool), not a spatial map",
            layer=layer.name,
        )
    if gate_ch not in (cin, 1):
        raise field_error(
            "inputs",
            [map_name, gate_name],
            f"the gate has {gate_ch} channels, the map {cin} (they must be equal, or the gate 1)",
            layer=layer.name,
        )


def _pointwise_params(layer: Layer, cin: int) -> int:
    """Learned per-channel vectors of a pointwise layer: bn scale and shift, layernorm weight (and bias),
    affine weight and/or bias, prelu slopes (one, or one per channel)."""
    if layer.op == "bn":
        return 2 * cin
    if layer.op == "layernorm":
        return cin * (1 + layer.bias)
    if layer.op == "affine":
        return cin * (layer.weight + layer.bias)
    if layer.op == "prelu":
        return cin if layer.per_channel else 1
    return 0


def _merge(layer: Layer, sources: list[tuple[str, LayerResult | None, tuple[ar.Axis, ar.Axis], int]]):
    first_name, _, first_axes, _ = sources[0]
    for name, _, axes, _ in sources[1:]:
        for axis, label in ((0, "h"), (1, "w")):
            a, b = first_axes[axis], axes[axis]
            if a.whole != b.whole:
                raise field_error(
                    "inputs", [first_name, name], "cannot merge a global map with a spatial one", layer=layer.name
                )
            if a.whole:  # global vectors (after global pools / linear layers) always line up
                continue
            for what, va, vb in (("size", a.size, b.size), ("jump", a.jump, b.jump), ("centre", a.center, b.center)):
                if va != vb:
                    raise field_error(
                        "inputs",
                        [first_name, name],
                        f"branches are not aligned: {what} ({label}) of '{first_name}' is {fmt_number(va)}, "
                        f"of '{name}' is {fmt_number(vb)}",
                        layer=layer.name,
                    )
    chans = [c for _, _, _, c in sources]
    if layer.op != "concat":  # add, and a pointwise function of several maps
        if len(set(chans)) != 1:
            raise field_error(
                "inputs", [s[0] for s in sources], f"{layer.op} needs equal channels, got {chans}", layer=layer.name
            )
        weights = [Fraction(1)] * len(sources)
        channels = chans[0]
    else:
        weights = [Fraction(c) for c in chans]
        channels = sum(chans)
    if first_axes[0].whole:
        return first_axes, channels
    axes = tuple(ar.merge_axes([s[2][axis] for s in sources], weights) for axis in range(2))
    return axes, channels


def evaluate(net: Network) -> list[LayerResult]:
    """Exact per-layer results of a validated network, in topological order."""
    input_axes = _axes_of_input(net)
    state: dict[str, tuple[tuple[ar.Axis, ar.Axis], int]] = {"input": (input_axes, net.in_channels)}
    n_in = net.input_size
    results: list[LayerResult] = []
    for layer in net.layers:
        sources = [(src, None, *state[src]) for src in layer.inputs]
        in_axes, cin = sources[0][2], sources[0][3]
        params, macs = 0, 0
        flags: list[str] = []
        op = layer.op
        if is_merge(layer):
            axes, cout = _merge(layer, sources)
        elif op in CONV_OPS + POOL_OPS:
            axes = tuple(_spatial(layer, in_axes[i], i) for i in range(2))
            if any(a.size is not None and a.size < 1 for a in axes):
                raise field_error(
                    "out_size",
                    [a.size for a in axes],
                    f"output size below 1 (input {[a.size for a in in_axes]})",
                    layer=layer.name,
                )
            cout = cin
            if op in CONV_OPS:
                cout = layer.channels
                if cin % layer.groups:
                    raise field_error(
                        "groups", layer.groups, f"must divide the input channels ({cin})", layer=layer.name
                    )
                weights = layer.kernel[0] * layer.kernel[1] * (cin // layer.groups) * cout
                params = weights + (cout if layer.bias else 0)
                grid = axes if op == "conv" else in_axes
                macs = None if grid[0].size is None else weights * grid[0].size * grid[1].size
            if n_in is not None and all(a.size is not None for a in in_axes):
                spatial = [ar.effective_kernel(layer.kernel[i], layer.dilation[i]) > 1 for i in range(2)]
                if any(spatial) and op != "deconv" and all(sees_whole_input(in_axes[i], n_in[i]) for i in range(2)):
                    flags.append("unproductive")
        elif op in ADAPTIVE_OPS:
            axes = tuple(_adaptive(layer, in_axes[i], i) for i in range(2))
            cout = cin
        elif op in BLOCK_OPS:
            axes, cout = _block_axes(layer, in_axes, cin)
        elif op == "slice":
            stop = cin if layer.stop is None else layer.stop
            if stop > cin or layer.start >= stop:
                raise field_error(
                    "stop" if layer.stop is not None else "start",
                    layer.stop if layer.stop is not None else layer.start,
                    f"the slice [{layer.start}, {stop}) must lie inside the input's {cin} channels",
                    layer=layer.name,
                )
            axes, cout = in_axes, stop - layer.start
        elif op == "gate":
            _gate(layer, sources)
            axes, cout = in_axes, cin
            flags.append("gated")
        elif op == "upsample":
            axes = tuple(
                in_axes[i] if in_axes[i].whole else ar.upsample_axis(in_axes[i], layer.scale[i], layer.mode)
                for i in range(2)
            )
            cout = cin
        elif op == "global_pool":
            axes = tuple(ar.whole_axis(a) for a in in_axes)
            cout = cin
        elif op == "linear":
            if any(a.size is None for a in in_axes):
                raise field_error(
                    "op", "linear", "a linear layer on a spatial map needs the input size", layer=layer.name
                )
            fin = cin * in_axes[0].size * in_axes[1].size
            cout = layer.channels
            params = fin * cout + (cout if layer.bias else 0)
            macs = fin * cout
            axes = tuple(ar.whole_axis(a) for a in in_axes)
        else:  # pointwise: geometry unchanged
            axes, cout = in_axes, cin
            params = _pointwise_params(layer, cin)
        if n_in is not None and any(not a.whole and a.rf > n for a, n in zip(axes, n_in)):
            flags.append("rf>input")
        results.append(LayerResult(layer=layer, axes=axes, channels=cout, params=params, macs=macs, flags=flags))
        state[layer.name] = (axes, cout)
    return results


def axis_values(r: LayerResult, attr: str) -> tuple:
    """(h, w) of one metric; None where it means nothing (a map that sees the whole input)."""
    out = []
    for a in r.axes:
        if attr == "out_size":
            out.append(a.size)
        elif a.whole:
            out.append(None)
        elif attr == "erf_sigma":
            out.append(math.sqrt(a.erf_var))
        else:
            out.append(getattr(a, attr))
    return tuple(out)


def to_frame(results: list[LayerResult]) -> pd.DataFrame:
    """One row per layer; spatial columns hold (h, w) tuples of int/float (None for global maps)."""
    import pandas as pd

    rows = []
    for r in results:
        row: dict[str, Any] = {"name": r.layer.name, "op": r.layer.op}
        for col in ("out_size", "jump", "rf", "eff_padding", "center", "erf_sigma"):
            row[col] = tuple(plain(v) if not isinstance(v, float) else v for v in axis_values(r, col))
        row["channels"] = r.channels
        row["params"] = r.params
        row["macs"] = r.macs
        row["global"] = r.axes[0].whole
        row["flags"] = ",".join(r.flags)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS + ["global", "flags"])


__all__ = ["evaluate", "to_frame", "LayerResult", "SpecError", "fmt_number", "sees_whole_input"]
