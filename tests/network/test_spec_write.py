"""Specs written out: the TOML emitter reads back equal through tomllib, JSON has one layer a line, files are
written atomically."""

from __future__ import annotations

import json
import math
import os
import tomllib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import rfsweep
from rfsweep import SpecError
from rfsweep.network.spec_io import to_json, to_toml, write_spec
from rfsweep.network.zoo import model_data

scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
layer = st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=5)
spec_like = st.fixed_dictionaries(
    {
        "name": st.text(max_size=10),
        "input": st.fixed_dictionaries({"size": st.integers(1, 999), "channels": st.integers(1, 9)}),
    },
    optional={"source": st.text(max_size=30), "layers": st.lists(layer, min_size=1, max_size=4)},
)


@settings(max_examples=150, deadline=None)
@given(spec_like)
@example({"name": "", "input": {"size": 1, "channels": 1}, "layers": [{"0\n": []}]})  # a key ending in a newline
def test_toml_reads_back_equal(spec):
    assert tomllib.loads(to_toml(spec)) == spec


def test_toml_escapes_and_special_floats():
    spec = {
        "name": 'a "quoted"\\ name\twith\ncontrol \x01 and é',
        "weird key": [1.5, -0.0, float("inf"), -float("inf"), 1e-300],
        "nested": {"a.b": {"c": [True, False]}},
    }
    back = tomllib.loads(to_toml(spec))
    assert back == spec
    assert math.isnan(tomllib.loads(to_toml({"x": float("nan")}))["x"])


def test_toml_leaves_none_out_and_refuses_it_in_arrays():
    assert tomllib.loads(to_toml({"input": {"size": None, "channels": 3}, "x": None})) == {"input": {"channels": 3}}
    with pytest.raises(SpecError, match="TOML has no null inside an array"):
        to_toml({"a": [1, None]})


@pytest.mark.parametrize("name", ["resnet50", "alexnet_v2", "vgg16"])
def test_zoo_specs_through_toml_and_json_analyse_the_same(name, tmp_path):
    data = model_data(name)
    assert tomllib.loads(to_toml(data)) == data
    assert json.loads(to_json(data)) == data
    layer_lines = [line.rstrip(",") for line in to_json(data).splitlines() if line.startswith("    {")]
    assert [json.loads(line) for line in layer_lines] == data["layers"]  # one layer a line
    path = tmp_path / f"{name}.toml"
    write_spec(data, str(path))
    assert rfsweep.analyze(str(path)).equals(rfsweep.analyze(name))


def test_write_spec_is_atomic_and_checks_its_target(tmp_path):
    data = model_data("resnet18")
    target = tmp_path / "net.json"
    write_spec(data, str(target))
    assert json.loads(target.read_text()) == data
    assert [p.name for p in tmp_path.iterdir()] == ["net.json"]  # no temporary file left behind
    with pytest.raises(SpecError, match="must end in .json or .toml"):
        write_spec(data, str(tmp_path / "net.yaml"))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    with pytest.raises(SpecError, match="is the model being imported"):
        write_spec(data, str(model), protect=str(model))
    link = tmp_path / "alias.json"
    os.symlink(model, link)
    with pytest.raises(SpecError, match="is the model being imported"):
        write_spec(data, str(link), protect=str(model))
    with pytest.raises(SpecError, match="its directory does not exist"):
        write_spec(data, str(tmp_path / "missing" / "net.json"))


def test_write_spec_follows_a_symlink_and_keeps_it(tmp_path):
    """`rfsweep import -o link.json` writes the link's target; the link stays (was: replaced by a file)."""
    data = {"input": {"size": 32, "channels": 3}, "layers": [{"name": "c", "op": "conv", "kernel": 3}]}
    target = tmp_path / "real.json"
    link = tmp_path / "link.json"
    os.symlink(target, link)
    write_spec(data, str(link))
    assert os.path.islink(link) and json.loads(target.read_text())["layers"][0]["name"] == "c"
    assert sorted(os.listdir(tmp_path)) == ["link.json", "real.json"]
