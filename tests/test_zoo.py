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
import importlib.util
import json
from pathlib import Path

import pytest

import rfsweep
from rfsweep import zoo

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO / "data" / "models"
REFERENCE = Path(__file__).resolve().parent / "reference"  # the published tables, sources in its README

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
