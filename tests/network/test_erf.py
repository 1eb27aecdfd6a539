"""rfsweep.network.erf against a brute-force impulse through a uniform-weight numpy network written here.

The brute force knows nothing of box filters: it pushes an impulse at every input pixel (a batch of
one-hot rows) forward through plain loops over output units and kernel taps, with every weight equal
(all ones divided by the fan-in, so each layer averages: an add then weighs its branches equally and a
concat by channel count, the uniform-weight model the design fixes), and reads the centre-most interior
unit. The resulting gradient map, normalised, must equal the library's distribution point by point.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfsweep.core.errors import SpecError
from rfsweep.network.analyze import evaluate
from rfsweep.network.erf import distributions, erf_distribution, erf_extent, erf_summary, moments
from rfsweep.network.zoo import resolve

# ------------------------------------------------------------------------------------ brute force (1-D)


def _get(layer: dict, key: str, axis: int) -> int:
    v = layer.get(key, 1)
    return v[axis] if isinstance(v, list) else v


def _pad(layer: dict, axis: int, n: int) -> tuple[int, int]:
    k, d = _get(layer, "kernel", axis), _get(layer, "dilation", axis)
    k_eff = d * (k - 1) + 1
    p = layer.get("padding", 0)
    if p == "same":
        return (k_eff - 1) // 2, k_eff - 1 - (k_eff - 1) // 2
    if p == "valid":
        return 0, 0
    if isinstance(p, int):
        return p, p
    return tuple(p[axis])


def _window_mean(x: np.ndarray, k: int, s: int, d: int, pl: int, pr: int) -> np.ndarray:
    """Average of k taps spaced d apart, stride s, zero padding: plain loops over units and taps."""
    n = x.shape[1]
    n_out = (n + pl + pr - (d * (k - 1) + 1)) // s + 1
    out = np.zeros((x.shape[0], n_out))
    for o in range(n_out):
        for t in range(k):
            i = o * s - pl + t * d
            if 0 <= i < n:
                out[:, o] += x[:, i]
    return out / k


def brute_force(spec: dict, axis: int) -> dict[str, list]:
    """Every node's value on one axis for a batch of impulses (one per input pixel): groups of
    (channels, array[impulse, unit]), all channels of a group carrying the same values."""
    n = spec["input"]["size"][axis]
    values = {"input": [(spec["input"]["channels"], np.eye(n))]}
    prev = "input"
    for layer in spec["layers"]:
        op = layer["op"]
        ins = [values[s] for s in layer.get("inputs", [prev])]
        if op == "conv":
            k, s_, d = (_get(layer, key, axis) for key in ("kernel", "stride", "dilation"))
            pl, pr = _pad(layer, axis, ins[0][0][1].shape[1])
            cin = sum(c for c, _ in ins[0])
            acc = sum(c * _window_mean(x, k, s_, d, pl, pr) for c, x in ins[0]) / cin
            out = [(layer["channels"], acc)]
        elif op in ("maxpool", "avgpool"):
            k, s_, d = (_get(layer, key, axis) for key in ("kernel", "stride", "dilation"))
            pl, pr = _pad(layer, axis, ins[0][0][1].shape[1])
            out = [(c, _window_mean(x, k, s_, d, pl, pr)) for c, x in ins[0]]
        elif op == "add":
            out = [(ins[0][0][0], sum(g[0][1] for g in ins))]
        elif op == "concat":
            out = [g for groups in ins for g in groups]
        else:
            out = ins[0]
        values[layer["name"]] = out
        prev = layer["name"]
    return values


def brute_distribution(spec: dict, values: dict, a, target: str, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions relative to the unit centre, probabilities) for an interior unit of ``target``,
    whose geometry (centre, jump, rf: from rfsweep.network.arithmetic) is ``a``."""
    n = spec["input"]["size"][axis]
    half = (a.rf - 1) / 2
    units = [u for u in range(a.size) if a.center + u * a.jump - half >= 0 and a.center + u * a.jump + half <= n - 1]
    assert units, "the test input is too small for an interior unit"
    u = units[len(units) // 2]
    groups = values[target]
    g = sum(c * x[:, u] for c, x in groups)
    centre = a.center + u * a.jump
    pos = np.array([float(p - centre) for p in range(n)])
    return pos, g / g.sum()


def assert_same(lib_pos, lib_p, brute_pos, brute_p):
    """The library's grid holds all the brute-force mass, and the two agree point by point."""
    assert np.isclose(lib_p.sum(), 1.0)
    step = lib_pos[1] - lib_pos[0] if len(lib_pos) > 1 else 1.0
    idx = np.rint((brute_pos - lib_pos[0]) / step).astype(int)
    inside = (idx >= 0) & (idx < len(lib_pos)) & np.isclose(lib_pos[np.clip(idx, 0, len(lib_pos) - 1)], brute_pos)
    assert np.allclose(brute_p[~inside], 0.0, atol=1e-14)
    mapped = np.zeros(len(lib_pos))
    mapped[idx[inside]] = brute_p[inside]
    assert np.allclose(mapped, lib_p, rtol=1e-9, atol=1e-14)


def _input_size_for(spec: dict) -> dict:
    """Grow the input until every layer has an interior unit (rf + a few jumps)."""
    net = resolve({**spec, "input": {"size": None, "channels": spec["input"]["channels"]}})
    res = evaluate(net)
    need = [int(max(r.axes[i].rf + 3 * r.axes[i].jump for r in res)) + 8 for i in range(2)]
    return {**spec, "input": {"size": need, "channels": spec["input"]["channels"]}}


# ------------------------------------------------------------------------------------------ strategies


def _padding(k_eff: tuple[int, int]):
    return st.one_of(
        st.just("same"),
        st.just("valid"),
        st.tuples(*(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)) for k in k_eff)).map(
            lambda t: [list(x) for x in t]
        ),
    )


@st.composite
def chain_layer(draw, name: str, same_only: bool = False, stride=None):
    op = draw(st.sampled_from(["conv", "conv", "conv", "maxpool", "avgpool"]))
    k = [draw(st.integers(1, 5)), draw(st.integers(1, 5))]
    if op != "conv":
        k = [max(2, v) for v in k]
    s = stride if stride is not None else [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    d = [1, 1]
    if op in ("conv", "maxpool"):
        d = [draw(st.integers(1, 3)) if v > 1 else 1 for v in k]
    if same_only:
        k = [v | 1 for v in k]  # odd effective kernels keep the centre under 'same'
        padding = "same"
    else:
        padding = draw(_padding(tuple(di * (ki - 1) + 1 for ki, di in zip(k, d))))
    layer = {"name": name, "op": op, "kernel": k, "stride": s, "padding": padding}
    if op != "avgpool":
        layer["dilation"] = d
    if op == "conv":
        layer["channels"] = draw(st.integers(1, 4))
    return layer


@st.composite
def chains(draw):
    depth = draw(st.integers(1, 5))
    layers = [draw(chain_layer(f"l{i}")) for i in range(depth)]
    return {"name": "chain", "input": {"size": None, "channels": 2}, "layers": layers}


@st.composite
def merges(draw):
    trunk = [draw(chain_layer(f"t{i}")) for i in range(draw(st.integers(0, 2)))]
    trunk.append({"name": "t_end", "op": "conv", "kernel": 1, "channels": draw(st.integers(1, 3))})
    stride = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    op = draw(st.sampled_from(["add", "concat"]))
    branches, ends = [], []
    for b in "ab":
        n = draw(st.integers(1, 2))
        prev = "t_end"
        for i in range(n):
            layer = draw(chain_layer(f"{b}{i}", same_only=True, stride=stride if i == 0 else [1, 1]))
            layer["inputs"] = [prev]
            branches.append(layer)
            prev = layer["name"]
        # end each branch with a conv so its channels are uniform (and equal for add)
        end = {
            "name": f"{b}_end",
            "op": "conv",
            "kernel": 1,
            "inputs": [prev],
            "channels": 3 if op == "add" else draw(st.integers(1, 5)),
        }
        branches.append(end)
        ends.append(end["name"])
    merge = {"name": "merged", "op": op, "inputs": ends}
    tail = [merge]
    if draw(st.booleans()):
        tail.append(draw(chain_layer("after")))
        tail[-1]["inputs"] = ["merged"]
    return {"name": "merge", "input": {"size": None, "channels": 2}, "layers": trunk + branches + tail}


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_all_layers(spec: dict):
    spec = _input_size_for(spec)
    net = resolve(spec)
    results = evaluate(net)
    names = [r.layer.name for r in results]
    dists = distributions(net, names, results=results)
    by_name = {r.layer.name: r for r in results}
    brute = [brute_force(spec, axis) for axis in range(2)]
    for name in names:
        for axis in range(2):
            d = dists[name][axis]
            bp, bprob = brute_distribution(spec, brute[axis], by_name[name].axes[axis], name, axis)
            assert_same(d.positions(), d.probs, bp, bprob)
            a = by_name[name].axes[axis]
            mean, sigma, _ = moments(d)
            assert abs(mean) < 1e-9
            assert math.isclose(sigma, math.sqrt(a.erf_var), rel_tol=1e-12, abs_tol=1e-12)
            assert float(d.lo) == -float(a.rf - 1) / 2 and len(d.probs) == a.rf  # support = the RF exactly


@SETTINGS
@given(chains())
def test_chain_matches_brute_force(spec):
    _check_all_layers(spec)


@SETTINGS
@given(merges())
def test_merge_matches_brute_force(spec):
    _check_all_layers(spec)


# ------------------------------------------------------------------------------- sanity and edge cases


def test_strided_stack_is_not_gaussian():
    """k=3, stride 2, ten layers: excess kurtosis near -0.9, and the 95 % extent is not 2·1.96·sigma."""
    layers = [{"name": f"c{i}", "op": "conv", "kernel": 3, "stride": 2, "channels": 1} for i in range(10)]
    spec = {"name": "s2", "input": {"size": None, "channels": 1}, "layers": layers}
    s = erf_summary(spec, "c9")
    assert s["excess_kurtosis"][0] == pytest.approx(-0.9, abs=0.01)
    gauss95 = 2 * 1.959964 * s["erf_sigma"][0]
    assert abs(s["erf_extent"]["95"][0] - gauss95) > 0.03 * gauss95


def test_erf_extent_by_hand():
    pos = np.arange(-2.0, 3.0)
    p = np.full(5, 0.2)
    assert erf_extent(pos, p, 0.2) == 1.0  # the centre pixel alone
    assert erf_extent(pos, p, 0.5) == 3.0  # |x| <= 1 holds 0.6
    assert erf_extent(pos, p, 0.6) == 3.0
    assert erf_extent(pos, p, 0.61) == 5.0
    assert erf_extent(pos, p, 1.0) == 5.0
    # even support: positions are half-integers, the centre falls between pixels
    pos = np.array([-1.5, -0.5, 0.5, 1.5])
    assert erf_extent(pos, np.full(4, 0.25), 0.5) == 2.0
    assert erf_extent(pos, np.full(4, 0.25), 0.9) == 4.0


def test_extent_at_full_mass_is_rf_for_zoo_models():
    for model, layer in (("resnet50", "layer4.2.relu_2"), ("vgg16", "features.29"), ("alexnet", "features.12")):
        net = resolve(model)
        res = {r.layer.name: r for r in evaluate(net)}
        s = erf_summary(net, layer, masses=(0.5, 0.9, 0.95, 1.0))
        rf = float(res[layer].axes[0].rf)
        assert s["erf_extent"]["100"][0] == rf
        e = [s["erf_extent"][k][0] for k in ("50", "90", "95", "100")]
        assert e == sorted(e)
        assert s["erf_sigma"][0] == pytest.approx(math.sqrt(res[layer].axes[0].erf_var), rel=1e-12)


def test_distribution_api_shapes():
    ph, pp, pw, pq = erf_distribution("resnet18", "layer1.0.relu")
    assert len(ph) == len(pp) and len(pw) == len(pq)
    assert pp.sum() == pytest.approx(1.0) and ph[0] == -ph[-1]


def test_fractional_jump_grid_and_sigma():
    """Deconv and upsampling: a finer grid, and sigma still equals the arithmetic's sqrt(erf_var)."""
    spec = {
        "name": "fr",
        "input": {"size": 64, "channels": 1},
        "layers": [
            {"name": "c1", "op": "conv", "kernel": 3, "stride": 2, "padding": 1, "channels": 2},
            {"name": "d1", "op": "deconv", "kernel": 4, "stride": 2, "padding": 1, "channels": 2},
            {"name": "u1", "op": "upsample", "scale": 2, "mode": "bilinear"},
            {"name": "u2", "op": "upsample", "scale": 3},
            {"name": "c2", "op": "conv", "kernel": 3, "padding": 1, "channels": 2},
        ],
    }
    net = resolve(spec)
    res = {r.layer.name: r for r in evaluate(net)}
    s = erf_summary(spec, "c2")
    assert s["grid_step"][0] == pytest.approx(1 / 6)  # jumps 2, 1, 1/2, 1/6: the last conv taps 1/6 px apart
    for name in res:
        d = distributions(net, [name])[name][0]
        mean, sigma, _ = moments(d)
        assert abs(mean) < 1e-12 and d.probs.sum() == pytest.approx(1.0)
        assert sigma == pytest.approx(math.sqrt(res[name].axes[0].erf_var), rel=1e-12)


def test_global_and_unknown_layers_refused():
    with pytest.raises(SpecError, match="whole"):
        erf_summary("resnet18", "fc")
    with pytest.raises(SpecError, match="avgpool"):
        erf_summary("resnet18", "avgpool")
    with pytest.raises(SpecError, match="no layer"):
        erf_summary("resnet18", "nope")


def test_heatmap_is_separable_2d_brute_force():
    """A small 2-D network pushed impulse by impulse (plain 2-D loops) gives the outer product."""
    from rfsweep.network.erf import heatmap

    spec = {
        "name": "twod",
        "input": {"size": [20, 22], "channels": 1},
        "layers": [
            {"name": "a", "op": "conv", "kernel": [3, 2], "stride": [2, 1], "dilation": [1, 2], "channels": 1},
            {"name": "b", "op": "avgpool", "kernel": [2, 3], "stride": [1, 2]},
        ],
    }
    net = resolve(spec)
    res = {r.layer.name: r for r in evaluate(net)}
    dh, dw = distributions(net, ["b"])["b"]
    H, W = 20, 22

    def conv2(x, kh, kw, sh, sw, dh_, dw_):
        oh, ow = (x.shape[0] - dh_ * (kh - 1) - 1) // sh + 1, (x.shape[1] - dw_ * (kw - 1) - 1) // sw + 1
        out = np.zeros((oh, ow))
        for i in range(oh):
            for j in range(ow):
                for a in range(kh):
                    for b in range(kw):
                        out[i, j] += x[i * sh + a * dh_, j * sw + b * dw_]
        return out

    ah, aw = res["b"].axes
    u, v = 2, 3
    grad = np.zeros((H, W))
    for p in range(H):
        for q in range(W):
            x = np.zeros((H, W))
            x[p, q] = 1
            y = conv2(conv2(x, 3, 2, 2, 1, 1, 2), 2, 3, 1, 2, 1, 1)
            grad[p, q] = y[u, v]
    grad /= grad.sum()
    ch, cw = float(ah.center + u * ah.jump), float(aw.center + v * aw.jump)
    rows = [int(round(ch + x)) for x in dh.positions()]
    cols = [int(round(cw + x)) for x in dw.positions()]
    assert np.allclose(grad[np.ix_(rows, cols)], heatmap(dh, dw))
    assert grad.sum() == pytest.approx(grad[np.ix_(rows, cols)].sum())
