"""Every path that writes Parquet follows rfsweep's writer policy (rfsweep.output.writer; issue 22, items 1
and 2): plain search, --sample, --where, --pareto, --limit (with and without --sort) in the wide, compact
and lists layouts, spaces of stages, dataset parts and the anchor-search output all carry exact statistics
on every column chunk, the page index, page CRCs that catch a flipped bit, sorting_columns exactly where
the rows are in arch_id order, and whole row groups but the last (row groups of 64 rows here)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from parquet_check import assert_policy
from rfsweep import api as sweep
from rfsweep.output import writer
from rfsweep.space import build_space

GROUP = 64
CHAIN = dict(kernels=[1, 3, 5], strides=[1, 2], ops=["conv", "maxpool"], pool_kernels=[2], input_size=32,
             rf_min=5, rf_max=40, anchors="4@2", anchor_rf="0:4")  # fmt: skip
PATHS = {
    "plain": {},
    "sample": dict(sample=150, seed=3),
    "where": dict(where="params > 2000 and rf >= 9"),
    "pareto": dict(pareto="params,macs,erf"),
    "limit": dict(limit=200),
    "limit_sorted": dict(limit=200, sort="params"),
}
IN_ID_ORDER = {"plain", "where", "limit"}  # the depth-first walk's order, at one depth


@pytest.fixture(autouse=True)
def small_groups(monkeypatch):
    monkeypatch.setattr(writer, "ROW_GROUP_ROWS", GROUP)


@pytest.mark.parametrize("layout", ["wide", "compact", "lists"])
@pytest.mark.parametrize("depth", ["1-4", 4])
@pytest.mark.parametrize("path_name", sorted(PATHS))
def test_every_search_path_and_layout_follows_the_policy(tmp_path, layout, depth, path_name):
    space = build_space({**CHAIN, "depth": depth})
    path = tmp_path / "out.parquet"
    sweep.search_to_parquet(str(path), space, columns=layout, **PATHS[path_name])
    sorted_by_id = depth == 4 and path_name in IN_ID_ORDER
    table = assert_policy(path, sorted_by_id=sorted_by_id)
    assert table.num_rows > (3 if path_name == "pareto" else GROUP), table.num_rows  # more than one group


STAGES = {
    "stem": [{"op": "conv", "kernel": 3, "stride": 2, "channels": 8}],
    "stages": [
        {"block": "mbconv", "depth": [1, 2], "kernel": [3, 5], "expand": [1, 3], "channels": [8, 16], "stride": 2,
         "se": [False, True], "act": "relu"},
        {"block": "basic", "depth": [1, 2], "kernel": [1, 3], "dilation": [1, 2], "channels": 24, "stride": 1},
    ],
    "input_size": 32,
}  # fmt: skip


@pytest.mark.parametrize("layout", ["compact", "lists"])
@pytest.mark.parametrize("selection", [{}, dict(sample=150, seed=1), dict(limit=70, sort="macs")])
def test_spaces_of_stages_follow_the_policy(tmp_path, layout, selection):
    space = build_space(STAGES)
    path = tmp_path / "stages.parquet"
    sweep.search_to_parquet(str(path), space, columns=layout, **selection)
    table = assert_policy(path, sorted_by_id=not selection)
    assert table.num_rows > GROUP


def test_dataset_parts_follow_the_policy(tmp_path):
    space = build_space({**CHAIN, "depth": 4})
    out = tmp_path / "ds"
    sweep.search_to_parquet(str(out) + "/", space, shards=3)
    parts = sorted(p for p in out.iterdir() if p.suffix == ".parquet" and not p.name.startswith(("_", ".")))
    assert len(parts) == 3
    for part in parts:
        assert_policy(part, sorted_by_id=True)


def test_the_anchor_search_output_follows_the_policy(tmp_path):
    from click.testing import CliRunner

    from paths import ROOT
    from rfsweep.cli.main import main

    path = tmp_path / "anchors.parquet"
    space = ["--sizes", "16,32,64,128,256,512,1024", "--ratios", "0.25,0.5,1,2,4", "--ratio-count", "3"]
    boxes = ROOT / "data" / "boxes" / "synthetic_instances.json"
    res = CliRunner().invoke(main, ["anchor-search", "--boxes", str(boxes), *space, "-o", str(path)])
    assert res.exit_code == 0, res.output
    table = assert_policy(path, sorted_by_id=False)
    assert table.num_rows == 210


@pytest.mark.parametrize("layout", ["wide", "lists"])
def test_a_flipped_bit_in_a_data_page_is_an_error(tmp_path, layout):
    """The encoder's pages (wide) and pyarrow's (lists) carry CRC32s: pyarrow, asked to verify them,
    refuses a file with one bit flipped in a page body instead of returning other numbers."""
    space = build_space({**CHAIN, "depth": 4})
    path = tmp_path / "out.parquet"
    sweep.search_to_parquet(str(path), space, columns=layout)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    chunk = next(meta.column(j) for j in range(meta.num_columns) if meta.column(j).path_in_schema == "arch_id")
    assert not chunk.has_dictionary_page
    last = chunk.data_page_offset + chunk.total_compressed_size - 1  # the data page's last body byte
    data = bytearray(path.read_bytes())
    data[last] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(OSError, match="(?i)crc|checksum"):
        pq.ParquetFile(path, page_checksum_verification=True).read()
