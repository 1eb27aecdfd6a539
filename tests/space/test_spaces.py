"""The shipped spaces of stages (data/spaces/) against their published numbers (tests/reference, sources in
its README).

* Once-for-All MobileNetV3 (w1.0) and ProxylessNAS (w1.3): the number of subnets, and the 40 specialized
  networks of the OFA model zoo, each rebuilt as a candidate of the shipped space and analyzed at its image
  size: their published #Params and #MACs (rounded to 0.1 M and 1 M) come out, 36 of them exactly, the 4
  others as the reference README explains.
* The ResNet-like space holds ResNet-50 with torchvision's 25,557,032 parameters and 4.09 GMACs, and the
  zoo's rf and jump for it.
* The largest and smallest OFA-MobileNetV3 subnets at 224 (no published MACs for them: rfsweep's figures,
  in the convention the specialized networks confirm), by the analyzer and by the sweep's row.
"""

from __future__ import annotations

import csv
from fractions import Fraction

import pytest

from paths import REFERENCE
from rfsweep import analyze
from rfsweep import api as sweep
from rfsweep.network.analyze import evaluate
from rfsweep.network.spec import parse_network
from rfsweep.space import build_space
from rfsweep.space.stages import load, shipped_path, shipped_spaces

# rfsweep's figures for the largest (depth 4, kernel 7, expand 6 everywhere) and smallest (depth 2, kernel 3,
# expand 3) OFA-MobileNetV3 subnets at 224, head included (params, MACs)
OFA_MBV3_LARGEST = (7_664_760, 566_170_656)
OFA_MBV3_SMALLEST = (3_410_792, 121_278_672)
# the four specialized networks whose stored configuration does not round to the README's #MACs
# (tests/reference/README.md): model -> rfsweep's MACs
MACS_GAPS = {
    "ofa-lg-8": 73_471_032,
    "ofa-note10-08": 75_802_880,
    "ofa-note10-16": 162_464_384,
    "ofa-cpu-17": 364_488_032,
}


def read_reference(name: str) -> list[dict]:
    with (REFERENCE / name).open(encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


@pytest.fixture(scope="module")
def spaces():
    """The shipped spaces, built once (OFA's are over 10^19 subnets: counted, not searched)."""
    return {name: build_space(load(name), for_search=False) for name in shipped_spaces()}


def config_index(space, position: int, blocks: list[tuple[int, Fraction]], channels: int | None = None) -> int:
    """The choice of a stage whose blocks have these (kernel, expand) pairs (and output channels)."""
    for i, choice in enumerate(space.positions[position]):
        if [(b.kernel, b.expand) for b in choice.blocks] == blocks and channels in (None, choice.channels):
            return i
    raise AssertionError(f"no configuration {blocks} at position {position}")


def uniform(space, depth: int, kernel: int, expand, channels: list[int] | None = None) -> list[int]:
    """Every stage at one depth, kernel and expand (a ResNet stage's depth is its base + the given one)."""
    idx = [0]
    for p in range(1, len(space.positions) - 1):
        first = space.positions[p][0].blocks
        d = depth if len(first) >= 2 else 1  # ProxylessNAS's last stage has one block
        if first[0].op == "bottleneck" and p == 3:
            d = depth + 2  # ResNet's third stage: base depth 4
        c = None if channels is None else channels[p - 1]
        idx.append(config_index(space, p, [(kernel, Fraction(expand))] * d, c))
    return idx + [0]


def totals(spec: dict) -> tuple[int, int]:
    results = evaluate(parse_network(spec))
    return sum(r.params for r in results), sum(r.macs for r in results)


def test_shipped_spaces_cite_their_source():
    assert {"ofa_mbv3", "ofa_proxyless", "ofa_resnet50_v15"} <= set(shipped_spaces())
    for name in ("ofa_mbv3", "ofa_proxyless", "ofa_resnet50_v15"):
        settings = load(name)
        assert settings["name"] == name and settings["source"] and settings["description"]
        assert "github.com/mit-han-lab/once-for-all" in shipped_path(name).read_text()


def test_subnet_counts_are_the_published_ones(spaces):
    """OFA: ((3x3)^2 + (3x3)^3 + (3x3)^4)^5 ~ 2x10^19 (> 10^19 in the abstract); ProxylessNAS adds a
    sixth stage of one elastic block; the ResNet space has 3 widths x (3^2 + 3^3 + 3^4) configurations a
    stage (3^4 + 3^5 + 3^6 for the third)."""
    published = {row["meaning"]: float(row["published"]) for row in read_reference("nas_space_totals.csv")[:2]}
    ofa = spaces["ofa_mbv3"].size
    assert ofa == ((3 * 3) ** 2 + (3 * 3) ** 3 + (3 * 3) ** 4) ** 5 == 21_758_655_492_572_485_851
    assert ofa > published["lower bound (abstract: more than 10^19 sub-networks)"]
    assert float(f"{ofa:.0e}") == published["((3x3)^2 + (3x3)^3 + (3x3)^4)^5, rounded to one digit"]
    assert spaces["ofa_proxyless"].size == 7371**5 * 9
    assert spaces["ofa_resnet50_v15"].size == (3 * 117) ** 3 * (3 * 1053) == 136_606_377_609


def test_specialized_networks_have_their_published_params_and_macs(spaces):
    """Each OFA specialized network, as a candidate of the shipped space at its image size: #Params to
    0.1 M and #MACs to 1 M as the OFA README states (4 known gaps in #MACs, see tests/reference/README)."""
    rows = read_reference("ofa_specialized.csv")
    assert len(rows) == 40 and {r["space"] for r in rows} == {"ofa_mbv3", "ofa_proxyless"}
    matched = 0
    for row in rows:
        space = spaces[row["space"]]
        stages = [[tuple(map(int, b.split("/"))) for b in s.split(",")] for s in row["stages"].split()]
        assert len(stages) == len(space.positions) - 2, row["model"]
        idx = [0] + [config_index(space, p + 1, [(k, Fraction(e)) for k, e in s]) for p, s in enumerate(stages)]
        spec = space.network_spec(idx + [0], name=row["model"])
        spec["input"]["size"] = int(row["image_size"])
        params, macs = totals(spec)
        assert round(params / 1e6, 1) == float(row["params_m"]), row["model"]
        if row["model"] in MACS_GAPS:
            assert macs == MACS_GAPS[row["model"]] and round(macs / 1e6) != int(row["macs_m"])
        else:
            assert round(macs / 1e6) == int(row["macs_m"]), row["model"]
            matched += 1
    assert matched == 36


def test_resnet50_is_a_candidate_with_torchvisions_numbers(spaces):
    space = spaces["ofa_resnet50_v15"]
    rows = {r["quantity"]: float(r["published"]) for r in read_reference("nas_space_totals.csv")[2:]}
    idx = [0] + [
        config_index(space, p + 1, [(3, Fraction(1, 4))] * d, c)
        for p, (d, c) in enumerate(zip([3, 4, 6, 3], [256, 512, 1024, 2048]))
    ]
    df = analyze(space.network_spec(idx + [0]))
    assert df.params.sum() == rows["params"] == 25_557_032
    assert df.macs.sum() == 4_089_184_256 and round(df.macs.sum() / 1e9, 2) * 1e9 == rows["macs"]
    zoo = analyze("resnet50")
    assert zoo.params.sum() == df.params.sum() and zoo.macs.sum() == df.macs.sum()
    last = df.index[df.name == "layer4.2.relu"][0]  # the map before the global pool, in both
    zoo_last = zoo.index[zoo.op == "global_pool"][0] - 1
    assert (df.rf[last], df.jump[last], df.out_size[last]) == (zoo.rf[zoo_last], zoo.jump[zoo_last], (7, 7))
    assert df.rf[last] == (427, 427) and df.name[last + 1] == "head.0.pool"


@pytest.mark.parametrize(
    "which, depth, kernel, expand, expected",
    [("largest", 4, 7, 6, OFA_MBV3_LARGEST), ("smallest", 2, 3, 3, OFA_MBV3_SMALLEST)],
)
def test_largest_and_smallest_ofa_subnets_by_analyzer_and_sweep(spaces, which, depth, kernel, expand, expected):
    """The analyzer on Space.network_spec and the sweep's row of the same subnet agree on params, MACs,
    rf, jump and out size (the sweep searches the shipped file narrowed to that one subnet)."""
    space = spaces["ofa_mbv3"]
    spec = space.network_spec(uniform(space, depth, kernel, expand))
    assert totals(spec) == expected
    settings = load("ofa_mbv3")
    settings["stages"] = [{**s, "depth": depth, "kernel": kernel, "expand": expand} for s in settings["stages"]]
    narrowed = build_space(settings)
    assert narrowed.size == 1
    row = sweep.search(narrowed, columns="compact").iloc[0]
    assert (row.params, row.macs) == expected
    results = evaluate(parse_network(spec))
    pool = next(i for i, r in enumerate(results) if r.layer.name == "head.1.pool")
    axis = results[pool - 1].axes[0]
    assert (row.rf, row.jump, row.out_size, row.eff_padding) == (axis.rf, axis.jump, axis.size, axis.eff_padding)
    assert row.out_size == 7 and row.jump == 32


def test_ofa_largest_subnet_by_hand():
    """OFA's counting rule written out for the largest subnet (conv weights x output map; SE convs and the
    classifier on pooled vectors; BatchNorm 2 x C parameters), independently of kernels/costs.py."""

    def div8(v):  # make_divisible(v, 8)
        new = max(8, (v + 4) // 8 * 8)
        return new + 8 if new < 0.9 * v else new

    params = macs = 0

    def conv(cin, cout, k, n_out, groups=1, bn=True, bias=False):
        nonlocal params, macs
        w = k * k * cin // groups * cout
        params += w + (2 * cout if bn else 0) + (cout if bias else 0)
        macs += w * n_out * n_out

    conv(3, 16, 3, 112)  # first conv
    conv(16, 16, 3, 112, groups=16)  # first block: depthwise, then the projection
    conv(16, 16, 1, 112)
    n, cin = 112, 16
    for cout, stride, se in ((24, 2, False), (40, 2, True), (80, 2, False), (112, 1, True), (160, 2, True)):
        for i in range(4):
            n_in, n = n, n // (stride if i == 0 else 1)
            mid = div8(cin * 6)
            conv(cin, mid, 1, n_in)
            conv(mid, mid, 7, n, groups=mid)
            if se:
                sm = div8(mid // 4)
                conv(mid, sm, 1, 1, bn=False, bias=True)
                conv(sm, mid, 1, 1, bn=False, bias=True)
            conv(mid, cout, 1, n)
            cin = cout
    conv(160, 960, 1, 7)  # final expand
    conv(960, 1280, 1, 1, bn=False)  # feature mix, on the pooled vector
    conv(1280, 1000, 1, 1, bn=False, bias=True)  # classifier
    assert (params, macs) == OFA_MBV3_LARGEST


@pytest.mark.parametrize(
    "name, stage",
    [
        ("ofa_proxyless", lambda i, s: {"depth": 1 if i == 5 else 4, "kernel": 7, "expand": 6}),
        ("ofa_resnet50_v15", lambda i, s: {"depth": [3, 4, 6, 3][i], "expand": "1/4", "channels": max(s["channels"])}),
    ],
)
def test_sweep_rows_of_the_other_spaces_are_the_analyzers(spaces, name, stage):
    """The largest ProxylessNAS subnet and ResNet-50: the sweep's row (the file narrowed to that subnet)
    equals the analyzer on the full space's candidate."""
    settings = load(name)
    settings["stages"] = [{**s, **stage(i, s)} for i, s in enumerate(settings["stages"])]
    narrowed = build_space(settings)
    row = sweep.search(narrowed, columns="compact").iloc[0]
    space = spaces[name]
    idx = [0]
    for p, raw in enumerate(settings["stages"]):
        blocks = [(raw.get("kernel", 3), Fraction(raw["expand"]))] * raw["depth"]
        idx.append(config_index(space, p + 1, blocks, raw["channels"]))
    assert (row.params, row.macs) == totals(space.network_spec(idx + [0]))
    if name == "ofa_resnet50_v15":
        assert (row.params, row.macs, row.rf, row.jump, row.out_size) == (25_557_032, 4_089_184_256, 427, 32, 7)


@pytest.mark.parametrize(
    "settings",
    [
        {"target_rf": 224, "min_convs": 5},
        {"depth": "2-5", "ops": "conv,avgpool", "kernels": "1,3,5", "dilations": "1,2", "padding": "valid",
         "input_size": 64, "max_params": 5e5},
        {"space": "ofa_mbv3"},
    ],
    ids=["default", "valid-budget", "ofa_mbv3"],
)  # fmt: skip
def test_bounds_are_the_same_compiled_or_in_python(settings, monkeypatch):
    """packing.children runs the kernels' child() compiled (step_all) for large calls and in Python for
    small ones (no compile on a first run): both give the same rows."""
    from rfsweep.space import packing
    from rfsweep.space.stages import load

    if "space" in settings:
        settings = load(settings["space"])
    results = []
    for pairs in (0, 1 << 62):  # everything compiled, then everything in Python
        monkeypatch.setattr(packing, "COMPILED_PAIRS", pairs)
        space = build_space(dict(settings))
        rows = [packing.state_row(space.input_size, 1, space.in_channels, 0)]
        results.append([packing.children(space, p, rows) for p in range(min(3, space.depth_max))])
    assert results[0] == results[1]
