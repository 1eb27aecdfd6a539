"""duckdb prunes rfsweep's row groups by their statistics (issue 22, item 7): EXPLAIN ANALYZE of a
selective filter on rf, params or arch_id reports scanning exactly the row groups whose [min, max] the
filter can match, fewer than all, and the count equals the rows' own. Row groups of 500 rows here (the
writer's row-group size is a parameter), files of the encoder (wide, compact) and pyarrow's (lists)."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from rfsweep import api as sweep
from rfsweep.output import writer
from rfsweep.space import build_space

pytestmark = pytest.mark.interop
SPACE = dict(depth=5, kernels=[1, 3, 5], strides=[1, 2], input_size=64, rf_min=5, rf_max=60)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prune")
    before = writer.ROW_GROUP_ROWS
    writer.ROW_GROUP_ROWS = 500
    try:
        out = {}
        for layout in ("wide", "compact", "lists"):
            out[layout] = tmp / f"{layout}.parquet"
            sweep.search_to_parquet(str(out[layout]), build_space(SPACE), columns=layout)
    finally:
        writer.ROW_GROUP_ROWS = before
    return out


def _bounds(path, column):
    md = pq.ParquetFile(path).metadata
    j = md.schema.to_arrow_schema().get_field_index(column)
    stats = [md.row_group(g).column(j).statistics for g in range(md.num_row_groups)]
    return [s.min for s in stats], [s.max for s in stats]


@pytest.mark.parametrize("layout", ["wide", "compact", "lists"])
@pytest.mark.parametrize("column", ["rf", "params", "arch_id"])
def test_duckdb_skips_the_row_groups_a_filter_excludes(files, layout, column):
    duckdb = pytest.importorskip("duckdb", minversion="2.0")  # EXPLAIN ANALYZE reports "Row Groups Scanned"
    path = files[layout]
    mins, maxs = _bounds(path, column)
    groups = len(mins)
    assert groups > 20
    if column == "arch_id":  # ids run up: the first few groups hold the smallest
        t = sorted(mins)[groups // 8]
        where, hit = f"arch_id < {t}", sum(m < t for m in mins)
    else:  # the largest values sit in a few groups
        t = sorted(maxs, reverse=True)[groups // 8]
        where, hit = f"{column} > {t}", sum(m > t for m in maxs)
    assert 0 < hit < groups // 2
    con = duckdb.connect()
    # sum(macs), not count(*): duckdb counts the groups a filter holds whole from their statistics alone
    query = f"SELECT count(*), sum(macs) FROM read_parquet('{path}') WHERE {where}"
    plan = con.sql(f"EXPLAIN ANALYZE {query}").fetchall()[0][1]
    found = re.search(r"Row Groups Scanned:\s*([\d,]+)\s*/\s*([\d,]+)", plan)
    assert found, plan
    scanned, total = (int(x.replace(",", "")) for x in found.groups())
    assert (scanned, total) == (hit, groups), plan
    table = pq.read_table(path, columns=[column, "macs"])
    values, macs = table[column].to_numpy(), table["macs"].to_numpy()
    keep = values < t if column == "arch_id" else values > t
    assert con.sql(query).fetchall() == [(int(keep.sum()), int(macs[keep].sum()))]
