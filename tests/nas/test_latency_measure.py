"""Measured latency tables (issue 25, item 1): the file is always a valid table (written as it goes, kept
after an interruption), --resume keeps what was measured, and with torch (marked, skipped without it)
each block is the module the export builds, timed at its shape, on torch and onnxruntime.

Run the torch part: pytest -q -m torch tests/nas/test_latency_measure.py
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_latency import TINY

from rfsweep.cli.main import main
from rfsweep.nas import latency_measure
from rfsweep.space import build_space, latency


@pytest.fixture()
def fake_timer(monkeypatch):
    """No torch: every block 'takes' 1 ms, and the run stops (as Ctrl-C would) at block ``stop``."""
    calls = {"n": 0, "stop": None}

    def time_model(model, shape, backend, threads, warmup, repeats, cache="warm", clock="wall"):
        calls["n"] += 1
        if calls["stop"] is not None and calls["n"] > calls["stop"]:
            raise KeyboardInterrupt
        return {"median_ms": 1.0, "p10_ms": 0.9, "p90_ms": 1.1, "repeats": repeats}

    monkeypatch.setattr(latency_measure, "time_model", time_model)
    monkeypatch.setattr(latency_measure, "block_model", lambda b: (None, None))
    monkeypatch.setattr(latency_measure, "versions", lambda backend: {"rfsweep": "test"})
    monkeypatch.setattr(latency_measure, "call_overhead", lambda *a: 0.25)
    return calls


def test_interrupted_run_leaves_a_valid_partial_table_and_resume_completes_it(tmp_path, fake_timer):
    space = build_space(dict(TINY), for_search=False)
    out = tmp_path / "lut.json"
    fake_timer["stop"] = 11
    with pytest.raises(KeyboardInterrupt):
        latency_measure.measure(space, str(out), repeats=3)
    table = latency.read_table(str(out))
    assert len(table.entries) == 11
    assert [p.name for p in tmp_path.iterdir()] == ["lut.json"]  # no temporary file left
    fake_timer["stop"], fake_timer["n"] = None, 0
    full = latency_measure.measure(space, str(out), repeats=3, resume=True)
    assert fake_timer["n"] == len(latency.distinct_blocks(space)) - 11  # only the missing ones measured
    assert set(full["entries"]) == {b.key for b in latency.distinct_blocks(space)}
    assert full["machine"]["cores"] >= 1 and full["threads"] == 1 and full["repeats"] == 3
    with pytest.raises(Exception, match="was measured with threads 1, not 2"):
        latency_measure.measure(space, str(out), threads=2, resume=True)


def test_measure_refuses_chains_and_bad_counts_in_one_line(tmp_path):
    res = CliRunner().invoke(main, ["latency", "measure", "--space", str(tmp_path / "none.toml"), "-o", "x.json"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    chain = tmp_path / "chain.toml"
    chain.write_text("depth = 3\n")
    res = CliRunner().invoke(main, ["latency", "measure", "--space", str(chain), "-o", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "applies to spaces of stages" in res.output
    res = CliRunner().invoke(main, ["latency", "measure", "--space", "ofa_mbv3", "--repeats", "0",
                                    "-o", str(tmp_path / "x.json")])  # fmt: skip
    assert res.exit_code == 2 and "repeats" in res.output and not (tmp_path / "x.json").exists()


@pytest.mark.torch
def test_blocks_are_the_exported_modules_and_the_table_predicts_a_sum(tmp_path):
    torch = pytest.importorskip("torch")
    import rfsweep
    import rfsweep.torch

    space = build_space(dict(TINY), for_search=False)
    blocks = latency.distinct_blocks(space)
    # every block module has the parameters of the exported model's module at the same place
    model = rfsweep.torch.build(0, space=dict(TINY))
    exported = [m for m in list(model.features) + list(model.head) if sum(p.numel() for p in m.parameters())]
    for b, m in zip([b for b in blocks[:3]], exported[:3]):
        mine, shape = latency_measure.block_model(b)
        assert sum(p.numel() for p in mine.parameters()) == sum(p.numel() for p in m.parameters())
        assert mine(torch.zeros(shape)).shape[1] == b.block.out_channels(b.cin)
    out = tmp_path / "lut.json"
    res = CliRunner().invoke(main, ["latency", "measure", "--space", _toml(tmp_path), "--repeats", "3",
                                    "--warmup", "1", "-o", str(out), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    raw = json.loads(out.read_text())
    assert raw["backend"] == "torch" and raw["versions"]["torch"] == torch.__version__
    assert len(raw["entries"]) == len(blocks)
    e = next(iter(raw["entries"].values()))
    assert 0 < e["p10_ms"] <= e["median_ms"] <= e["p90_ms"] and e["repeats"] == 3
    rows = rfsweep.search({**TINY, "latency_lut": str(out)}, limit=5)
    for _, row in rows.iterrows():
        idx = space.decode(int(row["arch_id"]))
        from naive import naive_latency_us

        want = naive_latency_us(space, idx, {k: v["median_ms"] for k, v in raw["entries"].items()})
        assert row["latency_ms"] == want / 1000


@pytest.mark.torch
@pytest.mark.onnxruntime
def test_onnxruntime_backend(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "lut.json"
    space = build_space(dict(TINY), for_search=False)
    table = latency_measure.measure(space, str(out), backend="onnxruntime", warmup=1, repeats=2)
    assert table["backend"] == "onnxruntime" and "onnxruntime" in table["versions"]
    assert len(table["entries"]) == len(latency.distinct_blocks(space))


def _toml(tmp_path):
    from test_latency import _toml as write

    return write(tmp_path)


def test_measure_missing_completes_the_table_here_and_the_count_goes_on(tmp_path, fake_timer):
    """A table lacking blocks: one line naming a key, exit 2; with --measure-missing the missing blocks (only
    they) are measured with the table's own mode and added, and the command runs on the completed table."""
    from test_latency import _toml

    space = build_space(dict(TINY), for_search=False)
    lut = tmp_path / "lut.json"
    fake_timer["stop"] = 5
    with pytest.raises(KeyboardInterrupt):
        latency_measure.measure(space, str(lut), repeats=3)
    fake_timer["stop"], fake_timer["n"] = None, 0
    args = ["count", "--space", _toml(tmp_path), "--latency-lut", str(lut), "--max-latency-ms", "100"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "has no entry for block" in res.output and "--measure-missing" in res.output
    assert fake_timer["n"] == 0
    res = CliRunner().invoke(main, [*args, "--measure-missing"])
    missing = len(latency.distinct_blocks(space)) - 5
    assert res.exit_code == 0, res.output
    assert f"note: {missing} block(s) missing from" in res.output and fake_timer["n"] == missing
    table = json.loads(lut.read_text())
    assert set(table["entries"]) == {b.key for b in latency.distinct_blocks(space)} and table["repeats"] == 3
    total = int(res.stdout.strip().splitlines()[0])
    assert total == space.size  # every block 1 ms less the 0.25 ms overhead: all within 100 ms
    fake_timer["n"] = 0
    res = CliRunner().invoke(main, [*args, "--measure-missing"])  # complete: nothing measured, no note
    assert res.exit_code == 0 and fake_timer["n"] == 0 and "note:" not in res.output


def test_measure_missing_refuses_what_it_cannot_complete(tmp_path, fake_timer):
    from test_latency import _toml

    space = build_space(dict(TINY), for_search=False)
    lut = tmp_path / "lut.json"
    latency_measure.measure(space, str(lut), repeats=3)
    raw = json.loads(lut.read_text())
    raw["machine"]["cpu"] = "another cpu"
    lut.write_text(json.dumps(raw))
    base = ["count", "--space", _toml(tmp_path), "--measure-missing"]
    for extra, words in [
        ([], "needs --latency-lut FILE"),
        (["--latency-lut", str(lut)], "was measured on another machine (cpu 'another cpu'"),
        (["--latency-lut", str(tmp_path / "ofa.yaml")], "not a YAML table"),
    ]:
        res = CliRunner().invoke(main, [*base, *extra])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and words in res.output, res.output
