"""Datasets on one machine (rfsweep/output/dataset.py, rfsweep/distributed/sharded.py): ``-o DIR`` writes parts
and a manifest whose rows, read back, are exactly the single file's, with every selection; the directory rule; --resume.
The same runs on a Dask cluster are in test_dask.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_outputs import _one_line, _run
from test_stage_select import SPACES as STAGES
from test_sweep import SPACES

import docs_pages
from dataset_check import SELECTIONS, STAGE_SELECTIONS, assert_same_rows
from rfsweep import api as sweep
from rfsweep.core.errors import RFSweepError
from rfsweep.core.files import is_dataset
from rfsweep.engine import run as engine
from rfsweep.output import dataset
from rfsweep.output.batches import selected_batches
from rfsweep.space import ids

SMALL = ["--depth", "1-4", "--kernels", "1,3,5", "--strides", "1,2", "--channels", "4,8", "--input-size", "32"]
SMALL += ["--rf-min", "5", "--rf-max", "40"]
CLI = [sys.executable, "-c", "from rfsweep.cli.main import run; run()"]  # the console script
R7 = ["--depth", "7", "--ops", "conv", "--kernels", "1,3,5,7", "--strides", "1,2", "--dilations", "1,2,3"]
R7 += ["--channels", "32", "--rf-min", "200", "--rf-max", "250"]


def _manifest(directory) -> dict:
    return json.loads((Path(directory) / dataset.MANIFEST).read_text())


# "conv_pools_same" is counted by the programme's table, "budgets" (params and MACs budgets) by walking
@pytest.mark.parametrize("name", ["conv_pools_same", "budgets"])
@pytest.mark.parametrize("selection", sorted(SELECTIONS))
def test_dataset_rows_equal_the_single_file(tmp_path, name, selection):
    settings = {**SPACES[name], **SELECTIONS[selection]}
    single = tmp_path / "one.parquet"
    one = sweep.search_to_parquet(str(single), **settings)
    out = tmp_path / "ds"
    stats = sweep.search_to_parquet(str(out), shards=5, **settings)
    rows = assert_same_rows(single, out)
    assert stats.extra["written"] == rows == one.extra["written"]
    names = sorted(p.name for p in out.iterdir())
    parts = [n for n in names if n.startswith("part-")]
    assert names == [dataset.MANIFEST, *parts] and parts == sorted(parts)
    m = _manifest(out)
    assert m["complete"] and m["totals"]["rows"] == rows and [p["name"] for p in m["parts"]] == parts
    assert sum(p["rows"] for p in m["parts"]) == rows
    # every part carries the single file's rfsweep.spec metadata (rfsweep show works on a part)
    spec = json.loads(pq.read_schema(out / parts[0]).metadata[b"rfsweep.spec"])
    want = json.loads(pq.read_schema(single).metadata[b"rfsweep.spec"])
    assert spec == want
    if "limit" not in settings and "sample" not in settings:
        assert (stats.space_size, stats.kept, stats.covered) == (one.space_size, one.kept, one.covered)


@pytest.mark.parametrize("selection", sorted(STAGE_SELECTIONS))
def test_dataset_of_a_space_of_stages_equals_the_single_file(tmp_path, selection):
    space = json.loads(json.dumps(STAGES["mini_ofa"]))
    settings = STAGE_SELECTIONS[selection]
    single = tmp_path / "one.parquet"
    one = sweep.search_to_parquet(str(single), space, **settings)
    out = tmp_path / "ds"
    whole = selection in ("sort", "pareto", "sample")  # one job: the dynamic programmes answer for the space
    stats = sweep.search_to_parquet(str(out), space, shards=None if whole else 3, **settings)
    assert assert_same_rows(single, out) == stats.extra["written"] == one.extra["written"] > 0
    m = _manifest(out)
    assert m["complete"] and m["spec"]["columns"] == "lists"
    assert len(m["plan"]["shards"]) == (1 if whole else 3) and (m["plan"]["kind"] == "whole") == whole
    if whole:
        code, _, err = _run(["search", "--space", str(_toml(tmp_path)), "-o", str(tmp_path / "x"), "--shards", "3",
                             *_flags(settings)])  # fmt: skip
        assert code == 2 and "one job" in _one_line(err, "shards") and not (tmp_path / "x").exists()


def test_a_shard_of_a_space_of_stages_walks_its_own_range():
    """The dynamic programmes answer for the whole space: given a shard's task range, a selection walks that
    range (as a chain's does), so shards merged give the whole space's best k, not k copies of it."""
    from rfsweep.distributed import shards
    from rfsweep.space import build_space

    space = build_space(json.loads(json.dumps(STAGES["mini_ofa"])))
    sel = {"limit": 40, "sort": "macs"}
    q, tasks = shards.first_cut(space, 4)
    results = []
    for i, rng in enumerate(shards.even_ranges(tasks, 3)):
        batches = [b.copy() for b in selected_batches(space, **sel, q=q, task_range=rng)]
        batch = engine.Batch.concat(batches) if batches else engine.Batch.empty(space)
        results.append({"index": i, "batch": (batch.out, batch.choice)})
    merged = shards.merge(space, sel, results)
    whole = engine.Batch.concat(list(selected_batches(space, **sel)))
    assert len(merged) == len(whole) == 40
    assert ids.python_ids(ids.arrow_ids(merged.out, merged.choice, space)) == ids.python_ids(
        ids.arrow_ids(whole.out, whole.choice, space)
    )


def _toml(tmp_path):
    from rfsweep.network.spec_io import to_toml

    path = tmp_path / "mini_ofa.toml"
    path.write_text(to_toml(STAGES["mini_ofa"]))
    return path


def _flags(settings: dict) -> list[str]:
    return [x for k, v in settings.items() for x in (f"--{k}", str(v))]


@pytest.mark.slow
def test_datasets_of_ofa_mbv3_equal_the_single_file(tmp_path):
    """The shipped Once-for-All space (2.2e19 candidates): the best 10 by MACs (dynamic programming, one
    job) and the first 1,000 with rf >= 1651 (the walk; arch_ids past int64, decimal128)."""
    for i, args in enumerate(
        [["--max-macs", "300e6", "--sort", "macs", "--limit", "10"], ["--rf-min", "1651", "--limit", "1000"]]
    ):
        single, out = tmp_path / f"{i}.parquet", tmp_path / f"ds{i}"
        for target in (single, out):
            code, _, err = _run(["search", "--space", "ofa_mbv3", *args, "-o", str(target), "--quiet"])
            assert code == 0, err
        assert assert_same_rows(single, out) == int(args[-1])
    assert str(pq.read_schema(out / "part-00000.parquet").field("arch_id").type) == "decimal128(38, 0)"


def test_one_part_by_default_and_readers_take_parts_in_order(tmp_path):
    single = tmp_path / "one.parquet"
    sweep.search_to_parquet(str(single), **SPACES["conv_pools_same"])
    out = tmp_path / "ds"
    sweep.search_to_parquet(str(out), **SPACES["conv_pools_same"])
    assert sorted(p.name for p in out.iterdir()) == ["_rfsweep.json", "part-00000.parquet"]
    many = tmp_path / "many"
    sweep.search_to_parquet(str(many), shards=7, **SPACES["conv_pools_same"])
    # a stray temporary file (a writer killed mid-part) is ignored by every reader, as the manifest is
    (many / ".rfsweep-0123456789ab.parquet.tmp").write_bytes(b"PAR1 half a part")
    want = pq.read_table(single).column("arch_id").to_pylist()
    import pandas as pd
    import pyarrow.dataset as ds

    assert pd.read_parquet(many)["arch_id"].tolist() == want
    assert ds.dataset(many, format="parquet").to_table().column("arch_id").to_pylist() == want
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(f"SELECT arch_id FROM read_parquet('{many}/*.parquet')").fetchall()
    assert [r[0] for r in got] == want


def test_readme_read_dataset_recipe_runs(tmp_path, monkeypatch):

    pytest.importorskip("duckdb")
    recipe = docs_pages.recipe("read-dataset")
    monkeypatch.chdir(tmp_path)
    sweep.search_to_parquet("r7", shards=3, **SPACES["budgets"])
    sweep.search_to_parquet("r7.parquet", **SPACES["budgets"])
    scope: dict = {}
    exec(recipe, scope)
    assert scope["df"]["arch_id"].tolist() == pq.read_table("r7.parquet").column("arch_id").to_pylist()
    assert scope["table"].num_rows == len(scope["df"]) and len(scope["top"]) == 5


def test_which_outputs_are_datasets(tmp_path):
    (tmp_path / "d.parquet").mkdir()
    (tmp_path / "f").write_text("x")
    assert is_dataset(str(tmp_path / "run")) and is_dataset(str(tmp_path / "run") + "/")
    assert is_dataset(str(tmp_path / "d.parquet")) and is_dataset("s3://bucket/run") and is_dataset("file:///x/y")
    assert not is_dataset(str(tmp_path / "r.parquet")) and not is_dataset(str(tmp_path / "r.csv"))
    assert not is_dataset(str(tmp_path / "f")) and not is_dataset("/dev/null") and not is_dataset("-")


def test_directory_rule(tmp_path):
    # a directory holding anything else is refused, untouched
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = _run(["search", *SMALL, "-o", str(other)])
    assert code == 2 and "not an rfsweep dataset (notes.txt)" in _one_line(err, "output")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    # parts without a manifest are not a dataset rfsweep knows
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "part-00000.parquet").write_text("x")
    code, _, err = _run(["search", *SMALL, "-o", str(orphan)])
    assert code == 2 and "no _rfsweep.json" in _one_line(err, "output")
    (orphan / "_rfsweep.json").write_text("{not json")
    code, _, err = _run(["search", *SMALL, "-o", str(orphan)])
    assert code == 2 and "not an rfsweep dataset manifest" in _one_line(err, "output")
    # a previous dataset is replaced, as a file would be: its extra parts go
    ds = tmp_path / "ds"
    assert _run(["search", *SMALL, "-o", str(ds), "--shards", "6"])[0] == 0
    assert len(list(ds.glob("part-*.parquet"))) == 6
    code, _, err = _run(["search", *SMALL, "-o", str(ds) + "/", "--shards", "2", "--limit", "10"])
    assert code == 0, err
    assert pq.read_table(ds).num_rows == 10 and _manifest(ds)["spec"]["limit"] == 10
    # a missing parent, a file in the way, a .parquet name with cluster flags, --resume without a dataset name
    code, _, err = _run(["search", *SMALL, "-o", str(tmp_path / "no" / "ds")])
    assert code == 2 and "parent directory does not exist" in _one_line(err, "output")
    code, _, err = _run(["search", *SMALL, "-o", str(tmp_path / "x.parquet"), "--resume"])
    assert code == 2 and "give -o DIR" in _one_line(err, "resume")
    code, _, err = _run(["search", *SMALL, "--cluster", "local:2"])
    assert code == 2 and "give -o DIR" in _one_line(err, "cluster")
    code, _, err = _run(["search", *SMALL, "-o", str(tmp_path / "x.csv")])
    assert code == 2 and ".parquet" in _one_line(err, "output")


def test_resume_runs_only_the_missing_parts(tmp_path):
    single = tmp_path / "one.parquet"
    assert _run(["search", *SMALL, "-o", str(single)])[0] == 0
    ds = tmp_path / "ds"
    assert _run(["search", *SMALL, "-o", str(ds), "--shards", "6"])[0] == 0
    before = {p.name: p.stat().st_ino for p in ds.glob("part-*.parquet")}
    (ds / "part-00002.parquet").unlink()
    (ds / "part-00005.parquet").unlink()
    code, out, err = _run(["search", *SMALL, "-o", str(ds), "--resume", "--json"])
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["shards_run"], summary["shards_reused"], summary["parts"]) == (2, 4, 6)
    after = {p.name: p.stat().st_ino for p in ds.glob("part-*.parquet")}
    assert sorted(after) == sorted(before)
    assert all(after[n] == before[n] for n in before if n not in ("part-00002.parquet", "part-00005.parquet"))
    assert assert_same_rows(single, ds) == summary["written"] == summary["kept"]
    m = _manifest(ds)
    assert m["complete"] and m["run"]["shards_reused"] == 4
    # the summary adds up as on one run: every candidate evaluated or pruned, the reused parts included
    assert summary["evaluated"] + summary["pruned"] == summary["space_size"] and summary["not_walked"] == 0
    # a complete dataset resumed runs nothing
    code, out, _ = _run(["search", *SMALL, "-o", str(ds), "--resume", "--json"])
    assert code == 0 and json.loads(out)["shards_run"] == 0
    # other settings are refused, naming the difference; nothing is touched
    code, _, err = _run(["search", *SMALL, "--kernels", "1,3", "-o", str(ds), "--resume"])
    line = _one_line(err, "resume")
    assert code == 2 and 'kernels: "1,3,5" there, "1,3" here' in line
    assert {p.name: p.stat().st_ino for p in ds.glob("part-*.parquet")} == after


def test_resume_keeps_the_sample_seed_it_drew(tmp_path):
    ds = tmp_path / "ds"
    settings = {**SPACES["conv_pools_same"], "sample": 200}
    sweep.search_to_parquet(str(ds), shards=4, **settings)
    seed = _manifest(ds)["spec"]["seed"]
    assert isinstance(seed, int)
    want = pq.read_table(ds).column("arch_id").to_pylist()
    (ds / "part-00001.parquet").unlink()
    sweep.search_to_parquet(str(ds), resume=True, **settings)
    assert pq.read_table(ds).column("arch_id").to_pylist() == want
    single = tmp_path / "one.parquet"
    sweep.search_to_parquet(str(single), **settings, seed=seed)  # the recorded seed draws the same sample
    assert_same_rows(single, ds)


def test_file_url_goes_through_pyarrow_filesystems(tmp_path):
    single = tmp_path / "one.parquet"
    sweep.search_to_parquet(str(single), **SPACES["head"])
    out = tmp_path / "remote"
    stats = sweep.search_to_parquet(f"file://{out}", shards=3, **SPACES["head"])
    assert stats.extra["parts"] == 3
    assert_same_rows(single, out)
    assert _manifest(out)["complete"]


def test_cluster_flags_are_checked_with_one_line(tmp_path, monkeypatch):
    ds = str(tmp_path / "ds")
    for args, field, why in [
        (["--cluster", "local:x"], "cluster", "must be local:N"),
        (["--cluster", "local:0"], "cluster", "must be local:N"),
        (["--cluster", "local:2", "--scheduler", "tcp://h:1"], "scheduler", "not both"),
        (["--shards", "0"], "shards", "integer >= 1"),
    ]:
        code, _, err = _run(["search", *SMALL, "-o", ds, *args])
        assert code == 2 and why in _one_line(err, field), args
    monkeypatch.setitem(sys.modules, "distributed", None)  # as without the [dask] extra
    for command in (["search", *SMALL, "-o", ds], ["count", *SMALL, "--method", "enumerate"]):
        code, _, err = _run([*command, "--cluster", "local:2"])
        assert code == 2 and "pip install 'rfsweep[dask]'" in _one_line(err, "cluster")
        code, _, err = _run([*command, "--scheduler", "tcp://127.0.0.1:8786"])
        assert code == 2 and "pip install 'rfsweep[dask]'" in _one_line(err, "scheduler")
    assert not os.path.exists(ds)


def test_python_dataset_keywords_with_a_file_name_are_one_line(tmp_path):
    out = tmp_path / "r.parquet"
    with pytest.raises(RFSweepError) as info:
        sweep.search_to_parquet(str(out), shards=2, **SPACES["budgets"])
    text = str(info.value)
    assert "field 'output'" in text and "r.parquet" in text and "\n" not in text
    assert not out.exists()


@pytest.mark.slow
def test_import_rfsweep_and_a_search_without_a_cluster_never_import_dask(tmp_path):
    code = (
        "import sys, rfsweep, rfsweep.cli.main; from rfsweep import api as sweep; "
        f"sweep.search_to_parquet({str(tmp_path / 'ds')!r}, depth=2, kernels=[1, 3], input_size=16); "
        f"sweep.search_to_parquet({str(tmp_path / 'f.parquet')!r}, depth=2, kernels=[1, 3], input_size=16); "
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    res = subprocess.run([*CLI, "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "search" in res.stdout


def _interrupt(args, cwd, wait_for, signum=signal.SIGINT, delay=0.3, group=False):
    """Run the CLI, wait until a part is being written, signal it (its whole process group, as a terminal's
    Ctrl-C, with ``group``); returns (exit code, stderr, seconds from the signal to the exit)."""
    proc = subprocess.Popen(CLI + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not list(Path(cwd).glob(wait_for)):
        time.sleep(0.02)
    time.sleep(delay)
    assert proc.poll() is None, "the run ended before it could be signalled"
    sent = time.monotonic()
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr, time.monotonic() - sent


def assert_interrupted_cleanly(directory, code, stderr, took):
    """Exit 130 and one line; no temporary part, no lock; the manifest whole (valid JSON) and marked incomplete;
    every part there complete (as many rows as the plan counted for its shard)."""
    assert code == 130, stderr
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith("note: ")]
    assert lines == ["interrupted"], stderr
    assert took < 5.0
    names = sorted(p.name for p in Path(directory).iterdir())
    assert not [n for n in names if n.startswith(".")] and dataset.LOCK not in names, names
    m = _manifest(directory)
    assert m["complete"] is False
    survivors = m["plan"]["survivors"]
    for name in names:
        if name.startswith("part-"):
            assert pq.read_metadata(Path(directory) / name).num_rows == survivors[int(name[5:10])]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 1.0])
def test_ctrl_c_leaves_no_partial_part_and_no_half_manifest(tmp_path, delay):
    args = ["search", *R7, "-o", "r7", "--shards", "40"]
    code, stderr, took = _interrupt(args, tmp_path, "r7/.rfsweep-*.parquet.tmp", delay=delay)
    assert_interrupted_cleanly(tmp_path / "r7", code, stderr, took)


def test_resume_rebuilds_a_truncated_or_foreign_part(tmp_path):
    """issue 23: --resume trusted any part present, and a truncated one gave a traceback. A part whose footer
    cannot be read, or whose rows differ from the manifest's, is written again; the rows are the single file's."""
    single = tmp_path / "one.parquet"
    assert _run(["search", *SMALL, "-o", str(single)])[0] == 0
    ds = tmp_path / "ds"
    assert _run(["search", *SMALL, "-o", str(ds), "--shards", "6"])[0] == 0
    part = ds / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # truncated
    (ds / "part-00004.parquet").write_bytes((ds / "part-00003.parquet").read_bytes())  # another shard's rows
    code, out, err = _run(["search", *SMALL, "-o", str(ds), "--resume", "--json"])
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["shards_run"] >= 1
    assert assert_same_rows(single, ds) == json.loads(out)["written"]
