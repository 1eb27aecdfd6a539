"""An output of a chain's wide or compact layout that ends before its first row group fills (a --limit run,
a sample, a small space) is written by pyarrow's writer under the writer policy, so that the encoder's
kernel (kernels/encode.py, most of a first run's compile) is neither called nor compiled for it
(issue 24 item 1); from one whole row group on, the encoder writes the file as before. Both writers give
the same values, row groups, statistics and sorting_columns for the same rows."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_writer_policy import CHAIN, IN_ID_ORDER, PATHS

from parquet_check import assert_policy
from rfsweep import api as sweep
from rfsweep.kernels import layer_math as lm
from rfsweep.kernels.cpu import wide_layers
from rfsweep.output import parquet as parquet_out
from rfsweep.output import sink, writer
from rfsweep.output.batches import selected_batches
from rfsweep.space import build_space


def _by_encoder(path) -> bool:
    created_by = pq.ParquetFile(path).metadata.created_by
    assert created_by.startswith(("rfsweep version", "parquet-cpp-arrow")), created_by
    return created_by.startswith("rfsweep version")


def _decoded(table: pa.Table) -> pa.Table:
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.table(cols, names=table.column_names)


def _footer(path) -> list:
    """Per row group: its rows, sorting_columns, and per column (path, has min/max, min, max, nulls)."""
    meta = pq.ParquetFile(path).metadata
    groups = []
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        cols = []
        for c in range(rg.num_columns):
            s = rg.column(c).statistics
            assert s is not None
            cols.append((rg.column(c).path_in_schema, s.has_min_max, s.min if s.has_min_max else None,
                         s.max if s.has_min_max else None, s.null_count))  # fmt: skip
        groups.append((rg.num_rows, rg.sorting_columns, cols))
    return groups


@pytest.mark.parametrize("layout", ["wide", "compact"])
@pytest.mark.parametrize("depth", ["1-4", 4])
@pytest.mark.parametrize("path_name", sorted(PATHS))
def test_both_writers_give_the_same_values_and_footer(tmp_path, monkeypatch, layout, depth, path_name):
    """The same rows written as one row group by pyarrow's writer (the output is smaller than a row group)
    and by the encoder (a row group of exactly that many rows)."""
    space = build_space({**CHAIN, "depth": depth})
    small, whole = tmp_path / "small.parquet", tmp_path / "whole.parquet"
    sweep.search_to_parquet(str(small), space, columns=layout, **PATHS[path_name])
    rows = pq.ParquetFile(small).metadata.num_rows
    assert 0 < rows < writer.ROW_GROUP_ROWS and not _by_encoder(small)
    monkeypatch.setattr(writer, "ROW_GROUP_ROWS", rows)
    sweep.search_to_parquet(str(whole), space, columns=layout, **PATHS[path_name])
    assert _by_encoder(whole)
    sorted_by_id = depth == 4 and path_name in IN_ID_ORDER
    got = [assert_policy(p, sorted_by_id=sorted_by_id, group_rows=rows) for p in (small, whole)]
    assert got[0].schema.equals(got[1].schema)  # types and the rfsweep.spec metadata
    assert _decoded(got[0]).equals(_decoded(got[1]))
    assert _footer(small) == _footer(whole)


def test_a_small_output_never_calls_the_encoder(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the encoder was called for an output smaller than one row group")

    monkeypatch.setattr(parquet_out.Encoder, "encode", refuse)
    space = build_space({**CHAIN, "depth": "1-4"})
    for layout in ("wide", "compact"):
        path = tmp_path / f"{layout}.parquet"
        sweep.search_to_parquet(str(path), space, columns=layout, limit=50, sort="params")
        assert pq.ParquetFile(path).metadata.num_rows == 50 and not _by_encoder(path)
    empty = tmp_path / "empty.parquet"  # no rows at all: a valid file of no row groups
    sweep.search_to_parquet(str(empty), space, rf_min=500, rf_max=600)
    assert pq.ParquetFile(empty).metadata.num_row_groups == 0 and not _by_encoder(empty)


def test_an_output_of_a_whole_row_group_or_more_is_encoded(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "ROW_GROUP_ROWS", 64)
    space = build_space({**CHAIN, "depth": 4})
    path = tmp_path / "out.parquet"
    sweep.search_to_parquet(str(path), space, columns="wide")
    table = assert_policy(path, sorted_by_id=True, group_rows=64)
    assert table.num_rows > 64 and _by_encoder(path)


@pytest.mark.slow
def test_a_first_small_run_does_not_compile_the_encoder(tmp_path):
    """From an empty numba cache, a --limit search to a file compiles neither the encoder's kernels nor
    wide_layers (rows made in Python, sink.COMPILED_CELLS), and prints no encoder note."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    cli = [sys.executable, "-c", "from rfsweep.cli.main import run; run()"]
    small = [*cli, "search", "--depth", "1-4", "--kernels", "1,3,5", "--strides", "1,2", "--input-size", "32",
             "--rf-min", "5", "--rf-max", "40", "--sort", "params", "--limit", "100"]  # fmt: skip
    small += ["-o", str(tmp_path / "s.parquet")]
    proc = subprocess.run(small, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Parquet encoder" not in proc.stderr
    compiled = [f for _, _, files in os.walk(tmp_path / "cache") for f in files]
    assert compiled and not [f for f in compiled if f.startswith(("encode.", "cpu.wide_layers"))], compiled
    assert not _by_encoder(tmp_path / "s.parquet")


def test_wide_columns_are_the_same_compiled_or_in_python():
    """LayerTables.wide runs kernels.cpu.wide_layers in Python below COMPILED_CELLS cells: same arrays
    (the width rule's channels included)."""
    space = build_space({**CHAIN, "depth": "1-4", "width": 4, "max_width": 16})
    tables = sink.tables_for(space)
    batches = list(selected_batches(space))
    assert sum(len(b) for b in batches) > 100
    for batch in batches:
        depth = np.ascontiguousarray(batch.out[lm.O_DEPTH], np.int64)
        choice = np.ascontiguousarray(batch.choice)
        compiled = wide_layers(choice, depth, *tables._tables())
        python = wide_layers.py_func(choice, depth, *tables._tables())
        for a, b in zip(compiled, python):
            assert a.dtype == b.dtype and np.array_equal(a, b)
