"""A sweep written as a Parquet dataset: a directory of parts and a manifest, on a local or shared
filesystem or at a URL pyarrow reaches (``s3://``, ``gs://``, ``file://``).

The layout of ``DIR``::

    part-00000.parquet, part-00001.parquet, ...   the rows, in depth-first order: part i holds shard i
    _rfsweep.json                                  the manifest: settings, rfsweep version, shard plan, parts, totals
    _rfsweep.lock                                  the writer's lock while a run is writing (pid, host, start)
    .rfsweep-*.tmp                                 parts (and manifests) being written, renamed when complete

Readers (``pandas.read_parquet(DIR)``, ``pyarrow.dataset``, duckdb ``'DIR/*.parquet'``) skip names starting
with ``.`` or ``_`` and take the parts in name order, which is shard order: reading ``DIR`` gives the rows of
``-o FILE.parquet``, in the same order. Every part carries the same ``rfsweep.spec`` metadata as that file.

The rule for an existing ``DIR`` (checked before any work starts):

* missing (its parent must exist) or empty: used;
* an rfsweep dataset (a manifest, parts and temporary files, nothing else): replaced, its parts and
  manifest removed before the first new part is written; with ``--resume`` and the same settings and
  version, continued: only the shards whose part is missing run again;
* anything else (other files, parts without a manifest, a manifest that is not rfsweep's): refused with
  one line, nothing touched.

The manifest is written twice, each time atomically (a temporary name, then a rename): at the start with
``"complete": false`` and the shard plan (what ``--resume`` continues), and at the end with
``"complete": true``, the parts and the totals. A dataset is whole when its manifest says complete.

Format ``rfsweep-dataset/2`` (this one) records per part its shard's task range (``tasks``), its rows
and the SHA-256 of its bytes (``checksum``; the manifest's ``checksum`` field names the algorithm, so
``sha256sum DIR/part-*.parquet`` checks by hand), and each part carries its own shard record in its
Parquet metadata (``rfsweep.part``: index and task range): a part copied from another shard, truncated or
changed is found by ``--resume`` (rebuilt) and ``rfsweep verify`` (reported). ``rfsweep-dataset/1``
manifests (0.4.0: rows, no checksums, no shard record in the parts) are still read; see
:func:`rfsweep.output.verify.check_part` for what is trusted of them.

One writer at a time: :func:`locked` holds ``_rfsweep.lock`` (created with O_CREAT|O_EXCL) for the run.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rfsweep.core.errors import field_error
from rfsweep.core.files import is_url, reserve_beside

log = logging.getLogger("rfsweep")

MANIFEST = "_rfsweep.json"
LOCK = "_rfsweep.lock"
FORMAT = "rfsweep-dataset/2"
FORMATS = ("rfsweep-dataset/1", FORMAT)  # /1: 0.4.0, no checksums and no shard record in the parts
CHECKSUM = "sha256"  # of a part's bytes: 1.7 GB/s here (a 45 MB part: ~30 ms), and sha256sum checks it by hand
PART_META = b"rfsweep.part"  # a part's own shard record in its Parquet key-value metadata
PART_RE = re.compile(r"^part-(\d+)\.parquet$")
TEMP_PREFIX = ".rfsweep-"


def part_name(index: int, count: int) -> str:
    """``part-00042.parquet``: zero-padded to one width for the whole dataset, so names sort in shard order."""
    return f"part-{index:0{max(5, len(str(max(count - 1, 0))))}d}.parquet"


def _ours(name: str) -> bool:
    return (
        name in (MANIFEST, LOCK)
        or bool(PART_RE.match(name))
        or (name.startswith(TEMP_PREFIX) and name.endswith(".tmp"))
    )


@dataclass
class Target:
    """Where a dataset lives: a local directory (``fs`` None: plain os calls, as the output rule) or a
    directory of a pyarrow filesystem (``fs``, ``root`` the path within it). Made from the location text
    on each machine (:func:`open_target`), so no credentials travel with the jobs."""

    location: str
    root: str
    fs: Any = None

    def path(self, name: str) -> str:
        return os.path.join(self.root, name) if self.fs is None else f"{self.root.rstrip('/')}/{name}"

    def names(self) -> list[str]:
        """The entries of the directory (base names; [] when it does not exist)."""
        if self.fs is None:
            try:
                return sorted(os.listdir(self.root))
            except FileNotFoundError:
                return []
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        return sorted(i.base_name for i in infos)

    def make(self) -> None:
        if self.fs is None:
            os.makedirs(self.root, exist_ok=True)
        else:
            self.fs.create_dir(self.root, recursive=True)

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.fs is None:
                os.unlink(self.path(name))
            else:
                self.fs.delete_file(self.path(name))

    def read_text(self, name: str) -> str | None:
        try:
            if self.fs is None:
                with open(self.path(name), encoding="utf-8") as f:
                    return f.read()
            with self.fs.open_input_stream(self.path(name)) as f:
                return f.read().decode("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise field_error("output", self.location, f"cannot read {name} ({exc})") from None

    def write_text(self, name: str, text: str) -> None:
        """Write a small file atomically: a hidden temporary name, then a rename over ``name``."""
        data = text.encode("utf-8")
        if self.fs is None:
            tmp = reserve_beside(self.path(name), ".json.tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path(name))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return
        tmp = self.path(f"{TEMP_PREFIX}{secrets.token_hex(6)}-{name}.tmp")
        try:
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, self.path(name))
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise

    def rows(self, name: str) -> int:
        """Rows of a part, from its footer."""
        import pyarrow.parquet as pq

        if self.fs is None:
            return pq.read_metadata(self.path(name)).num_rows
        with self.fs.open_input_file(self.path(name)) as f:
            return pq.read_metadata(f).num_rows

    def size(self, name: str) -> int:
        """A file's size in bytes (0 when it cannot be stat'ed)."""
        try:
            if self.fs is None:
                return os.path.getsize(self.path(name))
            return self.fs.get_file_info(self.path(name)).size or 0
        except OSError:
            return 0

    def checksum(self, name: str) -> str:
        """The hex SHA-256 of a file's bytes, streamed."""
        if self.fs is None:
            return file_checksum(self.path(name))
        digest = hashlib.new(CHECKSUM)
        with self.fs.open_input_stream(self.path(name)) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    def upload(self, local: str, name: str) -> None:
        """Copy a finished local file to ``name``: a hidden temporary name, then a move."""
        import pyarrow.fs as pafs

        tmp = self.path(f"{TEMP_PREFIX}{secrets.token_hex(6)}-{name}.tmp")
        try:
            pafs.copy_files(local, tmp, destination_filesystem=self.fs)
            self.fs.move(tmp, self.path(name))
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise

    def remove_temporaries(self) -> int:
        """Remove the hidden temporary files of interrupted or killed writers; how many there were."""
        temps = [n for n in self.names() if n.startswith(TEMP_PREFIX) and n.endswith(".tmp")]
        for name in temps:
            self.remove(name)
        return len(temps)


def file_checksum(path: str) -> str:
    """The hex SHA-256 of a local file's bytes, streamed in 1 MiB blocks."""
    digest = hashlib.new(CHECKSUM)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def part_record(index: int, tasks) -> dict[bytes, bytes]:
    """The Parquet metadata that ties a part to its shard: the shard's index and its task range."""
    return {PART_META: json.dumps({"index": int(index), "tasks": [int(t) for t in tasks]}).encode()}


def open_target(location: str, fieldname: str = "output") -> Target:
    """The dataset directory named by ``location`` (a path or a URL), not checked (see :func:`prepare`)."""
    if is_url(location):
        import pyarrow.fs as pafs

        try:
            fs, root = pafs.FileSystem.from_uri(location)
        except (ValueError, OSError, TypeError) as exc:
            why = " ".join(str(exc).split())[:200]
            raise field_error(fieldname, location, f"not a filesystem URL pyarrow can open ({why})") from None
        return Target(location, root.rstrip("/") or "/", fs)
    return Target(location, os.path.realpath(location))


class Part:
    """A part being written: ``write_batch`` as the sink's; once the writer's block ends, ``rows`` and
    ``checksum`` (the finished file's SHA-256, for the manifest)."""

    def __init__(self, sink):
        self.sink = sink
        self.checksum: str | None = None

    def write_batch(self, batch) -> None:
        self.sink.write_batch(batch)

    @property
    def rows(self) -> int:
        return self.sink.rows


@contextlib.contextmanager
def part_writer(
    target: Target, name: str, sch, meta: dict[bytes, bytes], space=None, threads: int | None = None
) -> Iterator[Part]:
    """A :class:`Part` over a :class:`rfsweep.output.sink.ParquetSink` (``space``: it takes that space's
    batches): written under a hidden temporary name in the directory and renamed when complete; for a URL,
    written to a local temporary file and uploaded (temporary name, then a move) when complete. Any error
    or signal leaves no part behind. The checksum is of the local file (read back from the page cache)."""
    from rfsweep.output.sink import ParquetSink

    if target.fs is None:
        with ParquetSink(target.path(name), sch, meta, space=space, threads=threads) as out:
            part = Part(out)
            yield part
        part.checksum = file_checksum(target.path(name))
        return
    with tempfile.TemporaryDirectory(prefix="rfsweep-part-") as tmpdir:
        local = os.path.join(tmpdir, name)
        with ParquetSink(local, sch, meta, space=space, threads=threads) as out:
            part = Part(out)
            yield part
        part.checksum = file_checksum(local)
        target.upload(local, name)


def read_manifest(target: Target) -> dict | None:
    text = target.read_text(MANIFEST)
    if text is None:
        return None
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        why = f"its {MANIFEST} is not an rfsweep dataset manifest; write elsewhere"
        raise field_error("output", target.location, why)
    return manifest


def write_manifest(target: Target, manifest: dict) -> None:
    record = {**manifest, "format": FORMAT, "checksum": CHECKSUM}
    target.write_text(MANIFEST, json.dumps(record, indent=1, sort_keys=True) + "\n")


def normalized(spec: dict) -> dict:
    """The spec as the manifest stores it (JSON types: tuples become lists), for comparisons."""
    return json.loads(json.dumps(spec, sort_keys=True))


def _first_difference(a, b, name: str = "spec") -> str:
    """The first setting that differs, as one short phrase; ``a`` (the manifest's) may be any JSON value: an
    edited manifest's spec can be a number or a string (a traceback once, found by test_trust)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):  # JSON objects' keys: strings
            inner = _first_difference(a.get(key), b.get(key), key)
            if inner:
                return inner
        return ""
    if a == b:
        return ""

    def shown(v) -> str:
        text = json.dumps(v)
        return text if len(text) <= 60 else text[:57] + "..."

    return f"{name}: {shown(a)} there, {shown(b)} here"


def _check_place(target: Target) -> None:
    """The directory rule's checks of the place itself and of the names in it (nothing is touched)."""
    location = target.location
    if target.fs is None:
        root = target.root
        try:
            st = os.stat(root)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise field_error("output", location, f"cannot be used ({exc.strerror})") from None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise field_error("output", location, "is not a directory; a dataset is written into a directory")
        parent = root if st is not None else os.path.dirname(root)
        if not os.path.isdir(parent):
            raise field_error("output", location, "its parent directory does not exist")
        if not os.access(parent, os.W_OK):
            raise field_error("output", location, "is not writable")
    else:
        import pyarrow.fs as pafs

        try:
            info = target.fs.get_file_info(target.root)
        except OSError as exc:
            why = " ".join(str(exc).split())[:200]
            raise field_error("output", location, f"cannot be reached ({why})") from None
        if info.type == pafs.FileType.File:
            raise field_error("output", location, "is a file; a dataset is written into a directory")
    foreign = [n for n in target.names() if not _ours(n)]
    if foreign:
        raise field_error(
            "output",
            location,
            f"holds files that are not an rfsweep dataset ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); give a new or empty directory",
        )


KINDS = ("rows", "sample", "merge", "whole")  # how a plan's shards become parts (rfsweep.distributed.sharded)


def plan_ranges(plan) -> list[tuple[int, int]] | None:
    """The shards' task ranges of a manifest's plan, or None when they cannot be read."""
    shards = plan.get("shards") if isinstance(plan, dict) else None
    ok = (
        isinstance(shards, list)
        and shards
        and all(isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r) for r in shards)
    )
    return [(a, b) for a, b in shards] if ok else None


def plan_problems(plan) -> list[str]:
    """What is wrong with a manifest's shard plan (empty when it can be followed): q and the task count
    integers, the shards ``[a, b)`` contiguous from 0 and covering every task, survivors one integer a
    shard (or none), a known kind."""
    shards = plan_ranges(plan)
    if shards is None:
        return ["the manifest's shard plan is missing or cannot be read"]
    tasks = plan.get("tasks")
    if not isinstance(tasks, int) or not isinstance(plan.get("q"), int):
        return ["the manifest's plan has no task count or prefix length"]
    problems, edge = [], 0
    for i, (a, b) in enumerate(shards):
        if a != edge or b < a:
            problems.append(
                f"the plan's shard {i} covers tasks {a}-{b}, after a shard ending at {edge}: not contiguous"
            )
        edge = b
    if edge != tasks:
        problems.append(f"the plan's shards end at task {edge}, the plan has {tasks}")
    survivors = plan.get("survivors")
    if survivors is not None and not (
        isinstance(survivors, list) and len(survivors) == len(shards) and all(isinstance(x, int) for x in survivors)
    ):
        problems.append("the plan's survivors are not one count a shard")
    if plan.get("kind") not in KINDS:
        problems.append(f"the plan's kind {plan.get('kind')!r} is none of {', '.join(KINDS)}")
    return problems


def _previous(target: Target, spec: dict, resume: bool) -> dict | None:
    names = target.names()
    manifest = read_manifest(target) if names else None
    if names and manifest is None and any(PART_RE.match(n) for n in names):
        raise field_error("output", target.location, f"holds parts but no {MANIFEST}; give a new or empty directory")
    if not resume or manifest is None:
        return None
    there = normalized(manifest.get("spec") or {})
    here = normalized(spec)
    if there != here:
        why = _first_difference(there, here)
        raise field_error("resume", target.location, f"the dataset there was written with other settings ({why})")
    problems = plan_problems(manifest.get("plan"))
    if problems:  # nothing says which rows a part should hold: every part is untrusted
        log.info(f"note: {target.location}: {problems[0]}; the dataset is written anew")
        return None
    parts = manifest.get("parts")
    parts = parts if isinstance(parts, list) else []
    manifest["parts"] = [p for p in parts if isinstance(p, dict) and isinstance(p.get("name"), str)]
    return manifest


def prepare(location: str, spec: dict, resume: bool = False) -> tuple[Target, dict | None]:
    """Check a dataset directory by the rule above, before any work starts.

    Returns the target and, when ``resume`` finds a dataset of the same settings, its manifest (the plan
    to continue); None means a fresh run (the directory is created when the run starts, and a previous
    dataset there is removed then, not here)."""
    target = open_target(location)
    _check_place(target)
    return target, _previous(target, spec, resume)


@contextlib.contextmanager
def claim(
    location: str, spec: dict, resume: bool = False, break_lock: bool = False
) -> Iterator[tuple[Target, dict | None]]:
    """:func:`prepare` under the dataset's lock (:func:`locked`), held while the block runs: the place is
    checked first (a directory of other files is refused before a lock file is written into it), then
    locked, then its contents are read (another writer cannot be between removing and writing them)."""
    target = open_target(location)
    _check_place(target)
    with locked(target, break_lock):
        _check_place(target)
        yield target, _previous(target, spec, resume)


LOCK_READ_SECONDS = 2.0  # how long an empty lock file (its writer between create and write) is waited for


def _local_root(target: Target) -> str | None:
    """The directory as a local path where O_CREAT|O_EXCL means what it says: a plain path or a
    ``file://`` URL. None for object stores (pyarrow has no create-if-absent there)."""
    if target.fs is None:
        return target.root
    import pyarrow.fs as pafs

    return target.root if isinstance(target.fs, pafs.LocalFileSystem) else None


def lock_owner(target: Target) -> dict | None:
    """The owner of the dataset's lock, as :func:`read_lock` (None without a lock, or where there are none)."""
    root = _local_root(target)
    return None if root is None else read_lock(os.path.join(root, LOCK))


def read_lock(path: str) -> dict | None:
    """The owner recorded in a lock file ({} when it cannot be read after a short wait: a writer between
    creating and filling it, or a damaged file); None when there is no lock."""
    deadline = time.monotonic() + LOCK_READ_SECONDS
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                owner = json.loads(f.read())
            if isinstance(owner, dict) and isinstance(owner.get("pid"), int) and isinstance(owner.get("host"), str):
                return owner
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeDecodeError):
            pass
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.05)


def owner_text(owner: dict) -> str:
    """``pid 1234@host, since 2026-12-05 07:30:12 UTC``, or what is known of it."""
    if not owner:
        return "an unreadable lock file"
    return f"pid {owner['pid']}@{owner['host']}, since {owner.get('started', '?')}"


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux's /proc; None elsewhere or when gone):
    with the pid it names one process, so a pid reused by another process is not taken for the owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(owner: dict) -> bool:
    pid = owner["pid"]
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's process (or a pid no kernel has)
        pass
    recorded, now = owner.get("pid_start"), _process_start(pid)
    return not (isinstance(recorded, int) and now is not None and now != recorded)


def _create_lock(path: str, record: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return True


def _take_over(root: str, path: str, seen: dict) -> bool:
    """Move a stale lock aside (one rename: of two writers taking it over at once, one moves it) and drop
    it if it is still the one judged stale; a fresh lock that slipped in meanwhile is put back."""
    aside = os.path.join(root, f"{TEMP_PREFIX}{secrets.token_hex(6)}-lock.tmp")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    stale = read_lock(aside) == seen
    if not stale:
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    os.unlink(aside)
    return stale


@contextlib.contextmanager
def locked(target: Target, break_lock: bool = False) -> Iterator[None]:
    """Hold the dataset's lock (``_rfsweep.lock``: pid, host, start time, created with O_CREAT|O_EXCL) while
    the block runs; released on exit, error and Ctrl-C. Another live writer's lock is one line naming it
    (exit 2). A lock of this machine whose process is gone is stale (the pid is not alive, or on Linux it
    now names a process started at another time than the one recorded): taken over, with a note. A lock from
    another machine cannot be checked from here: taken over only with ``break_lock``. The directory is
    created for the lock, and removed again if the run leaves it empty. Object stores (``s3://``, ...)
    have no atomic create-if-absent through pyarrow: no lock there (one writer per URL is the user's)."""
    root = _local_root(target)
    if root is None:
        yield
        return
    made = not os.path.isdir(root)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise field_error("output", target.location, f"cannot be created ({exc.strerror})") from None
    path = os.path.join(root, LOCK)
    host = socket.gethostname()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    mine = {"pid": os.getpid(), "host": host, "started": started, "token": secrets.token_hex(8)}
    if (ticks := _process_start(os.getpid())) is not None:
        mine["pid_start"] = ticks
    try:
        for _ in range(20):
            if _create_lock(path, mine):
                break
            owner = read_lock(path)
            if owner is None:  # released meanwhile
                continue
            here = owner.get("host") == host
            if owner and here and not _alive(owner):
                why = "that process is gone"
            elif break_lock and not (owner and here):
                why = "--break-lock"
            elif owner and not here:
                raise field_error(
                    "output",
                    target.location,
                    f"is being written by another rfsweep run ({owner_text(owner)}); a lock from another "
                    "machine is never taken as stale: if that run is dead, pass --break-lock",
                )
            else:
                raise field_error(
                    "output",
                    target.location,
                    f"is being written by another rfsweep run ({owner_text(owner)})"
                    + ("; wait for it or stop it" if owner else "; if no run writes it, pass --break-lock"),
                )
            if _take_over(root, path, owner):
                log.info(f"note: {target.location}: took over the lock of {owner_text(owner)} ({why})")
        else:
            raise field_error("output", target.location, f"its {LOCK} keeps changing hands; try again")
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(root)
        raise
    try:
        yield
    finally:
        if read_lock(path) == mine:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if made:
            with contextlib.suppress(OSError):
                os.rmdir(root)  # only when the run left nothing


def start(target: Target, manifest: dict, fresh: bool) -> None:
    """Create the directory (a fresh run removes a previous dataset's files first) and write the manifest
    of a run in progress."""
    target.make()
    if fresh:
        for name in target.names():
            if PART_RE.match(name) or name == MANIFEST:
                target.remove(name)
    target.remove_temporaries()
    write_manifest(target, {**manifest, "complete": False})


def finish(target: Target, manifest: dict) -> None:
    """Remove what killed writers left and write the manifest of the complete dataset."""
    target.remove_temporaries()
    write_manifest(target, {**manifest, "complete": True})


__all__ = [
    "MANIFEST",
    "claim",
    "Target",
    "file_checksum",
    "finish",
    "locked",
    "normalized",
    "open_target",
    "part_name",
    "part_record",
    "part_writer",
    "prepare",
    "read_manifest",
    "start",
    "write_manifest",
]
