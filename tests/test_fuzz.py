"""Hostile input: every flag, TOML key and file path of the sweep commands (and the files the other
commands read) gets exit code 0 or 2 and, on 2, one line naming the field and the value; never a
traceback (CliRunner(catch_exceptions=False) lets any exception fail the test)."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfsweep.cli.main import main
from rfsweep.space.settings import SETTINGS

VALUE_FLAGS = [s.flag for s in SETTINGS if s.kind == "value" and not s.choices]
NASTY = [
    "", " ", "-", "-1", "0", "1e30", "-1e30", "inf", "-inf", "nan", "1e-300", "0x10", "1_000", "1,2", "1-2",
    "1:2", "2@8", "1/3", "1/0", "１２", "٣", "3.5", "2" * 40, "[1, 2]", "{}", "\x00", "é", "1,,2", ",", "@",
    "1@", "@8", "1:", ":2", "2-1", "32@8,64@8", "9" * 400,
]  # fmt: skip
values = st.one_of(
    st.sampled_from(NASTY),
    st.integers(-(10**40), 10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)
BASE = ["--depth", "2", "--ops", "conv", "--kernels", "1,3", "--strides", "1,2", "--input-size", "32"]


def _check(res):
    assert res.exit_code in (0, 2), (res.exit_code, res.output)
    if res.exit_code == 2:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith("error: ") and ("field '" in lines[0] or "(see '" in lines[0]), lines[0]
    assert "Traceback" not in res.output


def _invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(VALUE_FLAGS + ["--threads", "--limit"]), value=values)
def test_any_flag_value_gives_a_result_or_one_line(flag, value):
    command = "search" if flag == "--limit" else "count"
    args = [command, *BASE, flag, value] + (["--sort", "params"] if command == "search" else [])
    _check(_invoke(args))


@given(flags=st.lists(st.tuples(st.sampled_from(VALUE_FLAGS), values), min_size=2, max_size=4))
def test_several_bad_flags_together(flags):
    args = ["search", *BASE, "--limit", "3"]
    for flag, value in flags:
        args += [flag, value]
    _check(_invoke(args))


toml_values = st.recursive(
    st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
        st.booleans(),
        st.sampled_from([10**30, "1e30", "inf", "2-8", "32@8", "1:4", [], {}]),
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _toml(data: dict) -> str:
    """A tiny TOML writer for the fuzz (inline tables and arrays only)."""

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v) if -(2**63) <= v < 2**63 else json.dumps(str(v))
        if isinstance(v, float):
            return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return "{" + ", ".join(f"{json.dumps(k)} = {val(x)}" for k, x in v.items()) + "}"

    return "".join(f"{json.dumps(k)} = {val(v)}\n" for k, v in data.items())


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from([s.name for s in SETTINGS] + ["bogus", ""]),
    value=toml_values,
    positions=st.lists(
        st.dictionaries(
            st.sampled_from(["index", "ops", "kernels", "strides", "channels", "pool_kernels", "x"]),
            toml_values,
            max_size=3,
        ),
        max_size=2,
    ),
)
def test_any_toml_key_gives_a_result_or_one_line(tmp_path_factory, key, value, positions):
    path = tmp_path_factory.mktemp("space") / "s.toml"
    data = {"depth": 2, "ops": ["conv"], "kernels": [1, 3], "input_size": 32, key: value}
    if positions:
        data["positions"] = positions
    path.write_text(_toml(data), encoding="utf-8")
    _check(_invoke(["count", "--space", str(path)]))
    _check(_invoke(["search", "--space", str(path), "--limit", "2", "--sort", "params"]))


HOSTILE = {
    "binary": bytes(range(256)) * 4,
    "not-utf8": b"depth = 2\n" + b"\xff\xfe\xfa",
    "empty": b"",
    "deep-toml": b"a = " + b"[" * 5000 + b"]" * 5000,
    "deep-json": b"[" * 100000 + b"]" * 100000,
    "deep-json-object": b'{"a":' * 50000 + b"1" + b"}" * 50000,
    "nul": b"\x00" * 100,
    "json-list": b"[1, 2, 3]",
    "toml-string-as-space": b'space = "x"',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("suffix", [".toml", ".json", ".parquet", ".csv", ""])
def test_hostile_files_everywhere(tmp_path, name, suffix):
    path = tmp_path / f"f{suffix}"
    path.write_bytes(HOSTILE[name])
    for args in (
        ["count", "--space", str(path)],
        ["analyze", str(path)],
        ["show", str(path), "1"],
        ["anchors", "resnet50", "--taps", "layer4.2.relu_2", "--boxes", str(path)],
    ):
        _check(_invoke(args))


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_missing_and_directory_paths(tmp_path, what):
    path = tmp_path / "thing.toml"
    if what == "directory":
        path.mkdir()
    for args in (
        ["count", "--space", str(path)],
        ["analyze", str(path)],
        ["show", str(path), "1"],
        ["anchors", "resnet50", "--taps", "layer4.2.relu_2", "--boxes", str(path)],
    ):
        res = _invoke(args)
        assert res.exit_code == 2, (args, res.output)
        _check(res)


@pytest.mark.parametrize(
    "meta",
    [b"{", b"[]", b'{"space": 5}', b'{"space": {"depth": "x"}}', b'{"space": {"kernels": [0]}}', b"\xff"],
)
def test_show_with_corrupt_metadata(tmp_path, meta):
    path = tmp_path / "c.parquet"
    table = pa.table({"arch_id": pa.array([1, 2], pa.int64())})
    pq.write_table(table.replace_schema_metadata({b"rfsweep.spec": meta}), path)
    res = _invoke(["show", str(path), "1"])
    assert res.exit_code == 2
    _check(res)


@pytest.mark.parametrize("args", [["--seed", "-1"], ["--seed", "1" + "0" * 30], ["--evolve", "-3"]])
def test_anchor_numbers_checked(args):
    res = _invoke(["anchors", "resnet50", "--taps", "layer4.2.relu_2", "--boxes", os.devnull, *args])
    assert res.exit_code == 2
    _check(res)


def test_devices_and_oversized_inputs_are_refused_at_once(tmp_path, monkeypatch):
    """Spec, space and box files must be regular files (or pipes) under a size limit: /dev/zero never ends,
    /dev/urandom neither; both are refused in one line before anything is read, and a file over the limit
    (RFSWEEP_MAX_INPUT_BYTES lowers it here) likewise."""
    import time

    from click.testing import CliRunner

    from rfsweep.cli.main import main

    for args in (
        ["count", "--space", "/dev/zero"],
        ["search", "--space", "/dev/urandom", "--limit", "1"],
        ["analyze", "/dev/zero"],
        ["anchor-search", "--boxes", "/dev/zero", "--boxes-format", "coco"],
    ):
        t0 = time.perf_counter()
        res = CliRunner().invoke(main, args)
        assert time.perf_counter() - t0 < 1.0
        assert res.exit_code == 2, (args, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "/dev/" in lines[0], (args, res.stderr)
    space = tmp_path / "s.toml"
    space.write_text("depth = 3\n" + "# padding\n" * 100)
    monkeypatch.setenv("RFSWEEP_MAX_INPUT_BYTES", "100")
    res = CliRunner().invoke(main, ["count", "--space", str(space)])
    assert (
        res.exit_code == 2
        and "larger than the 100-byte limit" in res.stderr
        and "RFSWEEP_MAX_INPUT_BYTES" in res.stderr
    )
