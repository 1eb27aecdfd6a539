"""The built-in model zoo reproduces the published receptive fields and parameter counts exactly.

Published values (final RF at each spec's ``feature_layer``, input 224x224):
* TF-Slim: rf / effective stride / effective padding from the google-research/receptive_field README.
* torchvision: rf from the torch-scan v0.1.2 README; parameter totals are torchvision's own
  ``sum(p.numel() for p in model.parameters())``.
The same numbers live in tests/reference/*.csv (sources in its README); the tests below also keep them
written out, so each check states the exact values it expects.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import math

import pytest

import rfsweep
from paths import REFERENCE, ROOT
from rfsweep.network import zoo

REPO = ROOT
MODELS_DIR = REPO / "data" / "models"

# model: (rf, effective stride, effective padding)
SLIM_PUBLISHED = {
    "alexnet_v2": (195, 32, 64),
    "vgg_16": (212, 32, 90),
    "mobilenet_v1": (315, 32, 126),
    "mobilenet_v1_075": (315, 32, 126),
    "resnet_v1_50": (483, 32, 239),
    "resnet_v1_101": (1027, 32, 511),
    "resnet_v1_152": (1507, 32, 751),
    "resnet_v1_200": (1763, 32, 879),
}
TORCHVISION_RF_PUBLISHED = {"alexnet": 195, "vgg11": 150, "vgg13": 156, "vgg16": 212, "vgg19": 268}
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
}
# Not from the reference tables: worked out by hand from torchvision's layer list (7x7/s2 stem, 3x3/s2
# max pool, stride in the first block of layers 2-4), kept as exact regression values.
TORCHVISION_RESNET_RF = {"resnet18": 435, "resnet34": 899, "resnet50": 427, "resnet101": 971}

ZOO = sorted(set(SLIM_PUBLISHED) | set(TORCHVISION_PARAMS))


def _spec(name: str) -> dict:
    return json.loads((MODELS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _feature_row(name: str):
    table = rfsweep.analyze(name)
    feature_layer = _spec(name)["feature_layer"]
    rows = table.loc[table["name"] == feature_layer]
    assert len(rows) == 1, f"{name}: feature_layer {feature_layer!r} is not one row of the table"
    return rows.iloc[0]


def _pair(value) -> tuple:
    return tuple(value)


def test_zoo_has_17_models():
    assert len(ZOO) == 17


def test_list_models_names_every_zoo_model():
    listed = set(zoo.list_models())
    assert set(ZOO) <= listed
    assert {p.stem for p in MODELS_DIR.glob("*.json")} <= listed


def test_spec_files_are_named_after_their_model_and_name_a_feature_layer():
    for name in ZOO:
        spec = _spec(name)
        assert spec["name"] == name
        names = [layer["name"] for layer in spec["layers"]]
        assert len(names) == len(set(names)), f"{name}: duplicate layer names"
        assert spec["feature_layer"] in names
        assert spec["input"] == {"size": 224, "channels": 3}


def test_spec_files_match_generate_py():
    loaded = importlib.util.spec_from_file_location("zoo_generate", MODELS_DIR / "generate.py")
    generate = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(generate)
    built = {net.name: generate.dumps(net.to_dict()) for net in generate.build_all()}
    assert sorted(built) == ZOO
    for name, text in built.items():
        assert (MODELS_DIR / f"{name}.json").read_text(encoding="utf-8") == text, (
            f"{name}.json is stale: run python data/models/generate.py"
        )


@pytest.mark.parametrize("name", sorted(SLIM_PUBLISHED))
def test_slim_rf_stride_padding_at_feature_layer_match_published(name):
    rf, stride, padding = SLIM_PUBLISHED[name]
    row = _feature_row(name)
    assert _pair(row["rf"]) == (rf, rf)
    assert _pair(row["jump"]) == (stride, stride)
    assert _pair(row["eff_padding"]) == (padding, padding)


@pytest.mark.parametrize("name", sorted(TORCHVISION_RF_PUBLISHED))
def test_torchvision_rf_at_feature_layer_matches_published(name):
    rf = TORCHVISION_RF_PUBLISHED[name]
    row = _feature_row(name)
    assert _pair(row["rf"]) == (rf, rf)
    assert _pair(row["jump"]) == (32, 32)


@pytest.mark.parametrize("name", sorted(TORCHVISION_RESNET_RF))
def test_torchvision_resnet_rf_at_layer4_output(name):
    rf = TORCHVISION_RESNET_RF[name]
    row = _feature_row(name)
    assert _pair(row["rf"]) == (rf, rf)
    assert _pair(row["jump"]) == (32, 32)
    assert _pair(row["eff_padding"]) == ((rf - 1) // 2, (rf - 1) // 2)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_torchvision_parameter_total_matches_torchvision(name):
    assert int(rfsweep.analyze(name)["params"].sum()) == TORCHVISION_PARAMS[name]


def _reference_rows(filename: str) -> list[dict]:
    with open(REFERENCE / filename, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def test_slim_models_match_reference_csv():
    rows = {r["model"]: r for r in _reference_rows("slim_models_summary.csv")}
    for name, (rf, stride, padding) in SLIM_PUBLISHED.items():
        ref = rows[name]
        assert (int(ref["rf"]), int(ref["effective_stride"]), int(ref["effective_padding"])) == (rf, stride, padding)
        row = _feature_row(name)
        assert _pair(row["rf"]) == (rf, rf)
        assert _pair(row["jump"]) == (stride, stride)
        assert _pair(row["eff_padding"]) == (padding, padding)


def test_torchvision_models_match_reference_csv():
    rows = {r["model"]: int(r["rf"]) for r in _reference_rows("torchvision_rf.csv")}
    assert rows == TORCHVISION_RF_PUBLISHED
    for name, rf in rows.items():
        assert _pair(_feature_row(name)["rf"]) == (rf, rf)


# --------------------------------------------------------------------------- other input sizes

SIZES = (193, 224, 256, 320)


def _ceil_halvings(n: int, times: int) -> int:
    for _ in range(times):
        n = -(-n // 2)
    return n


def _feature_size(name: str, n: int) -> int:
    """The feature layer's out size by each family's closed form (floor for VALID pools, ceil for SAME)."""
    if name == "alexnet_v2":  # conv1 11/4 VALID, three 3/2 VALID pools, SAME convs between
        x = (n - 11) // 4 + 1
        for _ in range(3):
            x = (x - 3) // 2 + 1
        return x
    if name == "alexnet":  # conv1 11/4 p2, three 3/2 pools, size-keeping convs between
        x = (n + 4 - 11) // 4 + 1
        for _ in range(3):
            x = (x - 3) // 2 + 1
        return x
    if name.startswith("vgg"):  # size-keeping 3x3 convs, five 2/2 pools
        return n // 32
    return _ceil_halvings(n, 5)  # mobilenet_v1, resnets: five stride-2 layers that keep ceil(n/2)


@functools.lru_cache
def _params_at_224(name: str) -> int:
    return int(rfsweep.analyze(name)["params"].sum())


def _adaptive_widest(n: int, out: int) -> int:
    """The widest window of torch's adaptive pooling: unit i pools floor(i·n/o) .. ceil((i+1)·n/o) - 1."""
    return max(-(-(i + 1) * n // out) - (i * n) // out for i in range(out))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ZOO)
def test_zoo_at_other_input_sizes(name, size):
    """Feature-layer size, rf, jump and total params at 193, 224, 256, 320 against closed forms; the
    parameter totals do not depend on the input size (adaptive pools before the torchvision classifiers,
    fully connected layers written as VALID convolutions or after global pools in the others)."""
    f = _feature_size(name, size)
    spec = _spec(name)
    if name in ("alexnet_v2", "vgg_16") and f < (5 if name == "alexnet_v2" else 7):
        with pytest.raises(rfsweep.SpecError, match=r"layer 'fc6': field 'out_size'"):
            rfsweep.analyze(name, input_size=size)
        return
    table = rfsweep.analyze(name, input_size=size)
    by_name = {r["name"]: r for r in table.to_dict("records")}
    feature = by_name[spec["feature_layer"]]
    rf = {**{k: v[0] for k, v in SLIM_PUBLISHED.items()}, **TORCHVISION_RF_PUBLISHED, **TORCHVISION_RESNET_RF}[name]
    assert feature["out_size"] == (f, f)
    assert feature["rf"] == (rf, rf) and feature["jump"] == (32, 32)
    assert int(table["params"].sum()) == _params_at_224(name)
    if name in TORCHVISION_PARAMS:
        assert int(table["params"].sum()) == TORCHVISION_PARAMS[name]
    if name == "alexnet" or name in _VGG:
        out = 6 if name == "alexnet" else 7
        channels = 256 if name == "alexnet" else 512
        pool = by_name["avgpool"]
        assert pool["out_size"] == (out, out)
        assert pool["jump"] == (32 * f / out,) * 2 or math.isclose(pool["jump"][0], 32 * f / out)
        assert pool["rf"] == (rf + (_adaptive_widest(f, out) - 1) * 32,) * 2
        first = by_name["classifier.1" if name == "alexnet" else "classifier.0"]
        assert first["params"] == channels * out * out * 4096 + 4096
        assert first["macs"] == channels * out * out * 4096


_VGG = ("vgg11", "vgg13", "vgg16", "vgg19")


def test_vgg16_at_320_has_torchvisions_parameters():
    """The issue's example: 138,357,544 as torch counts them (245,312,296 when the adaptive pool was the identity)."""
    table = rfsweep.analyze("vgg16", input_size=320)
    assert int(table["params"].sum()) == 138_357_544
    assert table.loc[table["name"] == "avgpool", "out_size"].iloc[0] == (7, 7)
