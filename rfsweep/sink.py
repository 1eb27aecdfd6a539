"""Survivor batches -> Arrow tables -> Parquet, written under a temporary name and renamed when complete.

Schema: arch_id, depth, per-layer list columns (op, kernel, stride, dilation, padding, channels), then
rf, jump, eff_padding, center, out_size, params, macs, erf_sigma, in the narrowest integer types the
space's bounds allow. The search settings and the rfsweep version are stored in the schema metadata
as JSON under ``rfsweep.spec``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rfsweep.engine import Batch
from rfsweep.errors import field_error
from rfsweep.files import check_output, reserve_beside
from rfsweep.kernels import layer_math as lm
from rfsweep.space import OP_CODES, Space

META_KEY = b"rfsweep.spec"
# Row groups of 512K rows: the writer holds a row group's encoded levels in memory (measured: 1M-row
# groups put the R7 search with list columns at 944 MiB peak RSS, against 1 GB allowed)
ROW_GROUP_ROWS = 1 << 19
OP_NAMES = sorted(OP_CODES, key=OP_CODES.get)


def _int_type(bound: int, signed: bool = True) -> pa.DataType:
    """The narrowest Arrow integer type holding 0..bound (and -bound..bound when signed)."""
    for bits in (8, 16, 32, 64):
        if signed and bound < 2 ** (bits - 1):
            return getattr(pa, f"int{bits}")()
        if not signed and bound < 2**bits:
            return getattr(pa, f"uint{bits}")()
    return pa.int64()


LIST_COLUMNS = ("op", "kernel", "stride", "dilation", "padding", "channels")
LAYOUTS = ("full", "compact")


def schema(space: Space, layout: str = "full") -> pa.Schema:
    """Output columns; the compact layout leaves out the per-layer lists (arch_id decodes them)."""
    if layout not in LAYOUTS:
        raise field_error("columns", layout, "must be full or compact")
    rf_t = _int_type(space.rf_bound)

    def lst(value_type):
        return pa.list_(pa.field("item", value_type, nullable=False))

    fields = [
        ("arch_id", pa.int64()),
        ("depth", pa.uint8()),
        ("op", lst(pa.dictionary(pa.int8(), pa.string()))),
        ("kernel", lst(pa.uint8())),  # the space caps kernel, stride and dilation at 255
        ("stride", lst(pa.uint8())),
        ("dilation", lst(pa.uint8())),
        ("padding", lst(pa.dictionary(pa.int8(), pa.string()))),
        ("channels", lst(pa.int32())),
        ("rf", rf_t),
        ("jump", _int_type(space.jump_bound)),
        ("eff_padding", rf_t),
        ("center", pa.float64()),
        ("out_size", _int_type(space.input_size)),
        ("params", pa.int64()),
        ("macs", pa.int64()),
        ("erf_sigma", pa.float64()),
    ]
    if layout == "compact":
        fields = [f for f in fields if f[0] not in LIST_COLUMNS]
    for lv in space.levels:  # per detector level: its tap (layer index), the tap's rf and ERF sigma
        fields += [
            (f"s{lv.stride}_tap", pa.int8()),
            (f"s{lv.stride}_rf", rf_t),
            (f"s{lv.stride}_erf_sigma", pa.float64()),
        ]
    # nothing is ever null: non-nullable fields write ~30% faster (no definition levels to encode)
    return pa.schema([pa.field(name, typ, nullable=False) for name, typ in fields])


def metadata(space: Space, extra: dict | None = None) -> dict[bytes, bytes]:
    from rfsweep import __version__

    spec = {"version": __version__, "space": space.settings, **(extra or {})}
    return {META_KEY: json.dumps(spec, sort_keys=True).encode()}


class LayerTables:
    """Per-position lookup tables (choice index -> op code, kernel, ...) for the list columns."""

    def __init__(self, space: Space):
        self.space = space
        # slices of the kernels' own choice table: one encoding of the choices
        choices = space.kernel.choices
        self.op, self.kernel, self.stride, self.dilation, self.channels = (
            np.ascontiguousarray(choices[:, :, f]) for f in (lm.F_OP, lm.F_K, lm.F_S, lm.F_D, lm.F_C)
        )

    def flatten(self, choice: np.ndarray, depth: np.ndarray):
        """(offsets, op, kernel, stride, dilation, channels) flat arrays of a batch (kernels.cpu.flatten_layers)."""
        from rfsweep.kernels.cpu import flatten_layers

        return flatten_layers(
            np.ascontiguousarray(choice),
            np.ascontiguousarray(depth, dtype=np.int64),
            self.op,
            self.kernel,
            self.stride,
            self.dilation,
            self.channels,
            self.space.kernel.cons,
        )


def to_table(batch: Batch, space: Space, tables: LayerTables, sch: pa.Schema) -> pa.Table:
    """One batch as an Arrow table of schema ``sch`` (full or compact layout)."""
    out = batch.out
    depth = out[:, lm.O_DEPTH]
    cols = {}
    if "op" in sch.names:
        offsets, op, kernel, stride, dilation, channels = tables.flatten(batch.choice, depth)
        offsets = pa.array(offsets, pa.int32())
        op_dict = pa.DictionaryArray.from_arrays(pa.array(op, pa.int8()), pa.array(OP_NAMES))
        pad_dict = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(op), np.int8)), pa.array([space.padding]))
        for name, values in (
            ("op", op_dict),
            ("kernel", kernel),
            ("stride", stride),
            ("dilation", dilation),
            ("padding", pad_dict),
            ("channels", channels),
        ):
            values = values if isinstance(values, pa.Array) else pa.array(values)
            cols[name] = pa.ListArray.from_arrays(offsets, values, type=sch.field(name).type)
    rf = out[:, lm.O_RF]
    pad = out[:, lm.O_PAD]
    cols |= {
        "arch_id": pa.array(out[:, lm.O_ARCH], pa.int64()),
        "depth": pa.array(depth, pa.uint8()),
        "rf": pa.array(rf, sch.field("rf").type),
        "jump": pa.array(out[:, lm.O_JUMP], sch.field("jump").type),
        "eff_padding": pa.array(pad, sch.field("eff_padding").type),
        "center": pa.array((rf - 1) / 2.0 - pad, pa.float64()),
        "out_size": pa.array(out[:, lm.O_N], sch.field("out_size").type),
        "params": pa.array(out[:, lm.O_PARAMS], pa.int64()),
        "macs": pa.array(out[:, lm.O_MACS], pa.int64()),
        "erf_sigma": pa.array(np.sqrt(out[:, lm.O_ERF] / 12.0), pa.float64()),
    }
    for i, lv in enumerate(space.levels):
        base = lm.NO + 3 * i
        cols[f"s{lv.stride}_tap"] = pa.array(out[:, base], pa.int8())
        cols[f"s{lv.stride}_rf"] = pa.array(out[:, base + 1], sch.field(f"s{lv.stride}_rf").type)
        cols[f"s{lv.stride}_erf_sigma"] = pa.array(np.sqrt(out[:, base + 2] / 12.0), pa.float64())
    return pa.Table.from_arrays([cols[f.name] for f in sch], schema=sch)


class ParquetSink:
    """Write tables to ``path`` by the output rule of :mod:`rfsweep.files`: atomically (a temporary file
    beside it, renamed on success, removed on any error or signal), or straight into a device or FIFO.

    Tables are written by a background thread (pyarrow releases the GIL, and so do the kernels), so
    encoding a slab overlaps with computing the next; at most one slab waits in the queue (each holds
    ~150 MB of Arrow data at 1M rows).
    """

    def __init__(self, path: str, sch: pa.Schema, meta: dict[bytes, bytes], inputs: tuple[str, ...] = ()):
        self.target = check_output(path, "output", suffixes=(".parquet",), inputs=inputs)
        self.path = self.target.path
        self.tmp = self.target.real if self.target.direct else reserve_beside(self.target.real, ".parquet.tmp")
        self.schema = sch.with_metadata(meta)
        self.stream = None
        try:
            if self.target.direct:  # a FIFO cannot seek: a Python file object streams into anything
                self.stream = pa.output_stream(open(self.tmp, "wb"))  # noqa: SIM115 (closed in close/abort)
            self.writer = pq.ParquetWriter(
                self.stream or self.tmp,
                self.schema,
                compression="zstd",
                compression_level=1,
                use_dictionary=["op", "padding"],
                write_statistics=False,
            )
        except (OSError, pa.ArrowException) as exc:
            self._close_stream()
            self._remove()
            raise field_error("output", self.path, f"cannot write there ({exc})") from None
        self.rows = 0
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._drain, name="rfsweep-parquet-writer", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            table = self.queue.get()
            if table is None:
                return
            if self.error is None:
                try:
                    self.writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                except BaseException as exc:  # reported by the next write() or close()
                    self.error = exc

    def _check(self) -> None:
        if self.error is not None:
            raise field_error("output", self.path, f"write failed: {self.error}")

    def write(self, table: pa.Table) -> None:
        self._check()
        self.queue.put(table.replace_schema_metadata(self.schema.metadata))
        self.rows += table.num_rows

    def _stop(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _close_stream(self) -> None:
        if self.stream is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self.stream.close()

    def _remove(self) -> None:
        if not self.target.direct and os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def close(self) -> None:
        self._stop()
        try:
            self.writer.close()
            if self.stream is not None:
                self.stream.close()
        except (OSError, pa.ArrowException) as exc:
            if self.error is None:
                self.error = exc
        self._check()
        if not self.target.direct:
            os.replace(self.tmp, self.target.real)

    def abort(self) -> None:
        try:
            self._stop()
            with contextlib.suppress(OSError, pa.ArrowException):
                self.writer.close()
            self._close_stream()
        finally:
            self._remove()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self._remove()
                raise
        else:
            self.abort()
        return False


def read_spec(path: str) -> dict:
    """The ``rfsweep.spec`` metadata of a Parquet file written by rfsweep: ``{"version", "space", ...}``."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        why = " ".join(str(exc).split())[:200]
        raise field_error("file", str(path), f"not a readable Parquet file ({why})") from None
    if META_KEY not in meta:
        raise field_error("file", str(path), "has no rfsweep.spec metadata (not written by rfsweep search)")
    try:
        spec = json.loads(meta[META_KEY])
    except (ValueError, RecursionError):
        spec = None
    if not isinstance(spec, dict) or not isinstance(spec.get("space"), dict):
        raise field_error("file", str(path), "its rfsweep.spec metadata is corrupt (not the settings of a search)")
    return spec


def arch_ids_summary(path: str, arch_id: int) -> tuple[bool, int, int, int]:
    """(whether ``arch_id`` is a row of the file, smallest id, largest id, rows), one column streamed."""
    found, lo, hi, rows = False, None, None, 0
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(columns=["arch_id"], batch_size=1 << 20):
            ids = batch.column(0).to_numpy()
            if len(ids) == 0:
                continue
            rows += len(ids)
            found = found or bool((ids == arch_id).any())
            lo = int(ids.min()) if lo is None else min(lo, int(ids.min()))
            hi = int(ids.max()) if hi is None else max(hi, int(ids.max()))
    except (OSError, pa.ArrowException, KeyError) as exc:
        why = " ".join(str(exc).split())[:200]
        raise field_error("file", str(path), f"its arch_id column cannot be read ({why})") from None
    return found, (lo if lo is not None else -1), (hi if hi is not None else -1), rows
