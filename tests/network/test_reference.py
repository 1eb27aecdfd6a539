"""Published per-layer values (tests/reference/*.csv, sources in its README) reproduced exactly by
rfsweep.network.analyze.

The expected numbers are also written out below, and the CSVs are compared with these tables, row by
row. (The zoo's published model tables are covered by tests/network/test_zoo.py.)
"""

from __future__ import annotations

import csv

from paths import REFERENCE
from rfsweep import analyze

# AlexNet at 227x227 (seed 000 table / seed 001): layer, op, input size, kernel, stride, padding, out, rf
ALEXNET = [
    ("conv1", "conv", 227, 11, 4, 0, 55, 11),
    ("pool1", "maxpool", 55, 3, 2, 0, 27, 19),
    ("conv2", "conv", 27, 5, 1, 2, 27, 51),
    ("pool2", "maxpool", 27, 3, 2, 0, 13, 67),
    ("conv3", "conv", 13, 3, 1, 1, 13, 99),
    ("conv4", "conv", 13, 3, 1, 1, 13, 131),
    ("conv5", "conv", 13, 3, 1, 1, 13, 163),
    ("pool5", "maxpool", 13, 3, 2, 0, 6, 195),
]
ALEXNET_CHANNELS = {"conv1": 96, "conv2": 256, "conv3": 384, "conv4": 384, "conv5": 256}

# Seed 004's example network (padding not given; it does not change the RF): layer, op, kernel, stride, rf
SEED004 = [
    ("conv1", "conv", 3, 1, 3),
    ("pool1", "pool", 2, 2, 4),
    ("conv2", "conv", 3, 1, 8),
    ("pool2", "pool", 2, 2, 10),
    ("conv3", "conv", 3, 1, 18),
    ("conv4", "conv", 3, 1, 26),
    ("pool3", "pool", 2, 2, 30),
]

# Seed 003: 5-pixel input, two 3x3/s2/p1 convs: layer, kernel, stride, padding, n, r, j, start (= centre + 0.5)
SEED003 = [
    ("input", None, None, None, 5, 1, 1, 0.5),
    ("conv1", 3, 2, 1, 3, 3, 2, 0.5),
    ("conv2", 3, 2, 1, 2, 7, 4, 0.5),
]


def read_reference(name: str) -> list[dict]:
    path = REFERENCE / name
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def _int(text: str):
    return None if text == "" else int(text)


# --------------------------------------------------------------------------- the CSVs hold the numbers above


def test_alexnet_csv_matches_table():
    rows = read_reference("alexnet_per_layer.csv")
    assert [
        (r["layer"], r["op"], *(int(r[k]) for k in ("input_size", "kernel", "stride", "padding", "output_size", "rf")))
        for r in rows
    ] == ALEXNET


def test_seed004_csv_matches_table():
    rows = read_reference("seed004_chain.csv")
    assert [(r["layer"], r["op"], int(r["kernel"]), int(r["stride"]), int(r["rf"])) for r in rows] == SEED004


def test_seed003_csv_matches_table():
    rows = read_reference("seed003_chain.csv")
    assert [
        (
            r["layer"],
            _int(r["kernel"]),
            _int(r["stride"]),
            _int(r["padding"]),
            int(r["n"]),
            int(r["r"]),
            int(r["j"]),
            float(r["start"]),
        )
        for r in rows
    ] == SEED003


# --------------------------------------------------------------------------- analyze reproduces them


def test_alexnet_per_layer():
    layers = []
    for name, op, _, k, s, p, _, _ in ALEXNET:
        layer = {"name": name, "op": op, "kernel": k, "stride": s, "padding": p}
        if op == "conv":
            layer["channels"] = ALEXNET_CHANNELS[name]
        layers.append(layer)
    frame = analyze({"name": "alexnet", "input": {"size": 227, "channels": 3}, "layers": layers})
    assert list(frame["name"]) == [row[0] for row in ALEXNET]
    previous = 227
    for (name, _, n_in, _, _, _, n_out, rf), (_, row) in zip(ALEXNET, frame.iterrows()):
        assert n_in == previous, name
        assert row["out_size"] == (n_out, n_out), name
        assert row["rf"] == (rf, rf), name
        previous = n_out


def test_alexnet_per_layer_non_square():
    """The same chain on the width axis only (height 1x1 kernels): the per-axis values are independent."""
    layers = []
    for name, op, _, k, s, p, _, _ in ALEXNET:
        layer = {"name": name, "op": op, "kernel": [1, k], "stride": [1, s], "padding": [0, p]}
        if op == "conv":
            layer["channels"] = ALEXNET_CHANNELS[name]
        layers.append(layer)
    frame = analyze({"input": {"size": [9, 227], "channels": 3}, "layers": layers})
    assert [tuple(v) for v in frame["rf"]] == [(1, row[7]) for row in ALEXNET]
    assert [tuple(v) for v in frame["out_size"]] == [(9, row[6]) for row in ALEXNET]


def test_seed004_rf_after_each_layer():
    layers = []
    for name, op, k, s, _ in SEED004:
        layer = {"name": name, "op": "conv" if op == "conv" else "maxpool", "kernel": k, "stride": s}
        if op == "conv":
            layer.update(channels=16, padding="same")
        layers.append(layer)
    for size in (None, 64):  # the RF does not depend on the input size
        frame = analyze({"input": {"size": size, "channels": 3}, "layers": layers})
        assert [v[0] for v in frame["rf"]] == [row[4] for row in SEED004]
        assert [v[0] for v in frame["jump"]] == [1, 2, 2, 4, 4, 4, 8]


def test_seed003_n_r_j_start():
    layers = [
        {"name": name, "op": "conv", "kernel": k, "stride": s, "padding": p, "channels": 1}
        for name, k, s, p, *_ in SEED003[1:]
    ]
    frame = analyze({"input": {"size": 5, "channels": 1}, "layers": layers})
    for (name, _, _, _, n, r, j, start), (_, row) in zip(SEED003[1:], frame.iterrows()):
        assert row["name"] == name
        assert row["out_size"] == (n, n)
        assert row["rf"] == (r, r)
        assert row["jump"] == (j, j)
        assert row["center"][0] + 0.5 == start and row["center"][1] + 0.5 == start
