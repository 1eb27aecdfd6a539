"""The three output layouts hold the same rows: wide (per-position columns), lists and compact; the
README's recipes turn the wide columns back into lists in pandas and pyarrow (and duckdb, polars where
installed); and each layout writes what its schema says."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

import docs_pages
from rfsweep import api as sweep
from rfsweep.space import build_space

SETTINGS = dict(
    depth="1-4", kernels=[1, 3], strides=[1, 2], ops=["conv", "maxpool"], pool_kernels=[2], input_size=32,
    rf_min=5, rf_max=25,
)  # fmt: skip
FIELDS = ("op", "kernel", "stride", "dilation", "channels")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    space = build_space(SETTINGS)
    out = {}
    for layout in ("wide", "lists", "compact", "full"):
        path = base / f"{layout}.parquet"
        sweep.search_to_parquet(str(path), space, columns=layout)
        out[layout] = path
    return out


def test_layouts_hold_the_same_rows(files):
    tables = {k: pq.read_table(v) for k, v in files.items()}
    scalars = [c for c in tables["compact"].column_names]
    for layout, t in tables.items():
        assert t.select(scalars).equals(tables["compact"]), layout
    wide, lists = tables["wide"].to_pylist(), tables["lists"].to_pylist()
    assert tables["full"].equals(tables["lists"])  # 0.1's name of the list layout
    for w, row in zip(wide, lists):
        for f in FIELDS:
            values = [w[f"{f}_{p}"] for p in range(4)]
            assert values[: w["depth"]] == row[f]
            assert all(v is None for v in values[w["depth"] :])
        assert w["padding"] == "same" and row["padding"] == ["same"] * w["depth"]


def test_wide_schema_nulls_only_beyond_the_smallest_depth(files):
    schema = pq.read_schema(files["wide"])
    for p in range(4):
        assert schema.field(f"kernel_{p}").nullable == (p >= 1)
    assert not schema.field("rf").nullable and not schema.field("padding").nullable
    # no deltas but arch_id's (fastparquet misreads wide ones: rfsweep.output.writer)
    meta = pq.ParquetFile(files["wide"]).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "DELTA_BINARY_PACKED" not in {e for k, enc in encodings.items() if k != "arch_id" for e in enc}


def _recipe(name: str) -> str:
    return docs_pages.recipe(name)


def test_readme_wide_to_lists_recipe(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.parquet").write_bytes(files["wide"].read_bytes())
    scope: dict = {}
    lists = pq.read_table(files["lists"]).to_pydict()
    cut = sorted(lists["params"])[len(lists["params"]) // 2]  # this small space's budget: half the rows
    recipe = _recipe("wide-to-lists")
    assert "2_000_000" in recipe
    exec(recipe.replace("2_000_000", str(cut)), scope)
    want = [k for k, p in zip(lists["kernel"], lists["params"]) if p < cut]
    assert 0 < len(want) < len(lists["kernel"])  # the filter keeps some rows and drops some
    assert scope["kernel"].to_pylist() == want


def test_duckdb_and_polars_read_the_wide_layout(files):
    want = pq.read_table(files["lists"]).column("kernel").to_pylist()
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(
        f"SELECT list_slice([kernel_0, kernel_1, kernel_2, kernel_3], 1, depth) AS kernel FROM '{files['wide']}'"
    ).fetchall()
    assert [list(r[0]) for r in got] == want
    pl = pytest.importorskip("polars")
    df = pl.read_parquet(files["wide"])
    got = df.select(pl.concat_list(pl.col(r"^kernel_\d+$")).list.head(pl.col("depth")).alias("k"))["k"].to_list()
    assert got == want
