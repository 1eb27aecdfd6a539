"""A Parquet writer for the ``wide`` and ``compact`` layouts that encodes straight from the kernels' output.

pyarrow's writer needs every column as an Arrow array first and then costs ~4 ns a value to encode
(measured on R7 [223, 225]: 3.0 CPU-s for the 46 wide columns of 11.5 M rows, plus 1.9 s to build
the arrays), more than the kernels that found the rows. Here :func:`rfsweep.kernels.encode.encode_tasks`
encodes every column of a batch's row groups in parallel from the batch itself (the per-layer values
from the choice indices, the scalars from the kernels' fields), and this module only frames the pages:
page headers and the footer in Thrift's compact protocol, pages compressed with zstd by the writer
thread. The file is ordinary Parquet (format 2.6: PLAIN dictionary pages; RLE_DICTIONARY or PLAIN data
pages with v1 headers; one page a column chunk) with the same Arrow schema as pyarrow would write
(``ARROW:schema``), and rfsweep's writer policy (:mod:`rfsweep.output.writer`): exact statistics (min,
max, null_count) on every page and column chunk, the page index (ColumnIndex, OffsetIndex),
column_orders, sorting_columns where the rows are in arch_id order, a CRC32 on every page, and
DELTA_BINARY_PACKED ids only where fastparquet reads them right (narrow miniblocks: see
rfsweep.output.writer). pyarrow, pandas, polars, duckdb
and fastparquet read the same columns and types; tests/output/test_parquet_out.py checks that against
pyarrow's own writer, and tests/output/test_interop.py against every reader.

Kept because it measurably wins (benchmarks/README.md, bench_parquet.py, R7 [223, 225], 0.7.0): 5.4x as fast
as pyarrow's writer with the same policy on the wide layout, 4.0x on compact, files 58-62 % smaller.

Spaces of stages, ids past int64, the ``lists`` layout and outputs smaller than one row group (which would
not pay for the kernel's compile) keep pyarrow's writer (:mod:`rfsweep.output.sink`).
"""

from __future__ import annotations

import base64
import mmap
import struct
import threading
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from rfsweep.kernels import layer_math as lm

# Parquet enums (parquet.thrift)
T_INT32, T_INT64, T_DOUBLE, T_BYTE_ARRAY = 1, 2, 5, 6
REQUIRED, OPTIONAL = 0, 1
E_PLAIN, E_RLE, E_DELTA, E_RLE_DICTIONARY = 0, 3, 5, 8
C_UNCOMPRESSED, C_ZSTD = 0, 6
PAGE_DATA, PAGE_DICTIONARY = 0, 2
CONVERTED = {
    (8, True): 15,
    (16, True): 16,
    (32, True): 17,
    (64, True): 18,
    (8, False): 11,
    (16, False): 12,
    (32, False): 13,
}
UTF8 = 0
# Thrift compact protocol type ids
TT_TRUE, TT_FALSE, TT_BYTE, TT_I16, TT_I32, TT_I64, TT_BINARY, TT_LIST, TT_STRUCT = 1, 2, 3, 4, 5, 6, 8, 9, 12

ZSTD_LEVEL = 1
RING = 2  # page buffers: an encode call fills one while the writer thread still reads the last one's pages
KEEP_COMPRESSED = 0.9  # a column chunk stays uncompressed unless zstd makes it at least 10% smaller


# --- Thrift compact protocol: a struct is a list of (field id, type, value); None fields are left out ---


def _uvarint(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _zigzag(v: int) -> int:
    return (v << 1) ^ (v >> 63)


def _value(out: bytearray, typ, v) -> None:
    if typ in (TT_I16, TT_I32, TT_I64):
        _uvarint(out, _zigzag(v))
    elif typ == TT_BYTE:
        out.append(v & 0xFF)
    elif typ == TT_BINARY:
        _uvarint(out, len(v))
        out += v
    elif typ == TT_STRUCT:
        if isinstance(v, bytes):  # encoded already
            out += v
        else:
            _struct(out, v)
    else:  # (TT_LIST, element type)
        elem = typ[1]
        n = len(v)
        out.append((n << 4 | elem) if n < 15 else (0xF0 | elem))
        if n >= 15:
            _uvarint(out, n)
        for e in v:
            if elem == TT_TRUE:  # a bool in a list is a byte: 1 true, 2 false (as Thrift's Java and C++)
                out.append(1 if e else 2)
            else:
                _value(out, elem, e)


def _struct(out: bytearray, fields) -> None:
    last = 0
    for fid, typ, v in fields:
        if v is None:
            continue
        wire = (TT_TRUE if v else TT_FALSE) if typ == TT_TRUE else (TT_LIST if isinstance(typ, tuple) else typ)
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | wire)
        else:
            out.append(wire)
            _uvarint(out, _zigzag(fid))
        last = fid
        if typ != TT_TRUE:
            _value(out, typ, v)
    out.append(0)


def thrift(fields) -> bytes:
    out = bytearray()
    _struct(out, fields)
    return bytes(out)


LIST_I32 = (TT_LIST, TT_I32)
LIST_BIN = (TT_LIST, TT_BINARY)
LIST_STRUCT = (TT_LIST, TT_STRUCT)
LIST_BOOL = (TT_LIST, TT_TRUE)
LIST_I64 = (TT_LIST, TT_I64)


# --- the columns of a layout ---


@dataclass(frozen=True)
class Column:
    name: str
    kind: int  # kernels.encode.K_*
    mode: int  # kernels.encode.M_*: how it is encoded
    src: int  # a row of the kernels' output, or the field table of a per-layer column
    pos: int  # the layer position of a per-layer column
    nullable: bool
    physical: int  # T_INT32, T_INT64, T_DOUBLE, T_BYTE_ARRAY
    int_type: tuple[int, bool] | None  # (bits, signed) of an integer column
    lut: tuple[int, ...] = ()  # M_LUT: each choice's index into `values`
    values: tuple = ()  # M_LUT, M_CONST: the dictionary (ints; strings for a string column)


FIELD_TABLES = {"op": 0, "kernel": 1, "stride": 2, "dilation": 3}  # encode's field tables (and 4: channels)


def _physical(typ: pa.DataType) -> tuple[int, tuple[int, bool] | None]:
    if pa.types.is_floating(typ):
        return T_DOUBLE, None
    if pa.types.is_dictionary(typ):
        return T_BYTE_ARRAY, None
    bits = typ.bit_width
    return (T_INT64 if bits == 64 else T_INT32), (bits, pa.types.is_signed_integer(typ))


def _lookup(values: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(each choice's index, the distinct values): a per-layer field's dictionary at one position."""
    distinct, index = np.unique(values, return_inverse=True)
    return tuple(int(i) for i in index), tuple(int(v) for v in distinct)


def plan(space, sch: pa.Schema) -> list[Column] | None:
    """The columns of ``sch`` for :func:`rfsweep.kernels.encode.encode_tasks`, or None where this writer does not
    apply."""
    from rfsweep.kernels import encode as enc
    from rfsweep.space import ids
    from rfsweep.space.settings import OP_NAMES

    if space.has_blocks or ids.big(space):
        return None
    scalars = {
        "arch_id": lm.O_ARCH,
        "depth": lm.O_DEPTH,
        "rf": lm.O_RF,
        "jump": lm.O_JUMP,
        "eff_padding": lm.O_PAD,
        "out_size": lm.O_N,
        "params": lm.O_PARAMS,
        "macs": lm.O_MACS,
        "peak_act": lm.O_PEAK,
        "peak_act_bytes": lm.O_PEAK_BYTES,
    }
    for i, lv in enumerate(space.levels):
        scalars[f"s{lv.stride}_tap"] = lm.NO + 3 * i
        scalars[f"s{lv.stride}_rf"] = lm.NO + 3 * i + 1
    sigmas = {"erf_sigma": lm.O_ERF}
    sigmas.update({f"s{lv.stride}_erf_sigma": lm.NO + 3 * i + 2 for i, lv in enumerate(space.levels)})
    choices = space.kernel.choices
    cols = []
    for f in sch:
        if not (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_dictionary(f.type)):
            return None  # list columns: pyarrow's writer
        phys, int_type = _physical(f.type)
        base, _, p = f.name.rpartition("_")
        lut: tuple[int, ...] = ()
        values: tuple = ()
        src = pos = 0
        if f.name == "arch_id":  # distinct in every row: DELTA_BINARY_PACKED (R7 [223, 225]: 3 MB against
            # 13 MB plain + zstd, and 92 MB less to compress), but plain in a row group where a gap between
            # ids would make a miniblock wider than fastparquet reads right (kernels.encode.DELTA_MAX_BITS)
            kind, mode, src = enc.K_OUT, enc.M_DELTA, scalars[f.name]
        elif f.name == "depth" and space.depth_min == space.depth_max:
            kind, mode, src, values = enc.K_OUT, enc.M_CONST, lm.O_DEPTH, (space.depth_min,)
        elif f.name in scalars:
            kind, mode, src = enc.K_OUT, enc.M_RANGE, scalars[f.name]
        elif f.name in sigmas:
            kind, mode, src = enc.K_SIGMA, enc.M_RANGE, sigmas[f.name]
        elif f.name == "center":
            kind, mode = enc.K_CENTER, enc.M_RANGE
        elif f.name == "padding":
            kind, mode, values = enc.K_CONST, enc.M_CONST, (space.padding,)
        elif (base in FIELD_TABLES or base == "channels") and p.isdigit():
            pos = int(p)
            n = space.radices[pos]
            field = {"op": lm.F_OP, "kernel": lm.F_K, "stride": lm.F_S, "dilation": lm.F_D, "channels": lm.F_C}[base]
            kind, mode, src = enc.K_LAYER, enc.M_LUT, FIELD_TABLES.get(base, 4)
            if base == "channels" and not _own_channels(choices[: pos + 1], space):
                kind, mode = enc.K_CHANNELS, enc.M_RANGE  # the width rule or a pool: from the layers before
            else:
                lut, values = _lookup(choices[pos, :n, field])
                if base == "op":
                    values = tuple(OP_NAMES[v] for v in values)
                if len(values) == 1:  # one value at this position: nothing to look at but the nulls
                    mode = enc.M_CONST
        else:
            return None  # a column this writer does not know (list columns, per-block fields)
        cols.append(Column(f.name, kind, mode, src, pos, f.nullable, phys, int_type, lut, values))
    return cols


def _own_channels(choices: np.ndarray, space) -> bool:
    """Whether every choice at the last of these positions is a conv with its own channel count (then the
    column is a lookup of the choice; otherwise it depends on the layers before)."""
    last = choices[-1, : space.radices[len(choices) - 1]]  # the table is padded to the widest position
    return bool(np.all(last[:, lm.F_OP] == lm.OP_CONV) and np.all(last[:, lm.F_C] != lm.CH_WIDTH))


def _descriptors(cols: list[Column]) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's column table and per-choice lookup table."""
    from rfsweep.kernels import encode as enc

    desc = np.zeros((len(cols), enc.ND), np.int64)
    luts = np.zeros((len(cols), max([len(c.lut) for c in cols] + [1])), np.int64)
    for c, col in enumerate(cols):
        desc[c, enc.D_KIND] = col.kind
        desc[c, enc.D_SRC] = col.src
        desc[c, enc.D_POS] = col.pos
        desc[c, enc.D_MODE] = col.mode
        desc[c, enc.D_NULL] = col.nullable
        desc[c, enc.D_WIDTH] = 4 if col.physical == T_INT32 else 8
        desc[c, enc.D_COUNT] = len(col.values)
        luts[c, : len(col.lut)] = col.lut
    return desc, luts


def _schema_element(col: Column) -> list:
    converted = logical = None
    if col.physical == T_BYTE_ARRAY:
        converted, logical = UTF8, [(1, TT_STRUCT, [])]  # LogicalType.STRING
    elif col.int_type is not None:
        bits, signed = col.int_type
        converted = CONVERTED[col.int_type]
        logical = [(10, TT_STRUCT, [(1, TT_BYTE, bits), (2, TT_TRUE, signed)])]  # LogicalType.INTEGER
    return [
        (1, TT_I32, col.physical),
        (3, TT_I32, OPTIONAL if col.nullable else REQUIRED),
        (4, TT_BINARY, col.name.encode()),
        (6, TT_I32, converted),
        (10, TT_STRUCT, logical),
    ]


def _dictionary_page(col: Column, values) -> bytes:
    """A dictionary's values, PLAIN-encoded in the column's physical type. The float columns' keys are
    integers (kernels.encode._fill): 2 x center, 12 x an ERF variance; the floats are made here by the
    same numpy operations as rfsweep.engine.objectives.survivor_columns, so the values are the same bits."""
    from rfsweep.kernels import encode as enc

    if col.physical == T_BYTE_ARRAY:
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    keys = np.asarray(values, np.int64)
    if col.kind == enc.K_CENTER:
        return (keys / 2.0).astype("<f8").tobytes()
    if col.kind == enc.K_SIGMA:
        return np.sqrt(keys / 12.0).astype("<f8").tobytes()
    return keys.astype("<i4" if col.physical == T_INT32 else "<i8").tobytes()


def _sparse(shape: tuple[int, int]) -> np.ndarray:
    """A zeroed uint8 array of which only what is written takes memory, in small pages: each row is a
    page's worst case and pages use a fraction of it (R7 [223, 225] compact: ~0.3 of 4.3 MB). numpy asks
    for huge pages (2 MB) beyond 4 MB, which made every row take at least 2 MB (~100 MB the ring)."""
    size = max(1, shape[0] * shape[1])
    mem = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # Linux
        mem.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(mem, np.uint8, count=shape[0] * shape[1]).reshape(shape)


def _c_rows(a: np.ndarray) -> np.ndarray:
    """A (fields x rows) batch as a C-contiguous array the encoder's kernel takes (its one compiled
    signature): a column slice ``x[:, :k]`` of a C-contiguous array (the engine's aligned batches, whose
    last rows wait for the next slab) as ``x`` itself, rows past k never read (the groups' bounds end
    before); anything else copied. (A slice typed as another layout compiled the encoder twice on a
    first run.)"""
    if a.flags.c_contiguous:
        return a
    owner = a.base
    if a.ndim == 2 and isinstance(owner, np.ndarray) and owner.flags.c_contiguous and a.strides[1] == a.itemsize:
        wide, rest = divmod(a.strides[0], a.itemsize)
        lo = owner.__array_interface__["data"][0]
        start = a.__array_interface__["data"][0]
        if rest == 0 and wide >= a.shape[1] and lo <= start and start + a.shape[0] * a.strides[0] <= lo + owner.nbytes:
            return np.lib.stride_tricks.as_strided(a, (a.shape[0], wide), a.strides)  # writeable, as typed
    return np.ascontiguousarray(a)


class Encoder:
    """Row groups of survivor batches as encoded pages (numba, every core), framed and written by
    :meth:`write_group` (the sink's writer thread: compression and I/O release the GIL)."""

    def __init__(
        self, space, sch: pa.Schema, cols: list[Column], threads: int | None = None, sorted_by_id: bool = False
    ):
        from rfsweep.kernels import encode as enc

        self.space = space
        self.schema = sch
        self.cols = cols
        self.desc, self.luts = _descriptors(cols)
        if threads is None:
            import numba

            threads = numba.config.NUMBA_NUM_THREADS  # all cores, as the walk
        self.threads = threads
        choices = space.kernel.choices
        fields = (lm.F_OP, lm.F_K, lm.F_S, lm.F_D, lm.F_C)  # encode._value's field tables, in this order
        self.tables = np.ascontiguousarray(np.stack([choices[:, :, f] for f in fields]), dtype=np.int64)
        self.cons = space.kernel.cons
        self.lookups = any(c.kind == enc.K_LAYER for c in cols)
        self.rows_cap = self.groups_cap = 0
        self.lens = self.counts = self.keys = None
        # the pages of RING encode calls, each a view of its call's buffer until written (write_group) or
        # released: no copy of ~80 MB of pages on R7 [223, 225] into fresh memory the system zeroes first
        self.ring: list[np.ndarray | None] = [None] * RING
        self.pending = [0] * RING  # jobs of each buffer not yet written or released
        self.turn = 0
        self.freed = threading.Condition()
        self.codec = pa.Codec("zstd", ZSTD_LEVEL)
        self.pool = pa.system_memory_pool()
        self.offset = 4  # after the magic b"PAR1"
        # per row group: (rows, its file offset, per column chunk (its offset, ColumnMetaData bytes, page
        # offset, page size, page statistics)); the page index and footer are written from them at the end
        self.row_groups: list[tuple] = []
        self.num_rows = 0
        self.sorting = [[(1, TT_I32, sch.get_field_index("arch_id")), (2, TT_TRUE, False), (3, TT_TRUE, False)]]
        self.sorted_by_id = sorted_by_id
        self.last_id: int | None = None

    def _buffers(self, groups: int, rows: int) -> None:
        from rfsweep.kernels.encode import DICT_MAX

        if rows > self.rows_cap or groups > self.groups_cap:
            n = len(self.cols) * groups
            self.rows_cap, self.groups_cap = rows, groups
            # page buffers are made again at the new size when next used (a job's views keep the old alive)
            self.ring = [None] * RING
            self.lens = np.zeros(n, np.int64)
            self.counts = np.zeros(n, np.int64)
            self.used = np.zeros(n, np.int64)
            self.keys = _sparse((n, DICT_MAX * 8)).view(np.int64)  # a dictionary's keys: most hold a few
            self.ext = np.zeros((n, 2), np.int64)  # each page's min and max (kernels.encode._extremes)
            self.present = np.zeros(n, np.int64)
            self.scratch = np.empty((2 * self.threads, rows), np.int32)  # two rows a thread (encode_tasks)

    def encode(self, out: np.ndarray, choice: np.ndarray, bounds: list[tuple[int, int]]) -> list[tuple]:
        """Row groups ``bounds`` ([(lo, hi)]) of a batch, each a job (rows, [(dictionary page or None, its
        size, encoding, data page, statistics)] per column, buffer): each data page a view of one of this
        encoder's RING buffers, which the next calls reuse once every job of it is written
        (:meth:`write_group`) or :meth:`release`-d: a caller that drops a job must release it."""
        from rfsweep.engine import steer
        from rfsweep.engine.threads import spread
        from rfsweep.kernels import encode as enc

        if self.rows_cap == 0:  # the first batch: say so if the encoder is about to be compiled (not before:
            # a search that fails first, e.g. on its device, says only why)
            from rfsweep.engine.run import kernels_cached, log

            if not kernels_cached(enc.encode_tasks):
                log.info("compiling the Parquet encoder (once per install, about 20 s)...")
        spans = np.asarray([b for b in bounds if b[1] > b[0]], np.int64).reshape(-1, 2)  # no empty groups
        out, choice = _c_rows(out), _c_rows(choice)
        self._buffers(len(spans), int((spans[:, 1] - spans[:, 0]).max()) if len(spans) else 0)
        if not len(spans):
            return []
        slot = self.turn
        self.turn = (slot + 1) % RING
        with self.freed:  # the writer thread still reads this buffer's pages: wait for it
            self.freed.wait_for(lambda: self.pending[slot] == 0)
        if self.ring[slot] is None:
            # worst case of a page: 8 bytes a value (plain), plus definition levels and run headers
            self.ring[slot] = _sparse((len(self.cols) * self.groups_cap, 8 * self.rows_cap + self.rows_cap // 4 + 1024))
        buf = self.ring[slot]
        steer.call(
            spread,
            enc.encode_tasks,
            self.threads,
            len(spans) * len(self.cols),
            self.desc,
            out,
            lm.O_DEPTH,
            choice,
            self.tables,
            self.luts,
            self.cons,
            spans,
            buf,
            self.lens,
            self.counts,
            self.used,
            self.keys,
            self.scratch,
            self.ext,
            self.present,
        )
        if self.lookups:  # the wide layout: its per-layer columns' statistics
            npos = self.seen_positions = choice.shape[0]
            self.seen = np.zeros((len(spans) * npos, self.tables.shape[2]), np.bool_)
            self.reach = np.zeros(len(spans) * npos, np.int64)
            steer.call(spread, enc.choices_present, self.threads, len(spans) * npos, out, lm.O_DEPTH, choice, spans,
                       self.seen, self.reach)  # fmt: skip
        ncol = len(self.cols)
        counts = self.counts[: len(spans) * ncol].reshape(len(spans), ncol)
        self.desc[:, enc.D_HINT] = np.maximum(counts.max(axis=0), 0)  # the next groups' first guess
        # what a group fell back to, the next ones start from: a range that did not fit is hashed, a
        # dictionary past DICT_MAX values is plain (as Arrow's writer, which
        # also stays plain for the rest of a column once its dictionary overflows): no work thrown away
        used = self.used[: len(spans) * ncol].reshape(len(spans), ncol)
        for c in range(ncol):
            mode = self.desc[c, enc.D_MODE]
            if (used[:, c] == enc.M_PLAIN).any() and mode in (enc.M_RANGE, enc.M_HASH):
                self.desc[c, enc.D_MODE] = enc.M_PLAIN
            elif mode == enc.M_RANGE and (used[:, c] == enc.M_HASH).any():
                self.desc[c, enc.D_MODE] = enc.M_HASH
        if self.sorted_by_id:
            self._check_order(out[lm.O_ARCH, int(spans[0, 0]) : int(spans[-1, 1])])
        jobs = []
        for g, (lo, hi) in enumerate(spans):
            stats = self._statistics(g, int(hi - lo))
            pages = []
            for c, col in enumerate(self.cols):
                t = g * ncol + c
                count = int(self.counts[t])
                dict_page = _dictionary_page(col, col.values or self.keys[t, :count]) if count >= 0 else None
                encoding = E_RLE_DICTIONARY if count >= 0 else (E_DELTA if count == -2 else E_PLAIN)
                pages.append((dict_page, max(count, 0), encoding, buf[t, : self.lens[t]], stats[c]))
            jobs.append((int(hi - lo), pages, slot))
        with self.freed:
            self.pending[slot] += len(jobs)
        return jobs

    def release(self, job: tuple) -> None:
        """A job's pages are no longer needed (written, or dropped after a failure): its buffer may be reused."""
        with self.freed:
            self.pending[job[2]] -= 1
            self.freed.notify_all()

    def _statistics(self, g: int, rows: int) -> list[tuple]:
        """Per column of the g-th group just encoded: (min, max, null count) of the values written, as the
        kernel found them (kernels.encode._extremes); (None, None, rows) for a column of nulls only."""
        from rfsweep.kernels import encode as enc
        from rfsweep.space.settings import OP_NAMES

        stats = []
        for c, col in enumerate(self.cols):
            t = g * len(self.cols) + c
            if col.kind == enc.K_CONST:
                stats.append((col.values[0], col.values[0], 0))
                continue
            if col.kind == enc.K_LAYER:  # a lookup of the choice: the values of the choices present
                task = g * self.seen_positions + col.pos
                present = int(self.reach[task])
                if present == 0:
                    stats.append((None, None, rows))
                    continue
                values = self.tables[col.src, col.pos][self.seen[task]]
                if col.physical == T_BYTE_ARRAY:  # op codes: their names, in byte order
                    names = sorted(OP_NAMES[int(k)] for k in np.unique(values))
                    stats.append((names[0], names[-1], rows - present))
                else:
                    stats.append((int(values.min()), int(values.max()), rows - present))
                continue
            present = int(self.present[t])
            if present == 0:
                stats.append((None, None, rows))
                continue
            if col.physical == T_DOUBLE:
                vmin, vmax = (float(x) for x in self.ext[t].view(np.float64))
            elif col.physical == T_BYTE_ARRAY:  # op codes present: their names, in byte order
                mask = int(self.ext[t, 1])
                names = sorted(OP_NAMES[k] for k in range(64) if mask >> k & 1)
                vmin, vmax = names[0], names[-1]
            else:
                vmin, vmax = int(self.ext[t, 0]), int(self.ext[t, 1])
            stats.append((vmin, vmax, rows - present))
        return stats

    def _check_order(self, ids: np.ndarray) -> None:
        """Rows declared in arch_id order (the footer's sorting_columns) must be: checked as they pass."""
        if len(ids) == 0:
            return
        if (self.last_id is not None and ids[0] < self.last_id) or bool(np.any(ids[1:] < ids[:-1])):
            raise RuntimeError("rows declared in arch_id order are not (a bug: please report it)")
        self.last_id = int(ids[-1])

    def header(self) -> bytes:
        return b"PAR1"

    def _page(self, fh, kind: int, raw: tuple[bytes, bytes], values: int, encoding: int, stats=None) -> tuple:
        """Write one page (header with its CRC32 + body); returns (uncompressed, compressed) sizes with the
        header, and its offset."""
        crc = zlib.crc32(raw[1])
        crc = crc - (1 << 32) if crc >= 1 << 31 else crc  # Thrift's i32
        if kind == PAGE_DATA:
            levels = [(1, TT_I32, values), (2, TT_I32, encoding), (3, TT_I32, E_RLE), (4, TT_I32, E_RLE)]
            sub = (5, TT_STRUCT, levels + [(5, TT_STRUCT, stats)])
        else:
            sub = (7, TT_STRUCT, [(1, TT_I32, values), (2, TT_I32, encoding)])
        head = thrift([(1, TT_I32, kind), (2, TT_I32, len(raw[0])), (3, TT_I32, len(raw[1])), (4, TT_I32, crc), sub])
        offset = self.offset
        fh.write(head)
        fh.write(raw[1])
        self.offset += len(head) + len(raw[1])
        return len(head) + len(raw[0]), len(head) + len(raw[1]), offset

    def write_group(self, fh, job: tuple) -> None:
        """Compress and write one encoded row group, keep its column chunks for the footer, release it."""
        try:
            self._write_group(fh, job)
        finally:
            self.release(job)

    def _write_group(self, fh, job: tuple) -> None:
        rows, pages, _ = job
        chunks = []
        start = self.offset
        for col, (dict_page, count, encoding, data, (vmin, vmax, nulls)) in zip(self.cols, pages):
            bodies = [b for b in (dict_page, data) if b is not None]
            # Arrow buffers (no copy into bytes) from the C library's allocator: mimalloc, Arrow's default,
            # gave the memory of each back to the system and took fresh (zeroed) memory for the next
            packed = [self.codec.compress(b, memory_pool=self.pool) for b in bodies]
            zipped = sum(map(len, packed)) <= KEEP_COMPRESSED * sum(map(len, bodies))
            codec = C_ZSTD if zipped else C_UNCOMPRESSED
            written = [(b, p if zipped else b) for b, p in zip(bodies, packed)]
            chunk_start = self.offset
            usize = csize = 0
            dict_offset = None
            if dict_page is not None:
                dict_offset = self.offset
                u, c, _ = self._page(fh, PAGE_DICTIONARY, written.pop(0), count, E_PLAIN)
                usize, csize = usize + u, csize + c
            vmin, vmax = _bounds(col, vmin, vmax)
            stats = [(3, TT_I64, nulls)] if vmin is None else [
                (3, TT_I64, nulls), (5, TT_BINARY, vmax), (6, TT_BINARY, vmin), (7, TT_TRUE, True), (8, TT_TRUE, True)
            ]  # fmt: skip  # Statistics: null_count, max_value, min_value (exact) unless all null
            u, c, data_offset = self._page(fh, PAGE_DATA, written.pop(0), rows, encoding, stats)
            usize, csize = usize + u, csize + c
            encodings = sorted({E_PLAIN, E_RLE, encoding})
            meta = thrift(
                [
                    (1, TT_I32, col.physical),
                    (2, LIST_I32, encodings),
                    (3, LIST_BIN, [col.name.encode()]),
                    (4, TT_I32, codec),
                    (5, TT_I64, rows),
                    (6, TT_I64, usize),
                    (7, TT_I64, csize),
                    (9, TT_I64, data_offset),
                    (11, TT_I64, dict_offset),
                    (12, TT_STRUCT, stats),
                ]
            )
            page = (data_offset, c, vmin is None, vmin or b"", vmax or b"", nulls)
            chunks.append((chunk_start, usize, csize, meta, page))
        self.row_groups.append((rows, start, chunks))
        self.num_rows += rows

    def footer(self) -> bytes:
        """The page index (every ColumnIndex, then every OffsetIndex; one page a column chunk), FileMetaData
        (with the Arrow schema, as pyarrow stores it) and the closing length and magic."""
        from rfsweep.core.version import __version__

        tail = bytearray()
        at = self.offset
        column_index = {}
        for g, (_, _, chunks) in enumerate(self.row_groups):
            for c, (*_, (_, _, null_page, vmin, vmax, nulls)) in enumerate(chunks):
                ci = thrift([(1, LIST_BOOL, [null_page]), (2, LIST_BIN, [vmin]), (3, LIST_BIN, [vmax]),
                             (4, TT_I32, 0), (5, LIST_I64, [nulls])])  # fmt: skip  # boundary order: unordered
                column_index[g, c] = (at + len(tail), len(ci))
                tail += ci
        offset_index = {}
        for g, (_, _, chunks) in enumerate(self.row_groups):
            for c, (*_, (page_offset, page_size, *_)) in enumerate(chunks):
                oi = thrift([(1, LIST_STRUCT, [[(1, TT_I64, page_offset), (2, TT_I32, page_size), (3, TT_I64, 0)]])])
                offset_index[g, c] = (at + len(tail), len(oi))
                tail += oi
        groups = []
        for g, (rows, start, chunks) in enumerate(self.row_groups):
            columns = [
                [
                    (2, TT_I64, chunk_start),
                    (3, TT_STRUCT, meta),
                    (4, TT_I64, offset_index[g, c][0]),
                    (5, TT_I32, offset_index[g, c][1]),
                    (6, TT_I64, column_index[g, c][0]),
                    (7, TT_I32, column_index[g, c][1]),
                ]
                for c, (chunk_start, _, _, meta, _) in enumerate(chunks)
            ]
            groups.append(
                [
                    (1, LIST_STRUCT, columns),
                    (2, TT_I64, sum(u for _, u, _, _, _ in chunks)),
                    (3, TT_I64, rows),
                    (4, LIST_STRUCT, self.sorting if self.sorted_by_id else None),
                    (5, TT_I64, start),
                    (6, TT_I64, sum(c for _, _, c, _, _ in chunks)),
                    (7, TT_I16, g),
                ]
            )
        arrow_schema = base64.b64encode(self.schema.serialize().to_pybytes())
        kv = [[(1, TT_BINARY, k), (2, TT_BINARY, v)] for k, v in (self.schema.metadata or {}).items()]
        kv.append([(1, TT_BINARY, b"ARROW:schema"), (2, TT_BINARY, arrow_schema)])
        root = [(4, TT_BINARY, b"schema"), (5, TT_I32, len(self.cols))]
        meta = thrift(
            [
                (1, TT_I32, 2),
                (2, LIST_STRUCT, [root] + [_schema_element(c) for c in self.cols]),
                (3, TT_I64, self.num_rows),
                (4, LIST_STRUCT, groups),
                (5, LIST_STRUCT, kv),
                (6, TT_BINARY, f"rfsweep version {__version__}".encode()),
                (7, LIST_STRUCT, [[(1, TT_STRUCT, [])] for _ in self.cols]),  # TypeDefinedOrder each
            ]
        )
        return bytes(tail) + meta + struct.pack("<I", len(meta)) + b"PAR1"


def _bounds(col: Column, vmin, vmax) -> tuple[bytes | None, bytes | None]:
    """Min and max as Parquet stores them: PLAIN in the column's physical type (strings: their bytes); a
    float zero is -0.0 as a minimum and +0.0 as a maximum (the format's rule); (None, None): all null."""
    if vmin is None:
        return None, None
    if col.physical == T_BYTE_ARRAY:
        return vmin.encode(), vmax.encode()
    if col.physical == T_DOUBLE:
        return struct.pack("<d", -0.0 if vmin == 0 else vmin), struct.pack("<d", 0.0 if vmax == 0 else vmax)
    bits, signed = col.int_type
    fmt = ("<q" if signed else "<Q") if col.physical == T_INT64 else ("<i" if signed else "<I")
    return struct.pack(fmt, vmin), struct.pack(fmt, vmax)
