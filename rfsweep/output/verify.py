"""Checking what rfsweep wrote: a Parquet file, or a dataset directory (its manifest, then each part).

A file (:func:`check_file`):

* the footer reads, and its row groups add up to its rows;
* every page's CRC32 (the Parquet page header's ``crc``: of the page's bytes as stored) matches, found by
  walking each column chunk's page headers; then every column of every row group decodes (pyarrow, with
  its own page checksum verification on);
* every column chunk's statistics equal the data: min and max (every column; a list column's are of its
  values), null_count (flat columns; a list column's count depends on how a writer counts empty lists);
* the ``rfsweep.spec`` metadata reads and its selection agrees with the rows (``limit``, ``sample``).

A page without a CRC or a chunk without statistics cannot be checked. That is damage (a finding) only in
a file rfsweep wrote from :data:`CHECKED_SINCE` on, the release whose writer puts both in every file; in a
file of an earlier rfsweep, or of another writer, it is a note (their writers did not write them).

A dataset (:func:`check_dataset`): the manifest reads and says complete; the plan's shards are contiguous
and cover every task; every part the manifest lists is there, no other part is; each part is the one its
manifest entry describes (:func:`check_part`: footer, shard record, rows, SHA-256), and the totals add up;
then each part is checked as a file. A ``rfsweep-dataset/1`` manifest (0.4.0) has no checksums and its parts
no shard record: those two checks are skipped, with a note.

Findings are one line each; nothing here writes. Progress (bytes checked) goes to ``progress(done, total)``.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rfsweep.core.errors import field_error
from rfsweep.engine import steer
from rfsweep.output import dataset

META_KEY = b"rfsweep.spec"  # as rfsweep.output.sink writes it
CHECKED_SINCE = (0, 5, 0)  # the first rfsweep whose files carry page CRCs and statistics everywhere (issue 22)
MAGIC = b"PAR1"


@dataclass
class Report:
    """What a check found: ``findings`` (damage, one line each), ``notes`` (what could not be checked and
    why), and what was covered."""

    path: str
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: int = 0
    rows: int = 0
    row_groups: int = 0
    pages: int = 0
    bytes: int = 0
    # pages and column chunks that could not be checked (no CRC, no statistics) in files whose writer did
    # not write them, and who wrote those files: one note for all of them (see :meth:`note_unchecked`)
    unchecked_pages: int = 0
    unchecked_chunks: int = 0
    unchecked_files: int = 0
    writers: set = field(default_factory=set)

    def note_unchecked(self) -> None:
        if not self.unchecked_files:
            return
        what = ", ".join(
            x
            for x in (
                f"{self.unchecked_pages:,} pages without a CRC" if self.unchecked_pages else "",
                f"{self.unchecked_chunks:,} column chunks without statistics" if self.unchecked_chunks else "",
            )
            if x
        )
        files = f" in {self.unchecked_files:,} files" if self.unchecked_files > 1 else ""
        who = " and ".join(sorted(self.writers))
        self.notes.append(f"{self.path}: {what}{files}: not checked ({who} did not write them)")

    @property
    def sound(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict:
        keys = ("path", "files", "rows", "row_groups", "pages", "bytes")
        return {
            "sound": self.sound,
            **{k: getattr(self, k) for k in keys},
            "findings": self.findings,
            "notes": self.notes,
        }


# ---- the Thrift compact protocol, as far as a page header needs it -------------------------------------


class _Thrift:
    """Reads the Thrift compact encoding of a Parquet PageHeader: the fields it needs, the rest skipped."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos

    def byte(self) -> int:
        b = self.buf[self.pos]  # IndexError past the end: a header cut short
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = value = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 70:
                raise ValueError("a varint longer than 10 bytes")

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def skip(self, kind: int) -> None:
        if kind in (1, 2):  # booleans: the value is the type
            return
        if kind == 3:
            self.pos += 1
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            size = self.varint()  # read first: `self.pos += self.varint()` adds to the position before the length
            self.pos += size
        elif kind in (9, 10):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(size):
                self.skip(head & 0x0F) if head & 0x0F not in (1, 2) else self.byte()
        elif kind == 11:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.skip(types >> 4)
                    self.skip(types & 0x0F)
        elif kind == 12:
            self.struct()
        else:
            raise ValueError(f"unknown Thrift type {kind}")
        if self.pos > len(self.buf):
            raise IndexError("past the end")

    def struct(self, wanted: tuple[int, ...] = ()) -> dict[int, int]:
        """The integer fields ``wanted`` of a struct (the others skipped)."""
        got: dict[int, int] = {}
        last = 0
        while True:
            head = self.byte()
            if head == 0:
                return got
            kind = head & 0x0F
            last = last + (head >> 4) if head >> 4 else self.zigzag()
            if last in wanted and kind in (4, 5, 6):
                got[last] = self.zigzag()
            else:
                self.skip(kind)


def _pages(chunk: bytes) -> list[tuple[int, int, int | None, int]]:
    """(offset of the page's data, its stored size, its CRC or None, page type) of every page of a column
    chunk's bytes; ValueError/IndexError when a header cannot be read."""
    pages, pos = [], 0
    while pos < len(chunk):
        t = _Thrift(chunk, pos)
        h = t.struct((1, 3, 4))  # type, compressed_page_size, crc
        if 3 not in h or h[3] < 0:
            raise ValueError("a page header without its size")
        pages.append((t.pos, h[3], h.get(4), h.get(1, -1)))
        pos = t.pos + h[3]
        if pos > len(chunk):
            raise ValueError("a page running past its column chunk")
    return pages


# ---- files ------------------------------------------------------------------------------------------


def _version(spec: dict | None) -> tuple[int, ...] | None:
    try:
        return tuple(int(x) for x in str(spec["version"]).split("+")[0].split(".")[:3])
    except (KeyError, TypeError, ValueError):
        return None


def _leaf_values(column, depth_path: list[str]):
    """The leaf values of a (possibly list) column, flattened; the null slots kept."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        arr = pc.list_flatten(arr)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b


def _open(target, name: str):
    if target is None or target.fs is None:
        return open(name if target is None else target.path(name), "rb")  # noqa: SIM115 (closed by the caller)
    return target.fs.open_input_file(target.path(name))


def check_file(
    path: str,
    report: Report | None = None,
    progress: Callable[[int], None] | None = None,
    target=None,
    label: str | None = None,
    lone: bool | None = None,
) -> Report:
    """Check one Parquet file (a local path, or ``path`` a file's name in ``target``); findings and notes
    are prefixed with ``label`` (default: the path). ``progress(bytes)`` is told each row group's bytes.
    A file that is not Parquet at all is bad usage when it is the one named (``lone``, default: no
    ``target``), damage when it is a dataset's part."""
    import pyarrow.parquet as pq

    report = report if report is not None else Report(path)
    label = label or path
    report.files += 1

    def find(text: str) -> None:
        report.findings.append(f"{label}: {text}")

    with _open(target, path) as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        head = f.read(4)
        if head != MAGIC:
            if lone if lone is not None else target is None:  # the file named on the command line: bad usage
                raise field_error("path", label, "is not a Parquet file (it does not start with PAR1)")
            find(f"not a Parquet file any more (it starts with {head!r}, not PAR1)")
            report.bytes += size
            _progress(progress, size)
            return report
        f.seek(max(size - 4, 0))
        if size < 12 or f.read(4) != MAGIC:
            find(f"the footer is missing (the file ends without PAR1: truncated at {size:,} bytes?)")
            report.bytes += size
            _progress(progress, size)
            return report
        f.seek(0)
        try:
            pf = pq.ParquetFile(f, page_checksum_verification=True)
            md = pf.metadata
        except Exception as exc:  # pyarrow raises OSError, ArrowInvalid and others for a damaged footer
            find(f"the footer cannot be read ({_why(exc)})")
            report.bytes += size
            _progress(progress, size)
            return report
        kv = md.metadata or {}
        spec = None
        if META_KEY in kv:
            try:
                spec = json.loads(kv[META_KEY])
                if not isinstance(spec, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError) as exc:
                find(f"its rfsweep.spec metadata cannot be read ({_why(exc)})")
        version = _version(spec)
        strict = version is not None and version >= CHECKED_SINCE
        if sum(md.row_group(i).num_rows for i in range(md.num_row_groups)) != md.num_rows:
            find(f"its row groups hold {sum(md.row_group(i).num_rows for i in range(md.num_row_groups)):,} rows, "
                 f"its footer says {md.num_rows:,}")  # fmt: skip
        no_crc = no_stats = 0
        leaf_paths = [md.schema.column(j).path for j in range(md.num_columns)]
        for i in range(md.num_row_groups):
            steer.check()
            rg = md.row_group(i)
            report.row_groups += 1
            done = 0
            for j in range(rg.num_columns):
                col = rg.column(j)
                start = col.data_page_offset
                if col.has_dictionary_page and col.dictionary_page_offset:
                    start = min(start, col.dictionary_page_offset)
                length = col.total_compressed_size
                done += length
                where = f"row group {i}, column {col.path_in_schema}"
                if start < 4 or start + length > size:
                    find(f"{where}: the chunk lies outside the file ({start:,}+{length:,} of {size:,} bytes)")
                    continue
                f.seek(start)
                chunk = f.read(length)
                try:
                    pages = _pages(chunk)
                except (ValueError, IndexError) as exc:
                    find(f"{where}: a page header cannot be read ({_why(exc)})")
                    continue
                for k, (at, n, crc, _) in enumerate(pages):
                    report.pages += 1
                    if crc is None:
                        no_crc += 1
                    elif zlib.crc32(chunk[at : at + n]) != crc & 0xFFFFFFFF:
                        find(f"{where}, page {k}: its CRC32 does not match its bytes")
            try:
                table = pf.read_row_group(i)
            except Exception as exc:  # a page that fails pyarrow's CRC check or its decoder
                find(f"row group {i}: cannot be decoded ({_why(exc)})")
                _progress(progress, done)
                report.bytes += done
                continue
            if table.num_rows != rg.num_rows:
                find(f"row group {i}: {table.num_rows:,} rows decoded, the footer says {rg.num_rows:,}")
            report.rows += table.num_rows
            no_stats += _check_statistics(rg, table, leaf_paths, i, find)
            report.bytes += done
            _progress(progress, done)
        if spec is not None:
            for key in ("limit", "sample"):
                if isinstance(spec.get(key), int) and md.num_rows > spec[key]:
                    find(f"{md.num_rows:,} rows, more than its --{key} {spec[key]:,}")
        if no_crc or no_stats:
            what = ", ".join(
                x
                for x in (
                    f"{no_crc:,} pages without a CRC" if no_crc else "",
                    f"{no_stats:,} column chunks without statistics" if no_stats else "",
                )  # fmt: skip
                if x
            )
            if strict:
                find(f"{what} (rfsweep {spec['version']} writes both)")
            else:
                report.unchecked_pages += no_crc
                report.unchecked_chunks += no_stats
                report.unchecked_files += 1
                report.writers.add(
                    f"rfsweep {spec['version']}" if spec is not None and "version" in spec else "its writer"
                )
    return report


def _progress(progress, n: int) -> None:
    if progress is not None:
        progress(n)


def _check_statistics(rg, table, leaf_paths: list[str], i: int, find) -> int:
    """Compare each column chunk's statistics with the decoded values; returns how many chunks had none (a
    chunk of nulls or NaNs only has no min and max to write: its null count is its statistics)."""
    import pyarrow.compute as pc

    missing = 0
    for j in range(rg.num_columns):
        col = rg.column(j)
        st = col.statistics
        name = leaf_paths[j].split(".")[0]
        if st is None or name not in table.column_names:
            missing += st is None
            continue
        nested = leaf_paths[j] != name
        values = _leaf_values(table.column(name), leaf_paths[j].split("."))
        where = f"row group {i}, column {col.path_in_schema}"
        if not nested and st.has_null_count and st.null_count != values.null_count:
            find(f"{where}: statistics say {st.null_count:,} nulls; the data {values.null_count:,}")
        mm = pc.min_max(values)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        bounded = lo is not None and lo == lo  # some value neither null nor NaN
        if not st.has_min_max:
            missing += bounded or not st.has_null_count
            continue
        if not (_same(lo, st.min) and _same(hi, st.max)):
            find(f"{where}: statistics say min {st.min!r}, max {st.max!r}; the data {lo!r}, {hi!r}")
    return missing


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---- parts and datasets -----------------------------------------------------------------------------


def shard_record(meta: dict | None) -> dict | None:
    """The ``rfsweep.part`` record of a part's key-value metadata (None when absent or unreadable)."""
    raw = (meta or {}).get(dataset.PART_META)
    if raw is None:
        return None
    try:
        rec = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("index"), int):
        return None
    tasks = rec.get("tasks")
    ok = isinstance(tasks, list) and len(tasks) == 2 and all(isinstance(t, int) for t in tasks)
    return rec if ok else None


def check_part(target, name: str, want: dict[str, Any], whole: bool = True) -> tuple[str | None, str | None]:
    """Whether the part ``name`` of ``target`` is the one expected: ``want`` holds ``index`` and ``tasks``
    (its shard), ``rows`` and ``checksum`` (the manifest's, or None), ``spec`` (the rfsweep.spec it must
    carry, parsed, or None). Returns (the reason it is not, as a phrase, or None; its SHA-256 when read).

    Checked in order: the footer reads; its shard record names this shard; it was written with these
    settings; its rows are the manifest's; its bytes hash to the manifest's checksum. A part the manifest
    has no checksum for (written after the last checkpoint of an interrupted run) is instead checked
    ``whole``, as a file (page CRCs, every column decoded, statistics). A part of a ``rfsweep-dataset/1``
    dataset carries no shard record: nothing ties it to its shard (a copy of another shard with as many
    rows would pass every other check), so it is not trusted."""
    import pyarrow.parquet as pq

    try:
        with _open(target, name) as f:
            md = pq.read_metadata(f)
    except Exception as exc:  # a truncated or damaged footer (pyarrow: OSError, ArrowInvalid, ...)
        return f"its footer cannot be read ({_why(exc)})", None
    kv = md.metadata or {}
    rec = shard_record(kv)
    if rec is None:
        if want.get("checksum") is None and dataset.PART_META not in kv:
            return "nothing ties it to its shard (no shard record: written before rfsweep-dataset/2)", None
        return "its shard record is missing or unreadable", None
    if rec["index"] != want["index"] or rec["tasks"] != list(want["tasks"]):
        a, b = rec["tasks"]
        return f"it holds shard {rec.get('index')}'s rows (tasks {a}-{b}), not shard {want['index']}'s", None
    if want.get("spec") is not None:
        try:
            spec = json.loads(kv.get(META_KEY, b"null"))
        except (ValueError, UnicodeDecodeError):
            spec = None
        if spec != want["spec"]:
            return "it was written with other settings (its rfsweep.spec differs)", None
    rows, checksum = want.get("rows"), want.get("checksum")
    if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool)):
        return f"the manifest's row count for it is {json.dumps(rows)[:40]}, not a number", None
    if checksum is not None and not isinstance(checksum, str):
        return f"the manifest's checksum for it is {json.dumps(checksum)[:40]}, not a hex string", None
    if rows is not None and md.num_rows != rows:
        return f"it has {md.num_rows:,} rows, the manifest {rows:,}", None
    digest = target.checksum(name)
    if checksum is not None:
        if digest != checksum:
            return f"its {dataset.CHECKSUM} differs from the manifest's (changed since it was written)", digest
        return None, digest
    if not whole:
        return None, digest
    report = check_file(name, target=target, label=name)
    if report.findings:
        return report.findings[0].split(": ", 1)[1], digest
    return None, digest


def check_dataset(
    path: str, report: Report | None = None, progress: Callable[[int, int], None] | None = None, target=None
) -> Report:
    """Check a dataset directory (a path, or a URL's ``target``): its manifest, then each part (see the
    module's notes). ``progress(done, total)`` in bytes."""
    report = report if report is not None else Report(path)
    target = target if target is not None else dataset.open_target(path, "path")
    names = target.names()
    parts_here = [n for n in names if dataset.PART_RE.match(n)]

    def find(text: str) -> None:
        report.findings.append(f"{path}: {text}")

    text = target.read_text(dataset.MANIFEST)
    manifest = None
    if text is None:
        if not parts_here:
            raise field_error("path", path, f"is not an rfsweep dataset (no {dataset.MANIFEST}, no parts)")
        find(f"no {dataset.MANIFEST}: the parts cannot be checked against a plan")
    else:
        try:
            manifest = json.loads(text)
        except (ValueError, RecursionError) as exc:
            find(f"{dataset.MANIFEST} is not valid JSON ({_why(exc)})")
        if manifest is not None and (not isinstance(manifest, dict) or manifest.get("format") not in dataset.FORMATS):
            find(f"{dataset.MANIFEST} is not an rfsweep dataset manifest")
            manifest = None
    lock = dataset.lock_owner(target) if dataset.LOCK in names else None
    if lock is not None:
        report.notes.append(f"{path}: locked by {dataset.owner_text(lock)} (a run writing it, or one that died)")
    extra = [n for n in names if n.startswith(dataset.TEMP_PREFIX)]
    if extra:
        report.notes.append(f"{path}: {len(extra)} temporary files of a writer ({', '.join(extra[:2])})")
    expected: dict[str, dict] = {}
    if manifest is not None:
        expected = _check_manifest(manifest, parts_here, find, report, path)
    tick = _Tally(sum(target.size(n) for n in parts_here), progress)
    for name in parts_here:
        steer.check()
        want = expected.get(name)
        start = tick.done
        if want is not None:
            reason, _ = check_part(target, name, {**want, "spec": None}, whole=False)
            if reason is not None and not reason.startswith("nothing ties it"):
                find(f"{name}: {reason}")
            elif reason is not None:
                report.notes.append(f"{path}/{name}: {reason}: its shard is not checked")
        check_file(name, report, tick, target=target, label=f"{path}/{name}")
        tick(max(0, target.size(name) - (tick.done - start)))
    return report


class _Tally:
    """Bytes checked so far, told to ``progress(done, total)`` as they add up."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None):
        self.total, self.progress, self.done = total, progress, 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def _check_manifest(manifest: dict, parts_here: list[str], find, report: Report, path: str) -> dict[str, dict]:
    """The manifest's own checks; returns what each listed part must be (by name)."""
    if manifest.get("complete") is not True:
        find("the manifest says incomplete (an interrupted run: rfsweep search ... --resume continues it)")
    old = manifest.get("format") != dataset.FORMAT
    if old:
        report.notes.append(
            f"{path}: a {manifest.get('format')} manifest has no checksums: parts checked as files only"
        )
    plan = manifest.get("plan")
    for problem in dataset.plan_problems(plan):
        find(problem)
    ranges = dataset.plan_ranges(plan)
    if ranges is None:
        return {}
    listed = manifest.get("parts") if isinstance(manifest.get("parts"), list) else []
    one = plan.get("kind") in ("merge", "whole")
    n = 1 if one else len(ranges)
    whole = (ranges[0][0], ranges[-1][1])
    expected: dict[str, dict] = {}
    for p in listed:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            find("the manifest lists a part it does not name")
            continue
        m = dataset.PART_RE.match(p["name"])
        index = int(m.group(1)) if m else -1
        if not m or index >= n or dataset.part_name(index, n) != p["name"]:
            find(f"the manifest lists {p['name']}, not a part of its plan of {n}")
            continue
        expected[p["name"]] = {
            "index": index,
            "tasks": list(whole) if one else list(ranges[index]),
            "rows": p.get("rows"),
            "checksum": None if old else p.get("checksum"),
        }
        if not old and not isinstance(p.get("checksum"), str) and manifest.get("complete") is True:
            find(f"the manifest has no checksum for {p['name']}")
    spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    if manifest.get("complete") is True:
        indices = sorted(w["index"] for w in expected.values())
        want = list(range(n)) if spec.get("limit") is None or one else list(range(len(indices)))
        for i in sorted(set(want) - set(indices)):
            find(f"the manifest lists no {dataset.part_name(i, n)} (shard {i} of {n})")
        totals = manifest.get("totals") if isinstance(manifest.get("totals"), dict) else {}
        listed_rows = sum(p["rows"] for p in listed if isinstance(p, dict) and isinstance(p.get("rows"), int))
        if isinstance(totals.get("rows"), int) and totals["rows"] != listed_rows:
            find(f"the manifest's total is {totals['rows']:,} rows, its parts {listed_rows:,}")
    for name in sorted(set(expected) - set(parts_here)):
        find(f"{name} is missing (the manifest lists it)")
    for name in parts_here:
        if name not in expected:
            find(f"{name} is not in the manifest (an extra part)")
    return expected


def _check_url(path: str, report: Report, progress) -> Report:
    import pyarrow.fs as pafs

    target = dataset.open_target(path, "path")
    try:
        info = target.fs.get_file_info(target.root)
    except OSError as exc:
        raise field_error("path", path, f"cannot be reached ({_why(exc)})") from None
    if info.type == pafs.FileType.Directory:
        check_dataset(path, report, progress, target=target)
    elif info.type == pafs.FileType.File:
        parent = dataset.Target(path, os.path.dirname(target.root), target.fs)
        name = os.path.basename(target.root)
        check_file(name, report, _Tally(info.size or 0, progress), target=parent, label=path, lone=True)
    else:
        raise field_error("path", path, "does not exist")
    report.note_unchecked()
    return report


def check(path: str, progress: Callable[[int, int], None] | None = None) -> Report:
    """Check a Parquet file or a dataset directory, a path or a URL pyarrow's filesystems open (``s3://``,
    ``gs://``, ``file://``); bad usage raises RFSweepError naming the path."""
    from rfsweep.core.files import is_url

    if is_url(path):
        return _check_url(path, Report(path), progress)
    if not os.path.exists(path):
        raise field_error("path", path, "does not exist")
    report = Report(path)
    if os.path.isdir(path):
        check_dataset(path, report, progress)
        report.note_unchecked()
        return report
    if not os.path.isfile(path):
        raise field_error("path", path, "is not a file or a directory")
    try:
        check_file(path, report, _Tally(os.path.getsize(path), progress))
    except PermissionError:
        raise field_error("path", path, "cannot be read (permission denied)") from None
    report.note_unchecked()
    return report


__all__ = ["CHECKED_SINCE", "Report", "check", "check_dataset", "check_file", "check_part", "shard_record"]
