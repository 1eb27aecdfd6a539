"""A sweep written as a Parquet dataset: a directory of parts and a manifest, on a local or shared
filesystem or at a URL pyarrow reaches (``s3://``, ``gs://``, ``file://``).

The layout of ``DIR``::

    part-00000.parquet, part-00001.parquet, ...   the rows, in depth-first order: part i holds shard i
    _rfsweep.json                                  the manifest: settings, rfsweep version, shard plan, totals
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
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rfsweep.core.errors import field_error
from rfsweep.core.files import is_url, reserve_beside

MANIFEST = "_rfsweep.json"
FORMAT = "rfsweep-dataset/1"
PART_RE = re.compile(r"^part-(\d+)\.parquet$")
TEMP_PREFIX = ".rfsweep-"


def part_name(index: int, count: int) -> str:
    """``part-00042.parquet``: zero-padded to one width for the whole dataset, so names sort in shard order."""
    return f"part-{index:0{max(5, len(str(max(count - 1, 0))))}d}.parquet"


def _ours(name: str) -> bool:
    return name == MANIFEST or bool(PART_RE.match(name)) or (name.startswith(TEMP_PREFIX) and name.endswith(".tmp"))


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


def open_target(location: str) -> Target:
    """The dataset directory named by ``location`` (a path or a URL), not checked (see :func:`prepare`)."""
    if is_url(location):
        import pyarrow.fs as pafs

        try:
            fs, root = pafs.FileSystem.from_uri(location)
        except (ValueError, OSError, TypeError) as exc:
            why = " ".join(str(exc).split())[:200]
            raise field_error("output", location, f"not a filesystem URL pyarrow can open ({why})") from None
        return Target(location, root.rstrip("/") or "/", fs)
    return Target(location, os.path.realpath(location))


@contextlib.contextmanager
def part_writer(
    target: Target, name: str, sch, meta: dict[bytes, bytes], space=None, threads: int | None = None
) -> Iterator[Any]:
    """A :class:`rfsweep.output.sink.ParquetSink` for one part (``space``: it takes that space's batches):
    written under a hidden temporary name in the directory and renamed when complete; for a URL, written
    to a local temporary file and uploaded (temporary name, then a move) when complete. Any error or
    signal leaves no part behind."""
    from rfsweep.output.sink import ParquetSink

    if target.fs is None:
        with ParquetSink(target.path(name), sch, meta, space=space, threads=threads) as out:
            yield out
        return
    with tempfile.TemporaryDirectory(prefix="rfsweep-part-") as tmpdir:
        local = os.path.join(tmpdir, name)
        with ParquetSink(local, sch, meta, space=space, threads=threads) as out:
            yield out
        target.upload(local, name)


def read_manifest(target: Target) -> dict | None:
    text = target.read_text(MANIFEST)
    if text is None:
        return None
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        why = f"its {MANIFEST} is not an rfsweep dataset manifest; write elsewhere"
        raise field_error("output", target.location, why)
    return manifest


def write_manifest(target: Target, manifest: dict) -> None:
    target.write_text(MANIFEST, json.dumps({"format": FORMAT, **manifest}, indent=1, sort_keys=True) + "\n")


def normalized(spec: dict) -> dict:
    """The spec as the manifest stores it (JSON types: tuples become lists), for comparisons."""
    return json.loads(json.dumps(spec, sort_keys=True))


def _first_difference(a: dict, b: dict) -> str:
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            inner = _first_difference(a[key], b[key])
            if inner:
                return inner
        elif a.get(key) != b.get(key):
            return f"{key}: {json.dumps(a.get(key))} there, {json.dumps(b.get(key))} here"
    return ""


def prepare(location: str, spec: dict, resume: bool = False) -> tuple[Target, dict | None]:
    """Check a dataset directory by the rule above, before any work starts.

    Returns the target and, when ``resume`` finds a dataset of the same settings, its manifest (the plan
    to continue); None means a fresh run (the directory is created when the run starts, and a previous
    dataset there is removed then, not here)."""
    target = open_target(location)
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
    names = target.names()
    foreign = [n for n in names if not _ours(n)]
    if foreign:
        raise field_error(
            "output",
            location,
            f"holds files that are not an rfsweep dataset ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); give a new or empty directory",
        )
    manifest = read_manifest(target) if names else None
    if names and manifest is None and any(PART_RE.match(n) for n in names):
        raise field_error("output", location, f"holds parts but no {MANIFEST}; give a new or empty directory")
    if not resume or manifest is None:
        return target, None
    there = normalized(manifest.get("spec") or {})
    here = normalized(spec)
    if there != here:
        why = _first_difference(there, here)
        raise field_error("resume", location, f"the dataset there was written with other settings ({why})")
    return target, manifest


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
    "Target",
    "finish",
    "normalized",
    "open_target",
    "part_name",
    "part_writer",
    "prepare",
    "read_manifest",
    "start",
    "write_manifest",
]
