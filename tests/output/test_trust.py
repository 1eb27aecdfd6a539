"""Datasets a reader can trust (issue 22, items 5 and 6): the manifest's checksums and shard ranges,
``--resume`` rebuilding each part that does not check out, the writer's lock, and ``rfsweep verify``.

Each damage (a truncated part, a flipped bit, a part copied from another shard, a missing part, an extra
part, an edited manifest) is made to a small dataset; verify reports it (exit 1) and --resume rebuilds it
(one note a part, naming why), after which the rows are the single file's and verify says sound."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_dataset import CLI, R7, SMALL, _manifest
from test_outputs import _one_line, _run

from dataset_check import assert_same_rows
from rfsweep.output import dataset, verify


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A dataset of 6 parts and the single file of the same search, made once."""
    root = tmp_path_factory.mktemp("trust")
    assert _run(["search", *SMALL, "-o", str(root / "one.parquet")])[0] == 0
    assert _run(["search", *SMALL, "-o", str(root / "ds"), "--shards", "6"])[0] == 0
    return root


@pytest.fixture
def ds(built, tmp_path):
    shutil.copytree(built / "ds", tmp_path / "ds")
    return tmp_path / "ds"


def _verify(path, *args):
    code, out, err = _run(["verify", str(path), *args])
    return code, out.splitlines(), err


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def _damage(ds: Path, kind: str) -> tuple[str, str]:
    """Damage the dataset; returns (the part concerned, the words verify and --resume use for it)."""
    p = ds / "part-00002.parquet"
    if kind == "truncated":
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
        return p.name, "footer"
    if kind == "bit_flip":  # a bit of a data page: the footer and the rows still read
        md = pq.read_metadata(p)
        col = md.row_group(0).column(md.num_columns - 3)
        start = min(o for o in (col.dictionary_page_offset, col.data_page_offset) if o is not None)
        _flip(p, start + col.total_compressed_size // 2)  # inside the chunk, whatever pages it has
        return p.name, "sha256 differs"
    if kind == "copied":  # a valid part of another shard (here with as many rows: only its record tells)
        p.write_bytes((ds / "part-00004.parquet").read_bytes())
        return p.name, "shard 4's rows"
    if kind == "missing":
        p.unlink()
        return p.name, "missing"
    if kind == "extra":
        shutil.copy(ds / "part-00001.parquet", ds / "part-00009.parquet")
        return "part-00009.parquet", "not in the manifest"
    if kind == "manifest_rows":
        m = _manifest(ds)
        m["parts"][2]["rows"] += 1
        (ds / dataset.MANIFEST).write_text(json.dumps(m))
        return p.name, "rows, the manifest"
    if kind == "manifest_checksum":
        m = _manifest(ds)
        m["parts"][2]["checksum"] = "0" * 64
        (ds / dataset.MANIFEST).write_text(json.dumps(m))
        return p.name, "sha256 differs"
    raise AssertionError(kind)


DAMAGES = ["truncated", "bit_flip", "copied", "missing", "extra", "manifest_rows", "manifest_checksum"]


def test_the_manifest_records_each_parts_range_rows_and_checksum(built):
    m = _manifest(built / "ds")
    assert m["format"] == "rfsweep-dataset/2" and m["checksum"] == "sha256"
    edge = 0
    for i, part in enumerate(m["parts"]):
        path = built / "ds" / part["name"]
        assert part["tasks"] == m["plan"]["shards"][i] and part["tasks"][0] == edge
        edge = part["tasks"][1]
        assert part["rows"] == pq.read_metadata(path).num_rows
        assert part["checksum"] == dataset.file_checksum(str(path))
        record = json.loads(pq.read_schema(path).metadata[dataset.PART_META])
        assert record == {"index": i, "tasks": part["tasks"]}
    assert edge == m["plan"]["tasks"]


def test_a_sound_dataset_and_file_verify_with_exit_0(built):
    for path in (built / "ds", built / "one.parquet"):
        code, out, err = _verify(path)
        assert code == 0 and out == [], err
        assert err.strip().splitlines()[-1].startswith("sound: ")
    code, out, _ = _verify(built / "ds", "--json")
    report = json.loads("\n".join(out))
    assert code == 0 and report["sound"] and report["files"] == 6 and report["findings"] == []
    assert report["rows"] == pq.read_metadata(built / "one.parquet").num_rows


@pytest.mark.parametrize("kind", DAMAGES)
def test_verify_reports_each_damage_and_resume_rebuilds_it(built, ds, kind):
    name, words = _damage(ds, kind)
    code, out, err = _verify(ds)
    assert code == 1, (out, err)
    assert any(name in line and words in line for line in out), out
    assert all(line.startswith(f"{ds}") for line in out) and "Traceback" not in err
    code, out, err = _run(["search", *SMALL, "-o", str(ds), "--resume", "--json"])
    assert code == 0 and "Traceback" not in err, err
    notes = [ln for ln in err.splitlines() if ln.startswith("note: part-")]
    if kind == "missing":  # nothing to say: a missing part runs
        assert notes == []
    elif kind == "extra":
        assert notes == [f"note: {name}: not a part of the plan (6 parts); removed"], err
    else:
        assert len(notes) == 1 and notes[0].startswith(f"note: {name}: ") and "written again" in notes[0], err
    assert json.loads(out)["shards_run"] == (0 if kind == "extra" else 1)
    assert assert_same_rows(built / "one.parquet", ds) == json.loads(out)["written"]
    code, out, err = _verify(ds)
    assert code == 0 and out == [], out


def test_resume_rebuilds_a_part_written_after_the_last_checkpoint_only_if_it_reads_whole(built, ds):
    """A part done after the last checkpoint of an interrupted run has no manifest entry: its shard record is
    checked and it is read whole (every page decoded); then it is kept and its checksum recorded."""
    m = _manifest(ds)
    m["complete"] = False
    del m["parts"][3:]  # as if interrupted after the checkpoint that recorded three parts
    (ds / dataset.MANIFEST).write_text(json.dumps(m))
    code, _, err = _verify(ds)
    assert code == 1
    code, out, err = _run(["search", *SMALL, "-o", str(ds), "--resume", "--json"])
    assert code == 0 and json.loads(out)["shards_run"] == 0 and "note: part-" not in err, err
    assert _manifest(ds)["parts"][4]["checksum"] == dataset.file_checksum(str(ds / "part-00004.parquet"))
    assert _verify(ds)[0] == 0


def test_an_old_manifest_is_verified_as_far_as_it_goes_and_its_parts_rebuilt_on_resume(built, ds):
    """rfsweep-dataset/1 (0.4.0): no checksums, no shard record in the parts. verify checks the rest (exit 0,
    with a note); --resume cannot tie a part to its shard, so it rebuilds each, saying why."""
    m = _manifest(ds)
    m["format"] = "rfsweep-dataset/1"
    del m["checksum"]
    for part in m["parts"]:
        del part["checksum"]
        table = pq.read_table(ds / part["name"])
        meta = {k: v for k, v in table.schema.metadata.items() if k != dataset.PART_META}
        spec = json.loads(meta[b"rfsweep.spec"])
        meta[b"rfsweep.spec"] = json.dumps({**spec, "version": "0.4.0"}).encode()  # as 0.4.0 wrote its parts
        pq.write_table(table.replace_schema_metadata(meta), ds / part["name"], write_page_checksum=False)
    (ds / dataset.MANIFEST).write_text(json.dumps(m))
    code, out, err = _verify(ds)
    assert code == 0 and out == [] and "has no checksums" in err, (out, err)
    code, out, err = _run(["search", *SMALL, "-o", str(ds), "--resume", "--json"])
    assert code == 0 and json.loads(out)["shards_run"] == 6, err
    notes = [ln for ln in err.splitlines() if ln.startswith("note: part-")]
    assert len(notes) == 6 and all("nothing ties it to its shard" in n for n in notes), err
    assert _manifest(ds)["format"] == "rfsweep-dataset/2" and _verify(ds)[0] == 0
    assert_same_rows(built / "one.parquet", ds)


def test_verify_usage_errors_are_one_line_with_exit_2(tmp_path, built):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    for path, why in [
        (tmp_path / "nope.parquet", "does not exist"),
        (tmp_path / "notes.txt", "is not a Parquet file"),
        (tmp_path / "empty", "is not an rfsweep dataset"),
    ]:
        code, out, err = _verify(path)
        assert code == 2 and out == [] and why in _one_line(err, "path"), err


def _pyarrow_file(path: Path, checksums: bool) -> None:
    table = pa.table({"a": pa.array(range(1000), pa.int64()), "b": pa.array([None, 2.5] * 500)})
    pq.write_table(table, path, write_page_checksum=checksums, compression="none", use_dictionary=False)


def test_verify_finds_a_flipped_bit_by_page_crc_and_wrong_statistics(tmp_path):
    crc = tmp_path / "crc.parquet"
    _pyarrow_file(crc, checksums=True)
    assert _verify(crc)[0] == 0
    col = pq.read_metadata(crc).row_group(0).column(0)
    _flip(crc, col.data_page_offset + col.total_compressed_size - 3)  # a high byte of a late value of a
    code, out, _ = _verify(crc)
    assert code == 1 and any("column a, page 0: its CRC32 does not match" in line for line in out), out
    # without CRCs the same flip reads back as other values: the footer's max says so
    plain = tmp_path / "plain.parquet"
    _pyarrow_file(plain, checksums=False)
    code, _, err = _verify(plain)
    assert code == 0 and "pages without a CRC" in err and "its writer did not write them" in err
    col = pq.read_metadata(plain).row_group(0).column(0)
    _flip(plain, col.data_page_offset + col.total_compressed_size - 3)
    code, out, _ = _verify(plain)
    assert code == 1 and out == [f"{plain}: row group 0, column a: statistics say min 0, max 999; the data 0, "
                                 f"{pq.read_table(plain).column('a').to_pylist()[-1]}"], out  # fmt: skip


def test_verify_reports_a_truncated_file(tmp_path, built):
    cut = tmp_path / "cut.parquet"
    data = (built / "one.parquet").read_bytes()
    cut.write_bytes(data[: len(data) - 100])
    code, out, _ = _verify(cut)
    assert code == 1 and len(out) == 1 and "footer is missing" in out[0]


def test_missing_crcs_are_damage_in_files_of_an_rfsweep_that_writes_them(tmp_path, monkeypatch):
    path = tmp_path / "f.parquet"
    table = pa.table({"a": [1, 2, 3]}).replace_schema_metadata({b"rfsweep.spec": b'{"version": "9.0.0"}'})
    pq.write_table(table, path, write_page_checksum=False, use_dictionary=False)  # one data page
    code, out, _ = _verify(path)
    assert code == 1 and out == [f"{path}: 1 pages without a CRC (rfsweep 9.0.0 writes both)"], out
    monkeypatch.setattr(verify, "CHECKED_SINCE", (10, 0, 0))
    assert _verify(path)[0] == 0


# ---- the lock ------------------------------------------------------------------------------------------


def _lock(ds: Path, pid: int, host: str | None = None) -> dict:
    ds.mkdir(exist_ok=True)
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": "2026-12-05 07:00:00 UTC", "token": "x"}
    (ds / dataset.LOCK).write_text(json.dumps(owner))
    return owner


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_lock_refuses_a_second_writer_with_one_line_touching_nothing(ds):
    _lock(ds, os.getpid())  # this process is alive
    before = {p.name: p.stat().st_mtime_ns for p in ds.iterdir()}
    code, _, err = _run(["search", *SMALL, "-o", str(ds), "--resume"])
    line = _one_line(err, "output")
    assert code == 2 and f"another rfsweep run (pid {os.getpid()}@{socket.gethostname()}, since 2026-12-05" in line
    assert {p.name: p.stat().st_mtime_ns for p in ds.iterdir()} == before


def test_a_stale_lock_of_this_machine_is_taken_over_with_a_note(built, ds):
    pid = _dead_pid()
    _lock(ds, pid)
    (ds / "part-00003.parquet").unlink()
    code, _, err = _run(["search", *SMALL, "-o", str(ds), "--resume"])
    assert code == 0, err
    assert f"took over the lock of pid {pid}@{socket.gethostname()}" in err and "that process is gone" in err
    assert not (ds / dataset.LOCK).exists()
    assert_same_rows(built / "one.parquet", ds)


def test_a_lock_whose_pid_now_names_another_process_is_stale(ds):
    """The pid of a dead writer reused by another process (here: this one, recorded with another start)."""
    if dataset._process_start(os.getpid()) is None:
        pytest.skip("no /proc here: a reused pid is taken for the owner")
    owner = _lock(ds, os.getppid())
    owner["pid_start"] = dataset._process_start(os.getppid()) + 1
    (ds / dataset.LOCK).write_text(json.dumps(owner))
    code, _, err = _run(["search", *SMALL, "-o", str(ds), "--resume"])
    assert code == 0 and f"took over the lock of pid {os.getppid()}@" in err, err


def test_a_lock_from_another_machine_needs_break_lock(ds):
    _lock(ds, 12345, host="elsewhere.example")
    code, _, err = _run(["search", *SMALL, "-o", str(ds), "--resume"])
    assert code == 2 and "pid 12345@elsewhere.example" in _one_line(err, "output") and "--break-lock" in err
    code, _, err = _run(["search", *SMALL, "-o", str(ds), "--resume", "--break-lock"])
    assert code == 0 and "took over the lock of pid 12345@elsewhere.example" in err, err
    assert not (ds / dataset.LOCK).exists()
    code, _, err = _run(["search", *SMALL, "-o", str(ds.parent / "x.parquet"), "--break-lock"])
    assert code == 2 and "give -o DIR" in _one_line(err, "break_lock")


def test_the_lock_is_released_on_error_and_a_new_directory_removed(tmp_path, monkeypatch):
    from rfsweep import api
    from rfsweep.core.errors import RFSweepError
    from rfsweep.distributed import cluster, sharded

    def fail(*args, **kwargs):
        raise RFSweepError("a worker failed")

    monkeypatch.setattr(sharded, "_run_shards", fail)
    out = tmp_path / "ds"
    with pytest.raises(RFSweepError):
        api.search_to_parquet(str(out), depth="1-2", kernels="1,3", input_size=16)
    assert sorted(p.name for p in out.iterdir()) == [dataset.MANIFEST]  # the run's start: no lock left
    shutil.rmtree(out)
    monkeypatch.setattr(cluster, "pool_for", fail)  # before anything is written: the directory goes too
    with pytest.raises(RFSweepError):
        api.search_to_parquet(str(out), depth="1-2", kernels="1,3", input_size=16)
    assert not out.exists()


@pytest.mark.slow
def test_two_writers_on_one_directory_one_runs_the_other_exits_2(tmp_path):
    """Two real processes: the second exits 2 with one line naming the first (pid@host), touching nothing;
    the first's dataset is complete and sound."""
    args = [*CLI, "search", *R7[:-4], "--rf-min", "221", "--rf-max", "227", "-o", "r7", "--shards", "12", "--quiet"]
    first = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "r7" / dataset.LOCK).exists():
        time.sleep(0.01)
    second = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}@{socket.gethostname()}" in lines[0], second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert _manifest(tmp_path / "r7")["complete"] and not (tmp_path / "r7" / dataset.LOCK).exists()
    assert subprocess.run([*CLI, "verify", "r7"], cwd=tmp_path, capture_output=True).returncode == 0


def test_the_datasets_page_shows_what_verify_and_resume_say(built, ds, monkeypatch):
    """docs/guide/datasets.md: the findings of `rfsweep verify` and the notes of `--resume` on its six-part
    dataset (SMALL, --shards 6) are these commands' own lines; docs/guide/verify.md's summary and note too."""
    import docs_pages

    monkeypatch.chdir(ds.parent)
    shutil.copytree(ds, "ds0")
    (ds / "part-00002.parquet").unlink()
    shutil.copy(ds / "part-00001.parquet", ds / "part-00009.parquet")
    shutil.copy(ds / "part-00003.parquet", ds / "part-00004.parquet")
    code, out, err = _verify("ds")
    shown = docs_pages.recipe("verify-findings").rstrip("\n").splitlines()
    assert code == 1 and out == shown[:-1] and err.strip().splitlines()[-1] == shown[-1], (out, err)
    shutil.rmtree(ds)
    shutil.copytree("ds0", ds)
    _damage(ds, "truncated")
    shutil.copy(ds / "part-00003.parquet", ds / "part-00004.parquet")
    data = bytearray((ds / "part-00005.parquet").read_bytes())
    data[len(data) // 3] ^= 0x10
    (ds / "part-00005.parquet").write_bytes(bytes(data))
    shutil.copy(ds / "part-00001.parquet", ds / "part-00009.parquet")
    code, _, err = _run(["search", *SMALL, "-o", "ds", "--resume"])
    notes = [ln for ln in err.splitlines() if ln.startswith("note: part-")]
    assert code == 0 and notes == docs_pages.recipe("resume-notes").rstrip("\n").splitlines(), err
    assert_same_rows(built / "one.parquet", ds)
    page = docs_pages.page("guide/verify.md")
    code, _, err = _verify("ds")
    assert f"`{err.strip().splitlines()[-1]}`" in " ".join(page.split())
    code, _, err = _verify(built / "one.parquet")  # written by this rfsweep: CRCs and statistics everywhere
    assert code == 0 and err.strip().splitlines() == ["sound: 1 file, 64,780 rows, 1 row group, 137 pages checked"], err


def _paths(value, prefix=()):
    """Every key path of a JSON value (dict keys and list indices)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield from _paths(v, (*prefix, i))


@pytest.mark.slow
def test_any_edit_of_the_manifest_is_verified_and_resumed_without_a_traceback(built, tmp_path):
    """An edited manifest (a value replaced by another type or number, a key removed): verify ends in 0 or 1,
    --resume in 0 (the rows then the single file's, and verify sound) or 2 with one line; never an exception."""
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    manifest = _manifest(built / "ds")
    paths = [p for p in _paths(manifest) if p and p[0] not in ("run", "cluster")]
    counter = iter(range(10**6))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @example(path=("spec",), value=-1)  # found by CI at 40a01be: `--resume` raised TypeError on a non-dict spec
    @example(path=("spec",), value="x")
    @given(path=st.sampled_from(paths), value=st.sampled_from([None, "x", -1, 0, 7, 10**30, [], {}, True, "del"]))
    def check(path, value):
        ds = tmp_path / f"ds{next(counter)}"
        shutil.copytree(built / "ds", ds)
        m = _manifest(ds)
        parent = m
        for key in path[:-1]:
            parent = parent[key]
        if value == "del" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        (ds / dataset.MANIFEST).write_text(json.dumps(m))
        code, out, err = _verify(ds)
        assert code in (0, 1, 2) and "Traceback" not in err, (path, value, out, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err
        code, _, err = _run(["search", *SMALL, "-o", str(ds), "--resume"])
        assert code in (0, 2), (path, value, err)
        if code == 2:
            assert len([ln for ln in err.splitlines() if not ln.startswith("note: ")]) == 1, err
        else:
            assert_same_rows(built / "one.parquet", ds)
            assert _verify(ds)[0] == 0, (path, value)
        shutil.rmtree(ds)

    check()


@pytest.mark.slow
def test_any_flipped_byte_of_a_part_is_found_and_rebuilt(built, tmp_path):
    """A byte flipped anywhere in a part (header, pages, footer): verify exits 1 naming the part, never with
    an exception, and --resume rebuilds it; the same byte flipped in a lone file ends in 0 or 1 (a flip in
    a page without CRC or statistics reads back as other values: only a dataset's checksum finds it)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    size = (built / "ds" / "part-00003.parquet").stat().st_size
    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(at=st.integers(0, size - 1), bit=st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]))
    def check(at, bit):
        ds = tmp_path / f"ds{next(counter)}"
        shutil.copytree(built / "ds", ds)
        part = ds / "part-00003.parquet"
        data = bytearray(part.read_bytes())
        data[at] ^= bit
        part.write_bytes(bytes(data))
        code, out, err = _verify(ds)
        assert code == 1 and any("part-00003.parquet" in line for line in out), (at, bit, out, err)
        code, out, err = _verify(part)
        assert code in (0, 1, 2) and "Traceback" not in err, (at, bit, err)
        code, _, err = _run(["search", *SMALL, "-o", str(ds), "--resume"])
        assert code == 0 and "note: part-00003.parquet: " in err, (at, bit, err)
        assert_same_rows(built / "one.parquet", ds)
        shutil.rmtree(ds)

    check()


@pytest.mark.parametrize("columns", ["wide", "compact", "lists"])
def test_files_with_crcs_and_statistics_everywhere_verify_sound_in_strict_mode(tmp_path, columns):
    """rfsweep's rows written as a writer with page CRCs and statistics writes them (pyarrow, small row groups
    and pages), marked as written by an rfsweep from CHECKED_SINCE on: every page's CRC and every chunk's
    statistics are checked, nothing is left unchecked (chunks of nulls only included: wide's op_6 ...)."""
    from rfsweep import api

    src = tmp_path / "src.parquet"
    api.search_to_parquet(str(src), depth="1-4", kernels="1,3,5", strides="1,2", channels="4,8", input_size=32,
                          columns=columns)  # fmt: skip
    table = pq.read_table(src)
    spec = json.loads(table.schema.metadata[b"rfsweep.spec"])
    spec["version"] = ".".join(map(str, verify.CHECKED_SINCE))
    table = table.replace_schema_metadata({b"rfsweep.spec": json.dumps(spec).encode()})
    out = tmp_path / "f.parquet"
    pq.write_table(table, out, write_page_checksum=True, row_group_size=5000, data_page_size=8192)
    code, lines, err = _verify(out)
    assert code == 0 and lines == [] and "note:" not in err, (lines, err)
    report = verify.check(str(out))
    assert report.rows == table.num_rows and report.pages > report.row_groups * table.num_columns


def test_verify_takes_urls_pyarrow_opens(built, ds):
    """A dataset or a file named by a file:// URL goes through pyarrow's filesystems (as s3:// would)."""
    code, out, err = _verify(f"file://{ds}")
    assert code == 0 and out == [], err
    assert _verify(f"file://{built}/one.parquet")[0] == 0
    _damage(ds, "copied")
    code, out, _ = _verify(f"file://{ds}")
    a, b = _manifest(ds)["plan"]["shards"][4]
    want = f"file://{ds}: part-00002.parquet: it holds shard 4's rows (tasks {a}-{b}), not shard 2's"
    assert code == 1 and out == [want], out
    for url, why in [(f"file://{ds}/nope", "does not exist"), ("zz://x/y", "not a filesystem URL")]:
        code, _, err = _verify(url)
        assert code == 2 and why in _one_line(err, "path"), err
