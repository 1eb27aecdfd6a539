"""What every Parquet file rfsweep writes must carry (rfsweep.output.writer), read back from its footer with
pyarrow and compared with the data itself: used by the tests of every path that writes one."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rfsweep.output import writer


def _flat(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A leaf column's values as Parquet sees them: list items flattened, dictionaries decoded."""
    while pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        col = pc.list_flatten(col)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col


def assert_policy(
    path, sorted_by_id: bool | None = None, group_rows: int | None = None, delta_columns=("arch_id",)
) -> pa.Table:
    """The file at ``path`` has: row groups of ``group_rows`` (default writer.ROW_GROUP_ROWS) but the last;
    on every column chunk exact statistics (min, max, null_count), a ColumnIndex and an OffsetIndex; no
    DELTA_BINARY_PACKED but on arch_id (the encoder's, narrow enough for fastparquet: test_interop reads it
    back); page CRCs that verify; sorting_columns = arch_id ascending when ``sorted_by_id``
    (None: whichever the file says, checked against the rows). Returns the table read."""
    group_rows = group_rows or writer.ROW_GROUP_ROWS
    f = pq.ParquetFile(path, page_checksum_verification=True)
    table = f.read()
    md = f.metadata
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    assert all(s == group_rows for s in sizes[:-1]) and (not sizes or 0 < sizes[-1] <= group_rows), sizes
    assert md.num_rows == table.num_rows
    start = 0
    for g, rows in enumerate(sizes):
        rg = md.row_group(g)
        if sorted_by_id is not None:
            want = (pq.SortingColumn(table.schema.get_field_index("arch_id")),) if sorted_by_id else ()
            assert tuple(rg.sorting_columns) == want, (rg.sorting_columns, want)
        for j in range(rg.num_columns):
            chunk = rg.column(j)
            name = chunk.path_in_schema.split(".")[0]
            assert chunk.has_column_index and chunk.has_offset_index, chunk.path_in_schema
            if name not in delta_columns:
                assert "DELTA_BINARY_PACKED" not in chunk.encodings, chunk.path_in_schema
            assert chunk.is_stats_set, chunk.path_in_schema
            st = chunk.statistics
            col = table.column(name).slice(start, rows)
            values = _flat(col)
            if values is not col and not pa.types.is_dictionary(table.column(name).type):
                assert st.null_count == 0  # list items are never null
            else:
                assert st.null_count == col.null_count, chunk.path_in_schema
            mm = pc.min_max(values).as_py()
            assert st.has_min_max == (mm["min"] is not None), chunk.path_in_schema
            if st.has_min_max:
                got = (st.min, st.max)
                if isinstance(got[0], bytes):
                    got = tuple(v.decode() for v in got)
                assert got == (mm["min"], mm["max"]), (chunk.path_in_schema, got, mm)
        start += rows
    if sorted_by_id or (sorted_by_id is None and sizes and md.row_group(0).sorting_columns):
        ids = table.column("arch_id").to_numpy()
        assert (ids[1:] > ids[:-1]).all()
    return table
