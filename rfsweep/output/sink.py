"""Survivor batches -> Parquet, written under a temporary name and renamed when complete.

The ``wide`` and ``compact`` layouts of a chain are encoded straight from the batches by
:mod:`rfsweep.output.parquet` (:meth:`ParquetSink.write_batch`) once a whole row group is there; an output
that ends before (``--limit``, ``--sample``, small spaces), the ``lists`` layout, spaces of stages and
ids past int64 go through Arrow tables (:func:`to_table`) and :class:`rfsweep.output.writer.TableWriter`
(so that a small output never compiles the encoder: :meth:`ParquetSink._write_small`).
Both follow the one writer policy of rfsweep's files (:mod:`rfsweep.output.writer`: statistics, page
index, page CRC32s, sorting_columns, 512K-row row groups, encodings every reader decodes).

Three layouts of the same rows (``--columns``):

* ``wide`` (the default): the per-layer values as one flat column per position, ``op_0 .. op_{D-1}``,
  ``kernel_p``, ``stride_p``, ``dilation_p``, ``channels_p`` (null beyond a candidate's depth), and the
  space's ``padding`` once per row. Flat columns encode 4-5x faster than lists and every reader takes
  them as ordinary columns (``WHERE kernel_0 = 7``); the README shows the one expression that turns
  them into lists in pandas, pyarrow, polars and duckdb.
* ``lists``: the per-layer values as list columns ``op``, ``kernel``, ``stride``, ``dilation``,
  ``padding``, ``channels`` (the layout before 0.2, called ``full`` then; that name still works).
* ``compact``: neither (``arch_id`` and ``rfsweep show`` decode the layers).

Then rf, jump, eff_padding, center, out_size, params, macs, erf_sigma, peak_act (the peak activation
memory in elements, batch 1) and peak_act_bytes (at ``--act-dtype``) in the narrowest integer types the
space's bounds allow (int64 for params, macs and the peaks), and per detector level its tap, rf and ERF
sigma. The search settings and the rfsweep version are stored in the schema metadata as JSON under ``rfsweep.spec``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rfsweep.core.errors import field_error
from rfsweep.core.files import check_output, reserve_beside
from rfsweep.engine import steer
from rfsweep.engine.objectives import survivor_columns
from rfsweep.engine.run import Batch
from rfsweep.kernels import layer_math as lm
from rfsweep.space import Space, ids
from rfsweep.space.settings import OP_NAMES

META_KEY = b"rfsweep.spec"
GROUPS_PER_CALL = 4  # row groups rfsweep.output.parquet encodes at once (a slab of ~1M rows holds 2-3)
LAYER_FIELDS = ("op", "kernel", "stride", "dilation", "channels")
LIST_COLUMNS = ("op", "kernel", "stride", "dilation", "padding", "channels")
LAYOUTS = ("wide", "lists", "compact")
# Below this many (row, position) cells a batch's wide columns are made in Python (~1 us a cell: the main
# job's 1,000 rows take 8 ms) instead of compiling kernels.cpu.wide_layers (~1.6-2 s on a first run; a
# small output is written by pyarrow's writer, ParquetSink._write_small, and compiles nothing else here)
COMPILED_CELLS = 1 << 15
ALIASES = {"full": "lists"}  # 0.1's name of the list layout


def _int_type(bound: int, signed: bool = True) -> pa.DataType:
    """The narrowest Arrow integer type holding 0..bound (and -bound..bound when signed)."""
    for bits in (8, 16, 32, 64):
        if signed and bound < 2 ** (bits - 1):
            return getattr(pa, f"int{bits}")()
        if not signed and bound < 2**bits:
            return getattr(pa, f"uint{bits}")()
    return pa.int64()


def layout_name(layout: str | None, space: Space | None = None) -> str:
    """The layout asked for, by its current name; None: the space's default (wide; lists for stages)."""
    blocks = space is not None and space.has_blocks
    if layout is None:
        return "lists" if blocks else "wide"
    layout = ALIASES.get(layout, layout)
    if layout not in LAYOUTS:
        raise field_error("columns", layout, f"must be one of {', '.join(LAYOUTS)}")
    if blocks and layout == "wide":
        raise field_error(
            "columns",
            layout,
            "is one column per layer of a chain; a space of stages writes lists (per block) or compact",
        )
    return layout


def _layer_types() -> dict[str, pa.DataType]:
    return {
        "op": pa.dictionary(pa.int8(), pa.string()),
        "kernel": pa.uint8(),  # the space caps kernel, stride and dilation at 255
        "stride": pa.uint8(),
        "dilation": pa.uint8(),
        "channels": pa.int32(),
    }


def layer_columns(space: Space) -> list[str]:
    """The wide layout's per-position column names, field by field: op_0 .. op_{D-1}, kernel_0, ..."""
    return [f"{f}_{p}" for f in LAYER_FIELDS for p in range(space.depth_max)]


def _layer_fields(space: Space, layout: str) -> list[pa.Field]:
    """A chain's per-layer columns: list columns, or one column per position and field (nulls past depth)."""
    types = _layer_types()
    fields = []
    if layout == "lists":
        for name in LIST_COLUMNS:
            # strings in lists, not dictionaries: pyarrow cannot read a list of dictionaries back from more
            # than one row group ("Nested data conversions not implemented for chunked array outputs"); the
            # file still stores them dictionary-encoded (rfsweep.output.writer)
            typ = pa.string() if name in ("op", "padding") else types[name]
            fields.append(pa.field(name, pa.list_(pa.field("item", typ, nullable=False)), False))
    elif layout == "wide":
        for f in LAYER_FIELDS:
            for p in range(space.depth_max):
                fields.append(pa.field(f"{f}_{p}", types[f], nullable=p >= space.depth_min))
        fields.append(pa.field("padding", types["op"], False))
    return fields


def schema(space: Space, layout: str | None = None) -> pa.Schema:
    """Output columns of a layout (see the module docstring)."""
    layout = layout_name(layout, space)
    rf_t = _int_type(space.rf_bound)
    fields = [pa.field("arch_id", ids.arrow_type(space), False)]
    if space.has_blocks:  # no scalar depth (every candidate has all positions): per-stage depths instead
        fields += block_fields(space) if layout == "lists" else []
    else:
        fields += [pa.field("depth", pa.uint8(), False), *_layer_fields(space, layout)]
    # nothing but the per-position columns is ever null: non-nullable fields write ~30% faster
    fields += [
        pa.field("rf", rf_t, False),
        pa.field("jump", _int_type(space.jump_bound), False),
        pa.field("eff_padding", rf_t, False),
        pa.field("center", pa.float64(), False),
        pa.field("out_size", _int_type(space.input_size), False),
        pa.field("params", pa.int64(), False),
        pa.field("macs", pa.int64(), False),
        pa.field("erf_sigma", pa.float64(), False),
        # peak activation memory (kernels.costs.block_peak), elements and bytes at --act-dtype: int64 as
        # params and macs
        pa.field("peak_act", pa.int64(), False),
        pa.field("peak_act_bytes", pa.int64(), False),
    ]
    for lv in space.levels:  # per detector level: its tap (layer index), the tap's rf and ERF sigma
        fields += [
            pa.field(f"s{lv.stride}_tap", pa.int8(), False),
            pa.field(f"s{lv.stride}_rf", rf_t, False),
            pa.field(f"s{lv.stride}_erf_sigma", pa.float64(), False),
        ]
    if space.latency is not None:  # --latency-lut: the sum of the blocks' entries (rfsweep.space.latency)
        fields.append(pa.field("latency_ms", pa.float64(), False))
    return pa.schema(fields)


def metadata(space: Space, extra: dict | None = None) -> dict[bytes, bytes]:
    from rfsweep.core.version import __version__

    spec = {"version": __version__, "space": space.settings, **(extra or {})}
    return {META_KEY: json.dumps(spec, sort_keys=True).encode()}


class LayerTables:
    """Per-position lookup tables (choice index -> op code, kernel, ...) for the per-layer columns."""

    def __init__(self, space: Space):
        self.space = space
        # slices of the kernels' own choice table: one encoding of the choices
        choices = space.kernel.choices
        self.op, self.kernel, self.stride, self.dilation, self.channels = (
            np.ascontiguousarray(choices[:, :, f]) for f in (lm.F_OP, lm.F_K, lm.F_S, lm.F_D, lm.F_C)
        )

    # Arrow arrays made when first used: pa.array imports pandas (pyarrow's pandas shim, ~0.2 s of a
    # process's start), which a search written by the encoder (rfsweep.output.parquet) never needs
    @functools.cached_property
    def op_names(self) -> pa.Array:
        return pa.array(OP_NAMES)

    @functools.cached_property
    def padding(self) -> pa.Array:
        return pa.array([self.space.padding])

    def _tables(self):
        return self.op, self.kernel, self.stride, self.dilation, self.channels, self.space.kernel.cons

    def flatten(self, choice: np.ndarray, depth: np.ndarray):
        """(offsets, op, kernel, stride, dilation, channels) flat arrays of a batch (kernels.cpu.flatten_layers)."""
        from rfsweep.kernels.cpu import flatten_layers

        return flatten_layers(np.ascontiguousarray(choice), np.ascontiguousarray(depth, np.int64), *self._tables())

    def wide(self, choice: np.ndarray, depth: np.ndarray) -> dict[str, pa.Array]:
        """The wide layout's per-position columns of a batch (kernels.cpu.wide_layers), nulls beyond depth:
        compiled for batches of ``COMPILED_CELLS`` (row, position) cells or more, in Python below."""
        from rfsweep.kernels.cpu import wide_layers

        depth = np.ascontiguousarray(depth, np.int64)
        kernel = wide_layers if choice.size >= COMPILED_CELLS else wide_layers.py_func
        arrays = kernel(np.ascontiguousarray(choice), depth, *self._tables())
        types = _layer_types()
        n = len(depth)
        cols: dict[str, pa.Array] = {}
        for p in range(self.space.depth_max):
            valid = None
            nulls = 0
            if p >= self.space.depth_min:
                present = depth > p
                nulls = n - int(np.count_nonzero(present))
                if nulls:
                    valid = pa.py_buffer(np.packbits(present, bitorder="little"))
            for f, values in zip(LAYER_FIELDS, arrays):
                data = pa.py_buffer(values[p])
                if f == "op":  # a dictionary of the ops present only: pyarrow's writer takes a dictionary
                    # column's statistics from its dictionary (all ops: a min of "avgpool" where none is)
                    codes = values[p] if valid is None else values[p][present]
                    used = np.flatnonzero(np.bincount(codes, minlength=len(self.op_names)))
                    lut = np.zeros(len(self.op_names), np.int8)
                    lut[used] = np.arange(len(used))
                    data = pa.py_buffer(lut[values[p]])
                    codes = pa.Array.from_buffers(pa.int8(), n, [valid, data], null_count=nulls)
                    cols[f"op_{p}"] = pa.DictionaryArray.from_arrays(codes, self.op_names.take(pa.array(used)))
                else:
                    cols[f"{f}_{p}"] = pa.Array.from_buffers(types[f], n, [valid, data], null_count=nulls)
        return cols


BLOCK_LIST_FIELDS = ("op", "kernel", "stride", "dilation", "expand", "se", "channels")


def block_fields(space: Space) -> list[pa.Field]:
    """A space of stages' list columns: ``depths`` (blocks per stage), then one entry per block of the
    stages, in order (stem and head are the same in every row: the file's metadata holds them)."""
    types = {
        "op": pa.string(),  # not a dictionary: as the chains' lists layout (_layer_fields)
        "kernel": pa.uint8(),
        "stride": pa.uint8(),
        "dilation": pa.uint8(),
        "expand": pa.float64(),  # MBConv: mid / in channels; bottleneck: mid / out channels
        "se": pa.bool_(),
        "channels": pa.int32(),  # each block's output channels
    }
    fields = [pa.field("depths", pa.list_(pa.field("item", pa.uint8(), nullable=False)), False)]
    for name in BLOCK_LIST_FIELDS:
        fields.append(pa.field(name, pa.list_(pa.field("item", types[name], nullable=False)), False))
    return fields


class BlockTables:
    """Per stage position and configuration: its blocks' fields, flattened, for the per-block lists."""

    def __init__(self, space: Space):
        from rfsweep.space.blocks import BLOCK_OPS

        self.space = space
        self.op_names = pa.array(list(BLOCK_OPS))
        codes = {name: i for i, name in enumerate(BLOCK_OPS)}
        self.per_stage = []
        for p in space.stage_positions:
            configs = space.positions[p]
            count = np.array([len(c.blocks) for c in configs], np.int64)
            start = np.concatenate([[0], np.cumsum(count)])
            blocks = [b for c in configs for b in c.blocks]
            fields = {
                "op": np.array([codes[b.op] for b in blocks], np.int8),
                "kernel": np.array([b.kernel for b in blocks], np.uint8),
                "stride": np.array([b.stride for b in blocks], np.uint8),
                "dilation": np.array([b.dilation for b in blocks], np.uint8),
                "expand": np.array([float(b.expand) for b in blocks], np.float64),
                "se": np.array([b.se for b in blocks], np.bool_),
                "channels": np.array([b.channels for b in blocks], np.int32),  # stages hold no pools
            }
            self.per_stage.append((p, count, start, fields))

    def lists(self, choice: np.ndarray, sch: pa.Schema) -> dict[str, pa.Array]:
        """The ``depths`` and per-block list columns of a batch (``choice[p, i]``: row i's choice at p)."""
        n = choice.shape[1]
        counts = np.stack([count[choice[p]] for p, count, _, _ in self.per_stage], axis=1)  # (n, stages)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(counts.sum(axis=1), out=offsets[1:])
        total = int(offsets[-1])
        values = {name: np.empty(total, arr.dtype) for name, arr in self.per_stage[0][3].items()} if total else {}
        before = offsets[:-1].copy()  # where each row's next stage starts in the flat lists
        for j, (p, _, start, fields) in enumerate(self.per_stage):
            length = counts[:, j]
            m = int(length.sum())
            if m:
                within = np.arange(m) - np.repeat(np.cumsum(length) - length, length)
                dest = np.repeat(before, length) + within
                src = np.repeat(start[choice[p]], length) + within
                for name, arr in fields.items():
                    values[name][dest] = arr[src]
            before = before + length
        lists = {
            "depths": pa.ListArray.from_arrays(
                pa.array(np.arange(n + 1, dtype=np.int32) * len(self.per_stage)),
                pa.array(counts.astype(np.uint8).ravel()),
                type=sch.field("depths").type,
            )
        }
        off = pa.array(offsets.astype(np.int32))
        for name in BLOCK_LIST_FIELDS:
            arr = values.get(name, np.zeros(0, np.int8 if name == "op" else np.int32))
            if name == "op":
                data = self.op_names.take(pa.array(arr.astype(np.int8)))
            elif name == "se":
                data = pa.array(arr.astype(np.bool_))
            else:
                data = pa.array(arr)
            lists[name] = pa.ListArray.from_arrays(off, data, type=sch.field(name).type)
        return lists


def tables_for(space: Space):
    """The lookup tables :func:`to_table` takes: per layer for a chain, per block for a space of stages."""
    return BlockTables(space) if space.has_blocks else LayerTables(space)


def to_table(batch: Batch, space: Space, tables, sch: pa.Schema) -> pa.Table:
    """One batch as an Arrow table of schema ``sch`` (any layout). Every array owns its memory: the batch
    may be a view of buffers the engine reuses while the writer thread still encodes this table."""
    out = batch.out
    n = len(batch)
    depth = out[lm.O_DEPTH]
    cols: dict[str, pa.Array] = {"arch_id": ids.arrow_ids(out, batch.choice, space)}
    names = set(sch.names)
    if isinstance(tables, BlockTables):
        if "op" in names:
            cols.update(tables.lists(batch.choice, sch))
    elif "op" in names:
        offsets, op, kernel, stride, dilation, channels = tables.flatten(batch.choice, depth)
        offsets = pa.array(offsets)  # int32 already
        pad = tables.padding.take(pa.array(np.zeros(len(op), np.int8)))
        for name, values in (
            ("op", tables.op_names.take(pa.array(op))),
            ("kernel", kernel),
            ("stride", stride),
            ("dilation", dilation),
            ("padding", pad),
            ("channels", channels),
        ):
            values = values if isinstance(values, pa.Array) else pa.array(values)
            cols[name] = pa.ListArray.from_arrays(offsets, values, type=sch.field(name).type)
    elif "op_0" in names:
        cols.update(tables.wide(batch.choice, depth))
        cols["padding"] = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), tables.padding)
    for name, values in survivor_columns(out, space, batch.choice).items():
        if name not in names or name == "arch_id":
            continue
        typ = sch.field(name).type
        # owned and already of the column's type: pa.array then wraps the buffer (passing the type made
        # it check every value, 9 ms per million rows and column: most of the compact layout's cost)
        cols[name] = pa.array(np.asarray(values).astype(typ.to_pandas_dtype(), copy=True))
    return pa.Table.from_arrays([cols[f.name] for f in sch], schema=sch)


def in_id_order(space: Space | None, meta: dict[bytes, bytes]) -> bool:
    """Whether a search's rows come in ascending arch_id order (declared as the file's sorting_columns): every
    survivor, or the first ``limit``, or those a ``where`` keeps, of a space whose candidates all have the
    same number of positions (the depth-first walk then visits them in mixed-radix order, ids below 2^63).
    Variable depth interleaves depths; sort, Pareto and sample selections order rows otherwise."""
    if space is None or ids.big(space):
        return False
    if not space.has_blocks and space.depth_min != space.depth_max:
        return False
    try:
        spec = json.loads(meta.get(META_KEY, b"{}"))
    except ValueError:
        return False
    return not any(spec.get(k) for k in ("sort", "pareto", "sample"))


class _Held:
    """Rows short of a whole row group, kept in one buffer of a row group's rows for the sink's life:
    a fresh copy of the rest of every batch and a fresh concatenation with the head of the next
    (0.4.0 to 0.6.0) cost 0.33 s of page faults and copies on R7 [223, 225] (11 slab boundaries),
    single-threaded, a fifth of the compact layout's whole run (measured with cProfile)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity  # a row group's rows: never more are held
        self.out: np.ndarray | None = None
        self.choice: np.ndarray | None = None
        self.rows = 0

    def add(self, batch: Batch, lo: int, hi: int) -> None:
        """Append rows lo:hi of ``batch``."""
        if self.out is None:
            self.out = np.empty((batch.out.shape[0], self.capacity), batch.out.dtype)
            self.choice = np.empty((batch.choice.shape[0], self.capacity), batch.choice.dtype)
        k = hi - lo
        self.out[:, self.rows : self.rows + k] = batch.out[:, lo:hi]
        self.choice[:, self.rows : self.rows + k] = batch.choice[:, lo:hi]
        self.rows += k

    def whole(self) -> Batch:
        """The buffers whole (C-contiguous, as the encoder's kernel is compiled for): rows 0:rows are held."""
        return Batch(self.out, self.choice)

    def batch(self) -> Batch:
        return Batch(self.out[:, : self.rows], self.choice[:, : self.rows])


class ParquetSink:
    """Write tables to ``path`` by the output rule of :mod:`rfsweep.core.files`: atomically (a temporary file
    beside it, renamed on success, removed on any error or signal), or straight into a device or FIFO.

    Batches of ``space`` (:meth:`write_batch`) in the wide or compact layout are encoded here by
    :class:`rfsweep.output.parquet.Encoder`, in row groups of ``writer.ROW_GROUP_ROWS`` (rows left over
    from one batch open the next batch's first group); the writer thread compresses and writes the pages
    (zstd and the file releasing the GIL, as the kernels do), so that overlaps with computing the next
    batch. Rows are held until the first row group is whole: an output that ends before is written by
    pyarrow's writer instead (:meth:`_write_small`), which spares its first run the encoder's compile.
    Anything else becomes an Arrow table for :class:`rfsweep.output.writer.TableWriter`, on the same
    thread (:meth:`write`). At most one job waits in the queue.
    """

    def __init__(
        self,
        path: str,
        sch: pa.Schema,
        meta: dict[bytes, bytes],
        inputs: tuple[str, ...] = (),
        space: Space | None = None,
        threads: int | None = None,
    ):
        from rfsweep.output import parquet as parquet_out
        from rfsweep.output import writer

        self.target = check_output(path, "output", suffixes=(".parquet",), inputs=inputs)
        self.path = self.target.path
        self.tmp = self.target.real if self.target.direct else reserve_beside(self.target.real, ".parquet.tmp")
        self.schema = sch.with_metadata(meta)
        self.space = space
        self.stream = self.file = self.writer = self.encoder = None
        self.group_rows = writer.ROW_GROUP_ROWS  # read here: tests set small groups
        self.held = _Held(self.group_rows)  # rows short of a whole row group, copied (encoder path)
        sorted_by_id = in_id_order(space, meta)
        # batches (write_batch) of a chain's wide or compact layout: encoded by rfsweep.output.parquet,
        # straight from the kernels' output; anything else through Arrow tables and pyarrow's writer
        cols = parquet_out.plan(space, sch) if space is not None else None
        try:
            if cols is not None:  # the header is written with the first row group (_encode)
                self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed in close/abort)
                self.encoder = parquet_out.Encoder(space, self.schema, cols, threads=threads, sorted_by_id=sorted_by_id)
            else:
                if self.target.direct:  # a FIFO cannot seek: a Python file object streams into anything
                    self.stream = pa.output_stream(open(self.tmp, "wb"))  # noqa: SIM115 (closed in close/abort)
                self.writer = writer.TableWriter(self.stream or self.tmp, self.schema, sorted_by_id=sorted_by_id)
        except (OSError, pa.ArrowException) as exc:
            self._close_stream()
            self._remove()
            raise field_error("output", self.path, f"cannot write there ({exc})") from None
        self.tables = tables_for(space) if space is not None and self.encoder is None else None
        self.sorted_by_id = sorted_by_id
        self.encoded = False  # whether the encoder has written a row group (and the file's header)
        self.rows = 0
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._drain, name="rfsweep-parquet-writer", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            try:
                job()  # each job does nothing but its own cleanup once one has failed
            except BaseException as exc:  # reported by the next write() or close()
                if self.error is None:
                    self.error = exc

    def _check(self) -> None:
        if self.error is not None:
            raise field_error("output", self.path, f"write failed: {self.error}")

    def write(self, table: pa.Table) -> None:
        """Queue an Arrow table of the sink's schema (pyarrow's writer only)."""
        self._check()
        if self.writer is None:
            raise TypeError("this sink encodes batches: use write_batch")
        self.queue.put(functools.partial(self._write_table, table))
        self.rows += table.num_rows

    def _write_table(self, table: pa.Table) -> None:  # the writer thread
        if self.error is None:
            self.writer.write(table)

    def _write_group(self, job: tuple) -> None:  # the writer thread
        if self.error is None:
            self.encoder.write_group(self.file, job)
        else:  # its pages' buffer may be reused
            self.encoder.release(job)

    def write_batch(self, batch: Batch) -> None:
        """Queue a batch of survivors of the sink's space: encoded here, row group by row group, and
        compressed and written by the writer thread (or made an Arrow table for pyarrow's writer)."""
        if self.encoder is None:
            # quarter row groups: three tables are in flight (being built, queued, being written), and the
            # lists layout's strings take ~170 MB a million rows (R7 [223, 225] in 1M-row tables: 1.36 GB
            # peak RSS)
            step = max(1, self.group_rows // 4)
            for lo in range(0, len(batch), step):
                self.write(to_table(batch.take(slice(lo, lo + step)), self.space, self.tables, self.schema))
            return
        self._check()
        n = len(batch)
        if n == 0:
            return
        start = 0
        if self.held.rows:  # complete the row group the last batches began
            start = min(n, self.group_rows - self.held.rows)
            self.held.add(batch, 0, start)
            if self.held.rows < self.group_rows:
                return
            self._encode(self.held.whole(), [(0, self.held.rows)])
            self.held.rows = 0
        whole = start + (n - start) // self.group_rows * self.group_rows
        if whole < n and batch.last and (self.encoded or whole > start):
            whole = n  # the last, smaller row group, from the batch itself
        elif whole < n:  # the rest waits for the next batch (a copy: the engine reuses its buffers)
            self.held.add(batch, whole, n)
        self._encode(batch, [(lo, min(lo + self.group_rows, n)) for lo in range(start, whole, self.group_rows)])

    def _encode(self, batch: Batch, bounds: list[tuple[int, int]]) -> None:
        if bounds and not self.encoded:  # a whole first row group: the encoder writes this file
            self.encoded = True
            self.file.write(self.encoder.header())
        for first in range(0, len(bounds), GROUPS_PER_CALL):  # the encoder's buffers grow with the groups
            for job in self.encoder.encode(batch.out, batch.choice, bounds[first : first + GROUPS_PER_CALL]):
                self.queue.put(functools.partial(self._write_group, job))
                self.rows += job[0]

    def _stop(self) -> None:
        """Hand the writer thread its end and wait for it, signals deferred: a signal then raises the
        stop flag instead of cutting the wait short, which left the thread encoding while the interpreter
        exited (Arrow then aborts the process: "cannot create default memory pool", exit -6)."""
        with steer.deferred():
            self.queue.put(None)
            self.thread.join()

    def _close_stream(self) -> None:
        for f in (self.stream, self.file):
            if f is not None:
                with contextlib.suppress(OSError, pa.ArrowException):
                    f.close()

    def _remove(self) -> None:
        if not self.target.direct and os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def _write_small(self) -> None:
        """Write an output the stream ended before its first row group filled (a ``--limit`` run, a small
        space, a sample: the rows held, none encoded) as that one row group with pyarrow's writer under the
        same policy, so that the encoder's kernel is not compiled for it (about 60 % of a first run's
        compile, even for 1,000 rows). With :meth:`_encode`'s first call, the one rule choosing the writer
        of a chain's wide and compact layouts: the encoder once a whole row group is there."""
        from rfsweep.output import writer

        held = self.held.batch() if self.held.rows else None
        self.held.rows = 0
        self.stream = pa.output_stream(self.file)  # the file opened already (a FIFO is opened once)
        small = writer.TableWriter(self.stream, self.schema, self.sorted_by_id, row_group_rows=self.group_rows)
        try:
            if held is not None:
                small.write(to_table(held, self.space, tables_for(self.space), self.schema))
                self.rows += len(held)
            small.close()
        except BaseException:
            small.abort()
            raise

    def close(self) -> None:
        small = self.encoder is not None and not self.encoded
        if self.held.rows and self.error is None and not small:  # the last, smaller row group
            self._encode(self.held.whole(), [(0, self.held.rows)])
            self.held.rows = 0
        self._stop()
        try:
            if small:
                if self.error is None:
                    self._write_small()
                self._close_stream()
                self.stream = None
            elif self.encoder is not None:
                if self.error is None:
                    self.file.write(self.encoder.footer())
                self.file.close()
            elif self.error is None:
                self.writer.close()
            else:
                self.writer.abort()
            if self.stream is not None:
                self.stream.close()
        except (OSError, pa.ArrowException) as exc:
            if self.error is None:
                self.error = exc
        self._check()
        steer.check()  # a signal while the last slab was encoded: stop before the file counts as written
        if not self.target.direct:
            os.replace(self.tmp, self.target.real)

    def abort(self) -> None:
        try:
            self._stop()
            if self.writer is not None:
                with contextlib.suppress(OSError, pa.ArrowException):
                    self.writer.abort()
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
            col = batch.column(0)
            # int64 ids as numpy; decimal128 ids (spaces past int64, rfsweep.space.ids) as Python ints
            values = np.array(ids.python_ids(col), object) if pa.types.is_decimal(col.type) else col.to_numpy()
            if len(values) == 0:
                continue
            rows += len(values)
            found = found or bool((values == arch_id).any())
            lo = int(values.min()) if lo is None else min(lo, int(values.min()))
            hi = int(values.max()) if hi is None else max(hi, int(values.max()))
    except (OSError, pa.ArrowException, KeyError) as exc:
        why = " ".join(str(exc).split())[:200]
        raise field_error("file", str(path), f"its arch_id column cannot be read ({why})") from None
    return found, (lo if lo is not None else -1), (hi if hi is not None else -1), rows
