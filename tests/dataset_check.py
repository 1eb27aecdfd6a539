"""What the dataset tests share: a table compared value for value, whatever its chunks and dictionaries."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

# every selection option, each on its own and in the combinations the CLI allows
SELECTIONS = {
    "all": {},
    "where": {"where": "params < 600 and depth >= 2"},
    "limit": {"limit": 700},
    "limit_where": {"limit": 90, "where": "rf >= 9"},
    "sort": {"limit": 40, "sort": "params"},
    "sort_erf_where": {"limit": 25, "sort": "erf", "where": "depth <= 3"},
    "pareto": {"pareto": "params,macs"},
    "pareto_where": {"pareto": "rf_error,params,depth", "where": "macs > 1000"},
    "sample": {"sample": 333, "seed": 5},
    "sample_all": {"sample": 10**6, "seed": 1},
}

# the same on a space of stages (no depth column; --sort, --pareto and --sample by dynamic programming,
# one job; "sort_where" and "pareto_where" walk)
STAGE_SELECTIONS = {
    "all": {},
    "where": {"where": "params < 54000"},
    "limit": {"limit": 700},
    "sort": {"limit": 40, "sort": "macs"},
    "sort_where": {"limit": 25, "sort": "params", "where": "rf >= 87"},
    "pareto": {"pareto": "params,macs"},
    "pareto_where": {"pareto": "rf_error,params", "where": "macs > 1000"},
    "sample": {"sample": 333, "seed": 5},
}


def plain(table: pa.Table) -> pa.Table:
    """One chunk per column, dictionary columns as their values, no schema metadata: two tables with the
    same rows in the same order are then equal whichever files and row groups they came from."""
    cols = []
    for col in table.columns:
        col = col.combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def assert_same_rows(single_file, directory) -> int:
    """Reading the dataset directory gives exactly the single file's rows, in order; returns how many."""
    want = plain(pq.read_table(single_file))
    got = plain(pq.read_table(directory))
    assert got.schema == want.schema
    assert got.num_rows == want.num_rows
    assert got.column("arch_id").to_pylist() == want.column("arch_id").to_pylist()
    assert got.equals(want)
    return got.num_rows
