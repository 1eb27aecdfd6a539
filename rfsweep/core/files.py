"""Files in and out. Inputs (spec and space files) are read as UTF-8 text with one-line errors
(:func:`read_text`). Where outputs go: checked before any work starts, written under a temporary name,
renamed when complete.

The rule for ``-o PATH`` (and ``--plot PATH``), the same for every command:

* a regular file (or none yet) is written atomically: a hidden temporary file beside it
  (``.rfsweep-XXXX<suffix>``, removed on any error, Ctrl-C, SIGTERM or SIGHUP) renamed over it when
  complete, so an existing file is replaced, as ``cp`` would, but never left half-written;
* a symbolic link is followed: the file it points to is replaced and the link stays;
* a device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe) is written to directly, never replaced;
* a directory, a socket, a missing or unwritable parent directory, or a file the same command reads
  (``-o space.toml --space space.toml``) is refused with one line, before any work starts;
* the extension decides the format; an extension the command cannot write is refused.

``rfsweep search -o`` also writes a Parquet *dataset* (:func:`is_dataset`): a directory of parts and a
manifest, when the argument is an existing directory, ends with ``/``, has no extension, or is a URL
(``s3://bucket/run``, ``file:///shared/run``). Its own rule (an empty or new directory is used, a previous
rfsweep dataset is replaced or, with ``--resume``, continued, anything else refused) is in
:mod:`rfsweep.output.dataset`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rfsweep.core.errors import field_error


@dataclass(frozen=True)
class Output:
    """A checked output path: ``real`` is where the bytes go; ``direct`` when it is a device or a FIFO."""

    path: str
    real: str
    direct: bool
    fieldname: str

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.path)[1].lower()


def check_output(
    path: str | os.PathLike,
    fieldname: str = "output",
    *,
    suffixes: Iterable[str] | None = None,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Output:
    """Check an output path by the rule above; one-line errors name the field and the path."""
    text = os.fspath(path)
    if not text or not text.strip():
        raise field_error(fieldname, text, "is empty; give a file name")
    real = os.path.realpath(text)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise field_error(fieldname, text, f"cannot be used ({exc.strerror})") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise field_error(fieldname, text, "is a directory; give a file name")
    if st is not None and stat.S_ISSOCK(st.st_mode):
        raise field_error(fieldname, text, "is a socket")
    direct = st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode))
    if suffixes is not None and not direct:
        allowed = tuple(suffixes)
        ext = os.path.splitext(text)[1].lower()
        if ext not in allowed:
            raise field_error(fieldname, text, f"the extension decides the format: use {' or '.join(allowed)}")
    for inp in inputs:
        if inp is None:
            continue
        with contextlib.suppress(OSError):
            if st is not None and os.path.samefile(real, os.fspath(inp)):
                raise field_error(fieldname, text, f"is an input of this command ({os.fspath(inp)}); write elsewhere")
    if not direct:
        parent = os.path.dirname(real) or "."
        if not os.path.isdir(parent):
            raise field_error(fieldname, text, "its directory does not exist")
        if not os.access(parent, os.W_OK):
            raise field_error(fieldname, text, "its directory is not writable")
    return Output(text, real, direct, fieldname)


def is_url(path: str | os.PathLike) -> bool:
    """Whether an output names a location on a filesystem pyarrow reaches by URL (s3://, gs://, file://)."""
    scheme, sep, _ = os.fspath(path).partition("://")
    return bool(sep) and scheme.isidentifier()


def is_dataset(path: str | os.PathLike) -> bool:
    """Whether ``-o PATH`` names a dataset directory rather than a file: an existing directory, a trailing
    ``/``, no extension at all (``-o r7``), or a URL. An existing file, device or FIFO is a file
    whatever its name, and ``-`` is never a directory."""
    text = os.fspath(path)
    if not text.strip() or text == "-":
        return False
    if is_url(text) or text.endswith(("/", os.sep)):
        return True
    try:
        return stat.S_ISDIR(os.stat(text).st_mode)
    except FileNotFoundError:
        return os.path.splitext(os.path.basename(text))[1] == ""
    except OSError:
        return False


def reserve_beside(path: str, suffix: str, fieldname: str = "output") -> str:
    """Create an empty, unique temporary file in ``path``'s directory and return its name.

    Unlike ``tempfile.mkstemp`` (mode 0600) it is created with mode 0666 less the umask, so the file
    the rename produces has the permissions any other new file would.
    """
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(directory, f".rfsweep-{secrets.token_hex(6)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise field_error(fieldname, path, f"cannot write there ({exc.strerror})") from None


@contextlib.contextmanager
def atomic(out: Output, suffix: str = ".tmp") -> Iterator[str]:
    """The name to write to: a temporary file renamed over ``out`` on success and removed on any exception,
    or the device itself for a direct output."""
    if out.direct:
        yield out.real
        return
    tmp = reserve_beside(out.real, suffix, out.fieldname)
    try:
        yield tmp
        os.replace(tmp, out.real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(out: Output, text: str) -> None:
    """Write text to a checked output, atomically."""
    with atomic(out) as name:
        try:
            with open(name, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise field_error(out.fieldname, out.path, f"write failed ({exc.strerror})") from None


INPUT_LIMIT = 64 << 20  # bytes of a spec, space or table file; RFSWEEP_MAX_INPUT_BYTES overrides every limit
LIMIT_VARIABLE = "RFSWEEP_MAX_INPUT_BYTES"


def read_bytes(path: str | Path, fieldname: str, limit: int = INPUT_LIMIT, what: str = "file") -> bytes:
    """The bytes of an input file, refused in one line unless it is a regular file or a pipe (never a
    device: /dev/zero would never end) of at most ``limit`` bytes."""
    p = Path(path)
    limit = int(os.environ.get(LIMIT_VARIABLE) or limit)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise field_error(fieldname, str(p), exc.strerror or "cannot be read") from None
    if stat.S_ISDIR(st.st_mode):
        raise field_error(fieldname, str(p), "Is a directory")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise field_error(fieldname, str(p), "must be a regular file or a pipe, not a device or a socket")
    too_big = f"is larger than the {limit:,}-byte limit of a {what} (the variable {LIMIT_VARIABLE} raises it)"
    if stat.S_ISREG(st.st_mode) and st.st_size > limit:
        raise field_error(fieldname, str(p), too_big)
    try:
        with open(p, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise field_error(fieldname, str(p), exc.strerror or "cannot be read") from None
    if len(data) > limit:
        raise field_error(fieldname, str(p), too_big)
    return data


def read_text(path: str | Path, fieldname: str) -> str:
    """The UTF-8 text of a settings or spec file, or a one-line error (missing, a directory, a device, too
    large, binary)."""
    data = read_bytes(path, fieldname, what="spec or space file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise field_error(
            fieldname, str(path), f"is not UTF-8 text (byte {exc.start}); is it the right file?"
        ) from None


__all__ = [
    "Output",
    "atomic",
    "check_output",
    "is_dataset",
    "is_url",
    "read_bytes",
    "read_text",
    "reserve_beside",
    "write_text",
]
