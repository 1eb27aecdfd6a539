"""The one Parquet writer policy: every file rfsweep writes (searches in every layout, spaces of stages,
dataset parts, anchor-search outputs) goes through :class:`TableWriter`.

What every file carries, so that a query engine can trust and prune it:

* statistics (min, max, null_count; exact) on every column chunk and every page, the page index
  (ColumnIndex and OffsetIndex) and column_orders, so duckdb, polars and pyarrow skip row groups and pages
  a filter on ``rf``, ``params`` or ``arch_id`` excludes (tests/output/test_pruning.py);
* a CRC32 on every page: a flipped bit is an error in readers that check (pyarrow with
  ``page_checksum_verification=True``), never a different number;
* ``sorting_columns`` = arch_id ascending where the rows are in arch_id order (the caller says so and
  :class:`TableWriter` checks it as the rows pass: a footer never claims an order the rows lack);
* row groups of :data:`ROW_GROUP_ROWS` rows, only the last one smaller, whatever the sizes of the tables
  handed in (a ``--where`` search hands in a few thousand rows at a time): at most one row group is held.

Encodings: dictionary for string columns (``op``, ``padding``, ``op_p``, ...), PLAIN for every number.
Never DELTA_BINARY_PACKED here; rfsweep's own encoder (rfsweep.output.parquet, the wide and compact layouts
past one row group) delta-codes ``arch_id`` only where every miniblock is at most
kernels.encode.DELTA_MAX_BITS = 24 bits wide, which fastparquet reads right (1.6 MiB instead of 13 MiB
on R7 [223, 225], and 92 MB less to compress), and writes a row group with a wider gap PLAIN:

    Upstream report (fastparquet 2026.9.0, numpy 2.4): an INT64 column written with DELTA_BINARY_PACKED
    (pyarrow 26: ``pq.write_table(t, f, use_dictionary=False, column_encoding="DELTA_BINARY_PACKED")``)
    reads back wrong from ``fastparquet.ParquetFile(f).to_pandas()`` whenever a miniblock's bit width is
    28 or more: 200,000 random int64 in [0, 2**28) read back 199,944 wrong values; in [0, 2**26), none.
    With ``data_page_version="2.0"`` every value of such a column reads back wrong, whatever the width.
    pyarrow, duckdb and polars read the same files correctly. No error is raised. rfsweep's ``macs``
    (deltas of 30+ bits) and ``arch_id`` (gaps between survivors) hit it: 99.99 % of macs were wrong in
    0.3.0's files. BYTE_STREAM_SPLIT is no way out: fastparquet refuses it (NotImplementedError: Encoding 9).

    Upstream report 2 (same versions): a list<string> column whose strings are PLAIN-encoded reads back as
    None in every row: ``pq.write_table(pa.table({"op": [["conv", "max"], ["conv"], []]}), f,
    use_dictionary=False)``, then ``fastparquet.ParquetFile(f).to_pandas()["op"]`` is [None, None, None]
    (seen on files of one row group; dictionary-encoded strings read right). So the strings of the lists
    layout's ``op`` and ``padding`` are always dictionary-encoded (a handful of distinct values: the
    dictionary never falls back to PLAIN).

Here (pyarrow's writer) dictionaries for the integer columns too were measured and not taken: the R7
[223, 225] wide layout took 8.7 s to write with them against 3.3 s PLAIN + zstd, for an 18 % smaller file
(2026-12-05, 2 cores under a load of ~4). The wide and compact layouts of a chain are rfsweep's own encoder
(rfsweep.output.parquet), which writes the same policy with cheap dictionaries of its own.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 1 << 19  # 512K rows a row group (README, docs/guide/output.md)
ZSTD_LEVEL = 1
ID_COLUMN = "arch_id"


def _is_text(typ: pa.DataType) -> bool:
    while pa.types.is_list(typ) or pa.types.is_large_list(typ):
        typ = typ.value_type
    return pa.types.is_dictionary(typ) or pa.types.is_string(typ) or pa.types.is_large_string(typ)


def dictionary_columns(sch: pa.Schema) -> list[str]:
    """The columns written with a dictionary: those holding strings (the rest are PLAIN), by their leaf's
    path (a list column's strings are ``name.list.element``)."""
    paths = []
    for f in sch:
        if _is_text(f.type):
            path, typ = f.name, f.type
            while pa.types.is_list(typ) or pa.types.is_large_list(typ):
                path, typ = f"{path}.list.element", typ.value_type
            paths.append(path)
    return paths


def options(sch: pa.Schema, sorted_by_id: bool = False) -> dict:
    """The keyword arguments of :class:`pyarrow.parquet.ParquetWriter` every rfsweep file is written with."""
    sorting = [pq.SortingColumn(sch.get_field_index(ID_COLUMN))] if sorted_by_id else None
    return dict(
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=dictionary_columns(sch),
        write_statistics=True,
        write_page_index=True,
        write_page_checksum=True,
        sorting_columns=sorting,
        data_page_version="1.0",  # fastparquet misreads some v2 pages (above)
    )


class TableWriter:
    """A :class:`pyarrow.parquet.ParquetWriter` with :func:`options`, taking tables of any size and writing
    row groups of ``row_group_rows`` (default :data:`ROW_GROUP_ROWS`; only the last one smaller);
    ``sorted_by_id``: the rows come in ascending arch_id order (int64 ids), declared in the footer and
    checked as they pass."""

    def __init__(self, where, sch: pa.Schema, sorted_by_id: bool = False, row_group_rows: int | None = None) -> None:
        if sorted_by_id and sch.field(ID_COLUMN).type != pa.int64():
            raise ValueError("sorted_by_id needs int64 arch_ids")
        self.schema = sch
        self.row_group_rows = int(row_group_rows or ROW_GROUP_ROWS)  # read here: tests set small groups
        self.sorted_by_id = sorted_by_id
        self.last_id: int | None = None
        self.held: list[pa.Table] = []
        self.held_rows = 0
        self.rows = 0
        self.writer = pq.ParquetWriter(where, sch, **options(sch, sorted_by_id))

    def _check_order(self, table: pa.Table) -> None:
        ids = table.column(ID_COLUMN).to_numpy()
        if len(ids) == 0:
            return
        first = int(ids[0])
        if (self.last_id is not None and first < self.last_id) or bool(np.any(ids[1:] < ids[:-1])):
            raise RuntimeError("rows declared in arch_id order are not (a bug: please report it)")
        self.last_id = int(ids[-1])

    def write(self, table: pa.Table) -> None:
        """Hold the rows; write every full row group they complete."""
        if table.num_rows == 0:
            return
        table = table.replace_schema_metadata(self.schema.metadata)
        if self.sorted_by_id:
            self._check_order(table)
        self.held.append(table)
        self.held_rows += table.num_rows
        if self.held_rows >= self.row_group_rows:
            whole = pa.concat_tables(self.held)
            full = (self.held_rows // self.row_group_rows) * self.row_group_rows
            self.writer.write_table(whole.slice(0, full), row_group_size=self.row_group_rows)
            rest = whole.slice(full)
            # the rest owns its memory: the buffers of the tables written can go
            self.held = [rest.combine_chunks()] if rest.num_rows else []
            self.held_rows = rest.num_rows
        self.rows += table.num_rows

    def close(self) -> None:
        """Write the last (smaller) row group and the footer."""
        if self.held_rows:
            self.writer.write_table(pa.concat_tables(self.held), row_group_size=self.row_group_rows)
            self.held, self.held_rows = [], 0
        self.writer.close()

    def abort(self) -> None:
        """Drop what is held and close the file (the caller removes it)."""
        self.held, self.held_rows = [], 0
        self.writer.close()
