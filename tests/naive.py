"""Slow, obviously-correct references for one axis of a layer chain, written without rfsweep.network.arithmetic.

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
the foundation arithmetic (``rfsweep.network.arithmetic``, itself checked against the first part), one
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
#
# Everything below re-derives a search from its raw settings in plain Python, importing nothing from
# rfsweep: the choice lists and their canonical order, per-position overrides and the head, arch_id
# numbering, the width rule, and every metric of every candidate (out sizes by walking windows with
# output_units above, rf / jump / offsets / ERF variance by the per-layer recurrences, which
# test_sweep.py checks against the index sets above on random chains).

SWEEP_DEFAULTS = {
    "depth": "1-8", "ops": ["conv", "maxpool"], "kernels": [1, 3, 5, 7], "pool_kernels": [2, 3],
    "strides": [1, 2], "pool_strides": None, "dilations": [1], "channels": None, "width": 32,
    "max_width": 512, "padding": "same", "input_size": 224, "in_channels": 3, "bias": True,
    "positions": [], "target_rf": None, "tolerance": 0, "rf_min": None, "rf_max": None,
    "min_out_size": 1, "max_params": None, "max_macs": None, "jump": None, "max_rf_ratio": None,
    "no_unproductive": False, "min_convs": None, "anchors": None, "anchor_rf": "1:4", "anchor_erf": "1",
}  # fmt: skip
OP_ORDER = ("conv", "maxpool", "avgpool")
ACT_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int16": 2, "int8": 1, "uint8": 1}
WIDTH = "width rule"


def _ints(v):
    return sorted(set([v] if isinstance(v, int) else v))


def _depth(v):
    if isinstance(v, int):
        return v, v
    if isinstance(v, str):
        a, _, b = v.partition("-")
        return int(a), int(b or a)
    return v[0], v[-1]


def choice_list(opts):
    """(op, kernel, stride, dilation, channels) tuples of one position, in the canonical order:
    by d(k-1), then op, kernel, stride, dilation, channels (the width rule sorts as one value)."""
    out = []
    for op in dict.fromkeys(opts["ops"]):
        if op == "conv":
            chans = [WIDTH] if opts["channels"] is None else _ints(opts["channels"])
            for k in _ints(opts["kernels"]):
                for s in _ints(opts["strides"]):
                    for d in _ints(opts["dilations"]) if k > 1 else [1]:
                        out += [(op, k, s, d, c) for c in chans]
        else:
            for k in _ints(opts["pool_kernels"] or opts["kernels"]):
                out += [(op, k, s, 1, None) for s in _ints(opts["pool_strides"] or opts["strides"])]
    return sorted(out, key=canonical)


def canonical(c):
    """The order of a position's choices: d(k-1), op, kernel, stride, dilation, then channels (pools, which
    pass channels through, and the width rule before any explicit count)."""
    op, k, s, d, ch = c
    return (d * (k - 1), OP_ORDER.index(op), k, s, d, -1 if ch is None else -2 if ch == WIDTH else ch)


class NaiveSpace:
    """The candidates of a search, from its settings: positions[p] = choice tuples, roles[p][c] = (may
    continue, may end)."""

    def __init__(self, settings):
        s = {**SWEEP_DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
        self.s = s
        self.dmin, self.dmax = _depth(s["depth"])
        keys = ("ops", "kernels", "pool_kernels", "strides", "pool_strides", "dilations", "channels")
        base = {k: s[k] for k in keys}
        positions = [choice_list(base) for _ in range(self.dmax)]
        head = None
        for entry in s["positions"]:
            opts = {**base, **{k: v for k, v in entry.items() if k != "index"}}
            if entry["index"] == -1:
                head = choice_list(opts)
            else:
                positions[entry["index"]] = choice_list(opts)
        self.roles = []
        for p in range(self.dmax):
            body = positions[p]
            if head is None:
                self.roles.append([(True, True)] * len(body))
            elif p + 1 < self.dmin:
                self.roles.append([(True, False)] * len(body))
            else:
                union = sorted(set(body) | set(head), key=canonical)
                positions[p] = union
                self.roles.append([(c in body, c in head) for c in union])
        self.positions = positions
        if s["min_convs"] is None:  # by default a chain with pools needs one conv (pool-only: --min-convs 0)
            s["min_convs"] = int(any(c[0] != "conv" for p in positions for c in p))

    def candidates(self):
        """Choice-index lists of every candidate, in depth-first (pre-)order."""

        def rec(prefix):
            t = len(prefix)
            if t and t >= self.dmin and self.roles[t - 1][prefix[-1]][1]:
                yield list(prefix)
            if t < self.dmax and (not t or self.roles[t - 1][prefix[-1]][0]):
                for c in range(len(self.positions[t])):
                    yield from rec(prefix + [c])

        yield from rec([])

    def arch_id(self, idx):
        """Mixed-radix number: depths in order, then the choices as digits (position 0 most significant)."""
        radix = [len(p) for p in self.positions]
        offset = 0
        for d in range(self.dmin, len(idx)):
            offset += math.prod(radix[:d])
        pid = 0
        for p, c in enumerate(idx):
            pid = pid * radix[p] + c
        return offset + pid

    def layers(self, idx):
        """(op, kernel, stride, dilation, channels) per layer, channels resolved by the width rule:
        width x 2^(strided layers so far, this one included), capped; pools keep their input's."""
        cin, ndown, out = self.s["in_channels"], 0, []
        for p, c in enumerate(idx):
            op, k, st, d, ch = self.positions[p][c]
            ndown += st > 1
            if op == "conv":
                cin = min(self.s["width"] * 2**ndown, self.s["max_width"]) if ch == WIDTH else ch
            out.append((op, k, st, d, cin))
        return out


def evaluate_layers(layers, n, padding, in_channels, bias):
    """Per-layer metrics of one chain, or None when a layer does not fit. Plain recurrences:
    rf += (k'-1) jump, eff_padding += left pad x jump, jump *= s, 12 x erf variance += (jump d)^2 (k^2 - 1)."""
    rf, jump, pad, erf12, size = 1, 1, 0, 0, n
    cin, params, macs, peak = in_channels, 0, 0, 0
    per_layer = []
    for op, k, s, d, cout in layers:
        ch_in, size_in = cin, size
        layer = {"op": op, "kernel": k, "stride": s, "dilation": d, "padding": padding}
        left, _ = padding_of(layer, size)
        out = output_units(layer, size)
        if out < 1:
            return None
        unproductive = d * (k - 1) > 0 and _sees_whole(rf, jump, pad, size, n)
        k_eff = d * (k - 1) + 1
        rf, pad, erf12 = rf + (k_eff - 1) * jump, pad + left * jump, erf12 + (jump * d) ** 2 * (k * k - 1)
        jump *= s
        size = out
        if op == "conv":
            w = k * k * cin * cout
            params += w + (cout if bias else 0)
            macs += w * out * out
            cin = cout
        peak = max(peak, size_in * size_in * ch_in + out * out * cin)  # input and output alive together
        per_layer.append({"rf": rf, "jump": jump, "eff_padding": pad, "erf12": erf12, "out_size": size,
                          "unproductive": unproductive})  # fmt: skip
    return per_layer, params, macs, peak


def _sees_whole(rf, jump, pad, size, n):
    """Every unit of a map (size units, unit u spanning [u jump - pad, u jump - pad + rf - 1]) covers 0..n-1."""
    return all(u * jump - pad <= 0 and u * jump - pad + rf - 1 >= n - 1 for u in range(size))


def naive_search(settings):
    """[(arch_id, choice indices, metrics)] of every survivor, in depth-first order."""
    sp = NaiveSpace(settings)
    rows = []
    for idx in sp.candidates():
        m = evaluate_candidate(sp, idx)
        if m is not None and meets(sp, m):
            rows.append((sp.arch_id(idx), idx, m))
    return rows


def naive_count(settings):
    return len(naive_search(settings))


def evaluate_candidate(sp, idx):
    layers = sp.layers(idx)
    res = evaluate_layers(layers, sp.s["input_size"], sp.s["padding"], sp.s["in_channels"], sp.s["bias"])
    if res is None:
        return None
    per_layer, params, macs, peak = res
    last = per_layer[-1]
    return {
        "layers": layers, "per_layer": per_layer, "rf": last["rf"], "jump": last["jump"],
        "eff_padding": last["eff_padding"], "center": (last["rf"] - 1) / 2 - last["eff_padding"],
        "out_size": last["out_size"], "params": params, "macs": macs, "erf_sigma": math.sqrt(last["erf12"] / 12),
        "unproductive": any(x["unproductive"] for x in per_layer), "peak_act": peak,
    }  # fmt: skip


def rf_window(s):
    lo, hi = 1, None
    if s["target_rf"] is not None:
        lo, hi = max(1, s["target_rf"] - s["tolerance"]), s["target_rf"] + s["tolerance"]
    if s["rf_min"] is not None:
        lo = max(lo, s["rf_min"])
    if s["rf_max"] is not None:
        hi = s["rf_max"] if hi is None else min(hi, s["rf_max"])
    if s["max_rf_ratio"] is not None:
        cap = math.floor(s["max_rf_ratio"] * s["input_size"])
        hi = cap if hi is None else min(hi, cap)
    return lo, hi


def meets(sp, m):
    s = sp.s
    lo, hi = rf_window(s)
    if m["rf"] < lo or (hi is not None and m["rf"] > hi):
        return False
    if m["out_size"] < s["min_out_size"]:
        return False
    if s["max_params"] is not None and m["params"] > s["max_params"]:
        return False
    if s["max_macs"] is not None and m["macs"] > s["max_macs"]:
        return False
    if s.get("max_peak_act") is not None and m["peak_act"] > s["max_peak_act"]:
        return False
    if s["jump"] is not None and m["jump"] not in _ints(s["jump"]):
        return False
    if s["no_unproductive"] and m["unproductive"]:
        return False
    if sum(layer[0] == "conv" for layer in m["layers"]) < s["min_convs"]:
        return False
    return all(level_tap(s, m, anchor, stride) is not None for anchor, stride in levels(s))


def levels(s):
    if s["anchors"] is None:
        return []
    items = s["anchors"].split(",") if isinstance(s["anchors"], str) else s["anchors"]
    pairs = [tuple(int(x) for x in (i.split("@") if isinstance(i, str) else i)) for i in items]
    return sorted(pairs, key=lambda p: p[1])


def level_tap(s, m, anchor, stride):
    """Index of the level's tap (the last layer whose jump is the stride) if it meets the level: rf within
    [lo, hi] x anchor and 2 x erf_sigma >= erf x anchor, in exact fractions."""
    taps = [i for i, x in enumerate(m["per_layer"]) if x["jump"] == stride]
    if not taps:
        return None
    x = m["per_layer"][taps[-1]]
    lo, hi = str(s["anchor_rf"]).split(":")
    erf_min = Fraction(str(s["anchor_erf"]))
    if x["rf"] < Fraction(lo) * anchor or (hi.strip() and x["rf"] > Fraction(hi) * anchor):
        return None
    if 4 * Fraction(x["erf12"], 12) < (erf_min * anchor) ** 2:  # 2 sigma >= erf_min x anchor, exactly
        return None
    return taps[-1]


def count_by_rf(settings, rf_max):
    """Candidates per final rf (index = rf, up to rf_max) meeting every constraint but the rf window, by
    a plain dynamic programme over (jump, rf, out size, convs) with Python integers (any size); no
    budgets, unproductive test or levels. The exact reference for counts of huge spaces."""
    sp = NaiveSpace(settings)
    s = sp.s
    n = s["input_size"]
    min_convs = s["min_convs"]
    jumps = None if s["jump"] is None else set(_ints(s["jump"]))
    states = {(1, 1, n, 0): 1}
    hist = [0] * (rf_max + 1)
    for p in range(sp.dmax):
        nxt = {}
        for (jump, rf, size, convs), cnt in states.items():
            for c, (op, k, st, d, _) in enumerate(sp.positions[p]):
                layer = {"op": op, "kernel": k, "stride": st, "dilation": d, "padding": s["padding"]}
                out = output_units(layer, size)
                if out < max(1, s["min_out_size"]):
                    continue
                rf2 = rf + d * (k - 1) * jump
                if rf2 > rf_max:
                    continue
                j2, c2 = jump * st, min(min_convs, convs + (op == "conv"))
                if jumps is not None and not any(a % j2 == 0 for a in jumps):
                    continue
                go, end = sp.roles[p][c]
                if go:
                    key = (j2, rf2, out, c2)
                    nxt[key] = nxt.get(key, 0) + cnt
                if end and p + 1 >= sp.dmin and c2 >= min_convs and (jumps is None or j2 in jumps):
                    hist[rf2] += cnt
        states = nxt
    return hist


# ------------------------------------------------------------------ the anchor-matching reference
#
# Anchor search's reference (imports nothing from rfsweep): every anchor of every image generated one by one
# as torchvision's GeneralizedRCNNTransform, AnchorGenerator and DefaultBoxGenerator place them (their float32
# steps mirrored with numpy float32 scalars), and the full IoU matrix of each image in float64 as box_iou
# computes it; the statistics read off that matrix.


def naive_resize(h, w, min_size, max_size, fixed=None):
    """(new_h, new_w, ratio_h, ratio_w) as GeneralizedRCNNTransform: scale in Python floats, floor(side x
    scale), box ratios float32."""
    import numpy as np

    if fixed is not None:
        nh, nw = fixed
    else:
        scale = min(min_size / min(h, w), max_size / max(h, w))
        nh, nw = math.floor(h * scale), math.floor(w * scale)
    return nh, nw, float(np.float32(nh) / np.float32(h)), float(np.float32(nw) / np.float32(w))


def naive_grid_anchors(ph, pw, strides, sizes_per_level, ratios_per_level):
    """All anchors [x1, y1, x2, y2] of a padded image, level by level, location by location, as
    AnchorGenerator orders them (float32 cell anchors, rounded; centres i x (pw // gw))."""
    import numpy as np

    f = np.float32
    out = []
    for s, sizes, ratios in zip(strides, sizes_per_level, ratios_per_level):
        gh, gw = -(-ph // s), -(-pw // s)
        sh, sw = ph // gh, pw // gw
        cell = []
        for r in ratios:
            hr = np.sqrt(f(r))
            wr = f(1) / hr
            for size in sizes:
                ws, hs = wr * f(size), hr * f(size)
                cell.append([np.round(-ws / f(2)), np.round(-hs / f(2)), np.round(ws / f(2)), np.round(hs / f(2))])
        cell = np.array(cell, np.float64)  # (A, 4)
        jj, ii = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")  # location by location, row major
        shifts = np.stack([ii * sw, jj * sh, ii * sw, jj * sh], axis=-1).reshape(-1, 1, 4).astype(np.float64)
        out.append((shifts + cell[None]).reshape(-1, 4))
    return np.concatenate(out).reshape(-1, 4)


def naive_ssd_anchors(side, grids, steps, scales, ratios_per_level):
    """All SSD default boxes of a side x side image as DefaultBoxGenerator makes them (clip=True), float32."""
    import numpy as np

    f = np.float32
    out = []
    for k, (g, step) in enumerate(zip(grids, steps)):
        s_k, s_next = scales[k], scales[k + 1]
        pairs = [(s_k, s_k), (math.sqrt(s_k * s_next),) * 2]
        for ar in ratios_per_level[k]:
            pairs += [(s_k * math.sqrt(ar), s_k / math.sqrt(ar)), (s_k / math.sqrt(ar), s_k * math.sqrt(ar))]
        c = ((np.arange(g) + 0.5).astype(f) / f(side / step)).astype(f)  # cell centres, float32
        cy, cx = np.meshgrid(c, c, indexing="ij")
        cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)
        w = np.array([min(max(p[0], 0.0), 1.0) for p in pairs], f)[None]  # clip=True
        h = np.array([min(max(p[1], 0.0), 1.0) for p in pairs], f)[None]
        x1, y1 = (cx - f(0.5) * w) * f(side), (cy - f(0.5) * h) * f(side)
        x2, y2 = (cx + f(0.5) * w) * f(side), (cy + f(0.5) * h) * f(side)
        out.append(np.stack([x1, y1, x2, y2], axis=-1).astype(np.float64).reshape(-1, 4))
    return np.concatenate(out).reshape(-1, 4)


def naive_box_iou(a, b):
    """box_iou(a, b) in float64, as torchvision computes it (areas, clamped overlaps, inter / union)."""
    import numpy as np

    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _sequential_sum(values) -> float:
    s = 0.0
    for v in values:  # box by box, as the kernel adds them
        s += float(v)
    return s


def naive_anchor_stats(xyxy, image, image_h, image_w, detector, config):
    """The anchor search's statistics of one configuration by brute force.

    ``detector``: {"kind": "grid" | "ssd", "min_size", "max_size", "divisible", "strides", "fg", and for
    ssd "side", "grids"}; ``config``: grid {"sizes": per level list, "ratios": per level list}, ssd
    {"scales": L + 1 values, "ratios": per level list}.
    """
    import numpy as np

    best = np.zeros(len(xyxy))
    positives = 0
    cells = 0
    for i in range(len(image_h)):
        h, w = int(image_h[i]), int(image_w[i])
        if detector["kind"] == "ssd":
            side = detector["side"]
            nh, nw, rh, rw = naive_resize(h, w, side, side, (side, side))
            grids, steps = detector["grids"], detector["strides"]
            anchors = naive_ssd_anchors(side, grids, steps, config["scales"], config["ratios"])
        else:
            nh, nw, rh, rw = naive_resize(h, w, detector["min_size"], detector["max_size"])
            d = detector["divisible"]
            ph, pw = math.ceil(nh / d) * d, math.ceil(nw / d) * d
            anchors = naive_grid_anchors(ph, pw, detector["strides"], config["sizes"], config["ratios"])
        cells += len(anchors)
        mine = np.flatnonzero(np.asarray(image) == i)
        if len(mine) == 0:
            continue
        b = np.asarray(xyxy, np.float64)[mine] * np.array([rw, rh, rw, rh])
        iou = naive_box_iou(b, anchors)
        best[mine] = iou.max(axis=1)
        positives += int((iou >= detector["fg"]).sum())
    n = len(xyxy)
    wh = np.asarray(xyxy, np.float64)
    area = (wh[:, 2] - wh[:, 0]) * (wh[:, 3] - wh[:, 1])
    cls = np.where(area < 32**2, 0, np.where(area < 96**2, 1, 2))
    fg = best >= detector["fg"]
    per = [fg[cls == c].mean() if (cls == c).any() else float("nan") for c in range(3)]
    return {
        "recall_iou50": float((best >= 0.5).mean()),
        "recall_iou70": float((best >= 0.7).mean()),
        "best_iou_mean": _sequential_sum(best) / n,
        "positives_per_gt": positives / n,
        "anchors_per_image": cells / len(image_h),
        "recall_small": float(per[0]),
        "recall_medium": float(per[1]),
        "recall_large": float(per[2]),
    }


# ---------------------------------------------------------------- peak activation memory

IN_PLACE = ("bn", "relu", "relu6", "hardswish", "silu", "sigmoid", "hardsigmoid", "identity", "dropout", "add", "gate")


def naive_peak_act(spec: dict) -> int:
    """Peak activation memory of a network spec in elements, batch 1, by liveness over its layers run in
    order (MCUNet's layer-by-layer execution): while a layer runs, its inputs, its output and every
    tensor an earlier layer made that a later layer still reads are alive; the peak is the largest sum.
    BatchNorm, activations, the residual add and the SE gate's product write into an input (in place:
    no new tensor). Square maps, 'same'/'valid'/explicit padding per layer as :func:`output_units`."""
    n0, c0 = spec["input"]["size"], spec["input"]["channels"]
    shape = {"input": (n0, c0, False)}  # name -> (size, channels, pooled)
    storage = {"input": "input"}  # name -> the tensor it lives in
    elems = {"input": n0 * n0 * c0}
    layers = spec["layers"]
    prev = "input"
    reads = []
    for layer in layers:
        srcs = layer.get("inputs") or [prev]
        n, c, pooled = shape[srcs[0]]
        op = layer["op"]
        if op in IN_PLACE:
            into = srcs[1] if op == "add" else srcs[0]  # the add writes into the branch, the gate into the trunk
            shape[layer["name"]] = shape[into]
            storage[layer["name"]] = storage[into]
        else:
            if op == "global_pool":
                out = (1, c, True)
            elif pooled:  # a 1x1 conv (linear) on the pooled vector
                out = (1, layer["channels"], True)
            else:
                m = output_units(layer, n)
                out = (m, layer["channels"] if op == "conv" else c, False)
            shape[layer["name"]] = out
            storage[layer["name"]] = layer["name"]
            elems[layer["name"]] = out[0] * out[0] * out[1]
        reads.append({storage[s] for s in srcs})
        prev = layer["name"]
    made_at = {}
    for i, layer in enumerate(layers):
        made_at.setdefault(storage[layer["name"]], i)
    peak = 0
    for i, layer in enumerate(layers):
        alive = set(reads[i]) | {storage[layer["name"]]}
        for t in range(i + 1, len(layers)):
            alive |= {s for s in reads[t] if made_at.get(s, -1) < i}  # made before, read after
        peak = max(peak, sum(elems[s] for s in alive))
    return peak


# ---------------------------------------------------------------- latency tables (issue 25)


def naive_latency_keys(sp, idx) -> list[str]:
    """The latency-table keys of one candidate of a space of stages, written out block by block from the
    block fields and Once-for-All's key format (MBv3LatencyTable.query), shapes from ceil(n / stride)."""
    from fractions import Fraction

    def divisible(v):  # make_divisible(v, 8): round to the nearest multiple of 8, never below 90 %
        new = max(8, int(v + 4) // 8 * 8)
        return new + 8 if new < 0.9 * v else new

    n, cin, pooled, keys = sp.input_size, sp.in_channels, False, []
    for p, c in enumerate(idx):
        where = sp.names[p]
        for b in sp.positions[p][c].blocks:
            cout = cin if b.op in ("maxpool", "avgpool", "global_pool") else b.channels
            io = f"-input:{n}x{n}x{cin}"
            if b.op == "mbconv":
                m = -(-n // b.stride)
                e = Fraction(b.expand)
                mid = cin if e == 1 else divisible(round(cin * e))
                skip = int(b.stride == 1 and cin == cout)
                keys.append(f"expanded_conv{io}-output:{m}x{m}x{cout}-expand:{mid}-kernel:{b.kernel}-stride:{b.stride}"
                            f"-idskip:{skip}-se:{int(b.se)}-hs:{int(b.act == 'hardswish')}")  # fmt: skip
            elif b.op == "conv":
                m = -(-n // b.stride)
                name = "Conv_2" if pooled else ("Conv_1" if where == "head" else "Conv")
                keys.append(f"{name}{io}-output:{m}x{m}x{cout}-kernel:{b.kernel}-stride:{b.stride}-dilation:1"
                            f"-act:{b.act}-bn:{int(b.bn)}-bias:{int(b.bias)}")  # fmt: skip
            elif b.op == "global_pool":
                m, pooled = 1, True
                keys.append(f"AvgPool2D{io}-output:1x1x{cout}")
            elif b.op == "linear":
                keys.append(f"Logits-input:1x1x{cin}-output:{cout}" + ("" if b.bias else "-bias:0"))
                m = 1
            else:
                raise NotImplementedError(b.op)
            n, cin = m, cout
    return keys


def naive_proxyless_keys(sp, idx) -> list[str]:
    """The keys Once-for-All's ProxylessNASLatencyTable.query builds for one candidate (predict_network_latency:
    ``Conv`` and ``Conv_1`` by their shapes, each MBConv by its expand ratio and identity skip, and one
    ``Logits`` for everything after ``Conv_1``: the global pool and the linear layer), shapes from
    ceil(n / stride). For spaces without SE, in ReLU6."""
    n, cin, keys = sp.input_size, sp.in_channels, []
    for p, c in enumerate(idx):
        where = sp.names[p]
        for b in sp.positions[p][c].blocks:
            cout = cin if b.op == "global_pool" else b.channels
            m = 1 if b.op == "global_pool" else -(-n // b.stride)
            io = f"-input:{n}x{n}x{cin}-output:{m}x{m}x{cout}"
            if b.op == "mbconv":
                skip = int(b.stride == 1 and cin == cout)
                keys.append(f"expanded_conv{io}-expand:{b.expand}-kernel:{b.kernel}-stride:{b.stride}-idskip:{skip}")
            elif b.op == "conv":
                keys.append(("Conv_1" if where == "head" else "Conv") + io)
            elif b.op == "global_pool":
                keys.append(f"Logits-input:{n}x{n}x{cin}-output:")  # completed by the linear layer
            elif b.op == "linear":
                keys[-1] += str(cout)
            else:
                raise NotImplementedError(b.op)
            n, cin = m, cout
    return keys


def naive_latency_us(sp, idx, entries: dict[str, float]) -> int:
    """A candidate's predicted latency in whole microseconds: each entry (ms) rounded once, then summed."""
    return sum(round(entries[k] * 1000) for k in naive_latency_keys(sp, idx))
