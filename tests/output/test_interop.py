"""Every value of rfsweep's files is the same in pyarrow, duckdb, polars and fastparquet (issue 22, item 3):
random small spaces (seeded) in every layout and every path that writes (plain search, --sample, --where,
--pareto, --limit with and without --sort), spaces of stages, dataset parts and the anchor-search output,
several row groups each. Needs the [interop] extra: a missing engine is one skip (test_the_engine_is_installed)
and the engines present still read every case."""

from __future__ import annotations

import math
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_writer_policy import CHAIN, STAGES

from rfsweep import api as sweep
from rfsweep.output import writer
from rfsweep.space import build_space

pytestmark = pytest.mark.interop
ENGINES = ("duckdb", "polars", "fastparquet")
PATHS = {
    "plain": {},
    "sample": dict(sample=90, seed=5),
    "where": dict(where="params > 1500"),
    "pareto": dict(pareto="params,macs,erf"),
    "limit": dict(limit=150),
    "limit_sorted": dict(limit=150, sort="macs"),
}


def _value(v):
    """One reader's value as a plain Python value: numpy scalars and arrays unwrapped, nulls None."""
    if isinstance(v, np.ndarray | list | tuple):
        return [_value(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or v is __import__("pandas").NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def read(engine: str, path) -> dict[str, list]:
    """The file's columns as lists of Python values, read by ``engine``."""
    path = str(path)
    if engine == "pyarrow":
        table = pq.read_table(path)
        return {name: table.column(name).to_pylist() for name in table.column_names}
    mod = pytest.importorskip(engine)
    if engine == "duckdb":
        rel = mod.connect().sql(f"SELECT * FROM read_parquet('{path}')")
        names, rows = rel.columns, rel.fetchall()
        return {name: [_value(r[i]) for r in rows] for i, name in enumerate(names)}
    if engine == "polars":
        return {name: [_value(x) for x in col] for name, col in mod.read_parquet(path).to_dict(as_series=False).items()}
    df = mod.ParquetFile(path).to_pandas()
    return {name: [_value(x) for x in df[name].astype(object).tolist()] for name in df.columns}


def _installed(engine: str) -> bool:
    try:
        __import__(engine)
    except ImportError:
        return False
    return True


INSTALLED = [e for e in ENGINES if _installed(e)]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_engine_is_installed(engine):
    """One skip per missing engine (pip install '.[interop]'); the cases below read with those present."""
    pytest.importorskip(engine)


def assert_readers_agree(path) -> None:
    """Every installed engine reads every value of ``path`` as pyarrow does."""
    if not INSTALLED:
        pytest.skip("none of duckdb, polars, fastparquet is installed (pip install '.[interop]')")
    want = read("pyarrow", path)
    for engine in INSTALLED:
        got = read(engine, path)
        assert list(got) == list(want), (engine, list(got))
        for name, values in want.items():
            # an int read as a float (a nullable column in pandas) must still be that integer exactly
            bad = next((i for i, (a, b) in enumerate(zip(got[name], values)) if a != b), None)
            assert got[name] == values, (engine, name, bad)


def _random_chain(rng: random.Random) -> dict:
    lo = rng.randint(1, 3)
    return {**CHAIN, "depth": rng.choice([f"{lo}-{lo + rng.randint(1, 2)}", 4]),
            "kernels": rng.sample([1, 3, 5, 7], rng.randint(2, 3)), "padding": rng.choice(["same", "valid"]),
            "dilations": rng.choice([[1], [1, 2]]), "input_size": rng.choice([32, 48])}  # fmt: skip


@pytest.fixture(autouse=True)
def small_groups(monkeypatch):
    monkeypatch.setattr(writer, "ROW_GROUP_ROWS", 50)


@pytest.mark.parametrize("layout", ["wide", "compact", "lists"])
@pytest.mark.parametrize("path_name", sorted(PATHS))
def test_searches_read_the_same_in_every_engine(tmp_path, layout, path_name):
    rng = random.Random(f"{layout}-{path_name}")
    space = build_space(_random_chain(rng))
    path = tmp_path / "out.parquet"
    sweep.search_to_parquet(str(path), space, columns=layout, **PATHS[path_name])
    assert pq.ParquetFile(path).metadata.num_rows > 3
    assert_readers_agree(path)


@pytest.mark.parametrize("layout", ["compact", "lists"])
def test_spaces_of_stages_read_the_same_in_every_engine(tmp_path, layout):
    path = tmp_path / "stages.parquet"
    sweep.search_to_parquet(str(path), build_space(STAGES), columns=layout)
    assert_readers_agree(path)


@pytest.mark.parametrize("layout", ["wide", "compact", "lists"])
def test_every_leaf_column_has_a_type_defined_order(tmp_path, layout):
    """column_orders (pyarrow does not show it; fastparquet keeps the raw FileMetaData): one TypeDefinedOrder
    a leaf column, in the encoder's files (wide, compact) and pyarrow's (lists)."""
    fastparquet = pytest.importorskip("fastparquet")
    path = tmp_path / "out.parquet"
    sweep.search_to_parquet(str(path), build_space({**CHAIN, "depth": "1-3"}), columns=layout)
    fmd = fastparquet.ParquetFile(str(path)).fmd
    leaves = [el for el in fmd.schema if not el.num_children]
    assert len(fmd.column_orders) == len(leaves) > 5
    assert all(order.TYPE_ORDER is not None for order in fmd.column_orders)


def test_dataset_parts_read_the_same_in_every_engine(tmp_path):
    out = tmp_path / "ds"
    sweep.search_to_parquet(str(out) + "/", build_space({**CHAIN, "depth": "1-3"}), shards=2)
    parts = sorted(p for p in out.iterdir() if p.suffix == ".parquet" and not p.name.startswith(("_", ".")))
    assert len(parts) == 2
    for part in parts:
        assert_readers_agree(part)


def test_the_anchor_search_output_reads_the_same_in_every_engine(tmp_path):
    from click.testing import CliRunner

    from paths import ROOT
    from rfsweep.cli.main import main

    path = tmp_path / "anchors.parquet"
    boxes = ROOT / "data" / "boxes" / "synthetic_instances.json"
    args = ["anchor-search", "--boxes", str(boxes), "--sizes", "16,32,64,128,256", "--ratios", "0.5,1,2",
            "--ratio-count", "2", "-o", str(path)]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert_readers_agree(path)
