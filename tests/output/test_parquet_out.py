"""rfsweep.output.parquet, the Parquet writer of the wide and compact layouts: its files hold exactly the
rows and types pyarrow's own writer writes from the same batches (random spaces, row groups of every
size), and the naive enumerator's values, with the writer policy's footer (exact statistics, page index,
CRCs, sorting_columns: tests/parquet_check.py); every encoding it uses (dictionaries looked up, ranged and
hashed, their fallback to plain) reads back exactly in pyarrow, and the files read the same in pandas,
polars and duckdb (every reader: tests/output/test_interop.py)."""

from __future__ import annotations

import os
import queue
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from test_sweep import assert_same_as_naive

from parquet_check import assert_policy
from rfsweep import api as sweep
from rfsweep.core.errors import RFSweepError
from rfsweep.engine.run import Batch
from rfsweep.kernels import encode as enc
from rfsweep.kernels import layer_math as lm
from rfsweep.output import parquet as parquet_out
from rfsweep.output import sink, writer
from rfsweep.output.batches import selected_batches
from rfsweep.space import build_space

MIXED = dict(
    depth="1-4", kernels=[1, 3], strides=[1, 2], ops=["conv", "maxpool"], pool_kernels=[2], input_size=32,
    rf_min=5, rf_max=25, anchors="4@2", anchor_rf="0:4",
)  # fmt: skip


def _decoded(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings (two writers may order a dictionary differently)."""
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.table(cols, names=table.column_names)


def _reference(space, layout) -> pa.Table:
    """The same rows through Arrow tables (rfsweep.output.sink.to_table), as pyarrow's writer gets them."""
    tables = list(sweep.iter_tables(space, columns=layout))
    return pa.concat_tables(tables) if tables else sink.schema(space, layout).empty_table()


def _write(path, space, layout, group_rows=None, monkeypatch=None):
    if group_rows is not None:
        monkeypatch.setattr(writer, "ROW_GROUP_ROWS", group_rows)
    sweep.search_to_parquet(str(path), space, columns=layout)
    return pq.read_table(path)


def assert_same_file(got: pa.Table, space, layout):
    ref = _reference(space, layout)
    want = sink.schema(space, layout)
    assert got.schema.equals(want, check_metadata=False), (got.schema, want)
    assert _decoded(got).equals(_decoded(ref))


@pytest.mark.parametrize("layout", ["wide", "compact"])
def test_the_fast_writer_is_used_and_equals_pyarrow(tmp_path, monkeypatch, layout):
    space = build_space(MIXED)  # more rows than a row group: the encoder (smaller outputs: pyarrow's writer)
    got = _write(tmp_path / "a.parquet", space, layout, group_rows=50, monkeypatch=monkeypatch)
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.created_by.startswith("rfsweep version")
    assert got.num_rows > 50
    assert_same_file(got, space, layout)


@given(
    depth=st.tuples(st.integers(1, 3), st.integers(0, 2)),
    kernels=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    strides=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    dilations=st.lists(st.integers(1, 2), min_size=1, max_size=2),
    ops=st.lists(st.sampled_from(["conv", "maxpool", "avgpool"]), min_size=1, max_size=2),
    padding=st.sampled_from(["same", "valid", "tf_same"]),
    n=st.integers(4, 40),
    rf=st.tuples(st.integers(1, 30), st.integers(0, 30)),
    anchors=st.one_of(st.none(), st.sampled_from(["4@2", "2@1", "4@2,8@4"])),
    width=st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(0, 3))),
    group=st.sampled_from([1, 7, 64, 1 << 19]),
    layout=st.sampled_from(["wide", "compact"]),
)
def test_random_spaces_equal_pyarrow_and_naive(depth, kernels, strides, dilations, ops, padding, n, rf, anchors,
                                               width, group, layout, tmp_path_factory):  # fmt: skip
    """Row groups of 1 row up to the default: runs cut at every boundary, nulls past a depth, pools
    passing channels through, the width rule, detector levels."""
    settings = dict(
        depth=[depth[0], depth[0] + depth[1]], kernels=kernels, pool_kernels=kernels, strides=strides,
        dilations=dilations, ops=ops, padding=padding, input_size=n, rf_min=rf[0], rf_max=rf[0] + rf[1],
        anchors=anchors, anchor_rf="0:4",
    )  # fmt: skip
    if width is None:
        settings["channels"] = [2, 3]
    else:
        settings.update(width=width[0], max_width=width[0] * 2 ** width[1])
    space = build_space(settings)
    # a row group per row costs a page per column in Python: small spaces only there
    assume(sweep.count(space) <= (2_000 if group < 64 else 20_000))
    path = tmp_path_factory.mktemp("fast") / "out.parquet"
    before = writer.ROW_GROUP_ROWS
    writer.ROW_GROUP_ROWS = group
    try:
        sweep.search_to_parquet(str(path), space, columns=layout)
        got = assert_policy(path, sorted_by_id=space.depth_min == space.depth_max)
    finally:
        writer.ROW_GROUP_ROWS = before
    assert_same_file(got, space, layout)
    if layout == "wide":
        assert_same_as_naive(settings, got.to_pandas(), "wide")


def _synthetic(values: dict[str, np.ndarray], types: dict[str, pa.DataType], modes: dict[str, int], tmp_path,
               group: int = 50_000):  # fmt: skip
    """Columns of given values, each encoded as asked (falling back as the writer does), written and
    read back by pyarrow."""
    space = build_space(dict(depth=2, kernels=[1, 3]))
    n = len(next(iter(values.values())))
    out = np.zeros((lm.NO, n), np.int64)
    choice = np.zeros((2, n), np.int16)
    out[lm.O_DEPTH] = 2
    fields, cols = [], []
    for i, (name, v) in enumerate(values.items()):
        src = 2 + i  # rows of `out` past arch_id and depth
        out[src] = v
        phys, int_type = parquet_out._physical(types[name])
        cols.append(parquet_out.Column(name, enc.K_OUT, modes[name], src, 0, False, phys, int_type))
        fields.append(pa.field(name, types[name], False))
    sch = pa.schema(fields)
    path = tmp_path / "synthetic.parquet"
    encoder = parquet_out.Encoder(space, sch, cols)
    modes = {}
    with open(path, "wb") as fh:
        fh.write(encoder.header())
        for lo in range(0, n, group):  # one batch a group: what a group fell back to, the next starts from
            for job in encoder.encode(out, choice, [(lo, min(n, lo + group))]):
                encoder.write_group(fh, job)
            modes.update((c.name, int(encoder.desc[i, enc.D_MODE])) for i, c in enumerate(cols))
        fh.write(encoder.footer())
    return pq.read_table(path), pq.ParquetFile(path).metadata, modes


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3000),
    spread=st.sampled_from([0, 1, 5, 100, 5000, 2**40, 2**62]),
    runs=st.integers(1, 40),
    mode=st.sampled_from([enc.M_RANGE, enc.M_HASH, enc.M_PLAIN, enc.M_DELTA]),
)
def test_every_encoding_reads_back_exactly(tmp_path_factory, seed, n, spread, runs, mode):
    """Random int64 values (negative too, runs of repeats of random lengths, spreads past every
    dictionary limit) in each encoding, and int8/int16/int32 columns, read back equal, with exact statistics."""
    rng = np.random.default_rng(seed)
    base = rng.integers(-(2**62), 2**62) if spread < 2**40 else 0
    distinct = base + rng.integers(-spread, spread + 1, size=max(1, n // runs + 1), dtype=np.int64)
    v64 = np.repeat(distinct, rng.integers(1, 2 * runs + 1, size=len(distinct)))[:n]
    v64 = np.resize(v64, n)
    small = rng.integers(-100, 100, size=n)
    values = {"a": v64, "b": small, "c": small * 300, "d": np.abs(small) * 10_000}
    types = {"a": pa.int64(), "b": pa.int8(), "c": pa.int16(), "d": pa.uint32()}
    path = tmp_path_factory.mktemp("enc")
    got, _, _ = _synthetic(values, types, dict.fromkeys(values, mode), path, group=700)
    for name, v in values.items():
        assert got.column(name).to_numpy().tolist() == v.astype(types[name].to_pandas_dtype()).tolist(), name
    assert_policy(path / "synthetic.parquet", sorted_by_id=False, group_rows=700, delta_columns=tuple(values))


def test_dictionaries_past_their_limit_go_plain(tmp_path):
    n = 200_000
    rng = np.random.default_rng(1)
    values = {
        "many": rng.permutation(n).astype(np.int64) * 7,  # 100,000 distinct a group, past DICT_MAX: plain
        "wild": rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64),  # every value distinct: plain
        "wide": np.arange(n, dtype=np.int64) // 2 * 3,  # past RANGE_MAX, 50,000 distinct: hashed
    }
    types = dict.fromkeys(values, pa.int64())
    modes = {"many": enc.M_RANGE, "wild": enc.M_HASH, "wide": enc.M_RANGE}
    got, meta, after = _synthetic(values, types, dict(modes), tmp_path, group=100_000)
    for name, v in values.items():
        assert np.array_equal(got.column(name).to_numpy(), v), name
    for g in range(2):
        rg = meta.row_group(g)
        encodings = {rg.column(i).path_in_schema: rg.column(i).encodings for i in range(3)}
        assert "RLE_DICTIONARY" not in encodings["many"] and "RLE_DICTIONARY" not in encodings["wild"]
        assert "RLE_DICTIONARY" in encodings["wide"]
    # the second group started where the first fell back to
    assert after == {"many": enc.M_PLAIN, "wild": enc.M_PLAIN, "wide": enc.M_HASH}


def test_ids_are_delta_coded_only_where_every_reader_decodes_them(tmp_path):
    """Increasing ids are DELTA_BINARY_PACKED in a group whose gaps fit DELTA_MAX_BITS (the widest
    fastparquet reads right, with 4 bits to spare) and PLAIN in a group with one wider gap; both read back
    exactly, in every engine installed (fastparquet's defect: rfsweep.output.writer)."""
    from test_interop import assert_readers_agree

    rng = np.random.default_rng(3)
    group = 4096
    widths = np.concatenate([rng.integers(0, enc.DELTA_MAX_BITS + 1, group), rng.integers(0, 8, group)])
    gaps = 1 + rng.integers(0, 1 << widths)  # 1 .. 2**DELTA_MAX_BITS: miniblocks up to DELTA_MAX_BITS wide
    gaps[group + 5] = 1 << (enc.DELTA_MAX_BITS + 1)  # the second group has one gap one bit too wide
    ids = np.cumsum(gaps) + (1 << 40)
    got, meta, _ = _synthetic({"arch_id": ids}, {"arch_id": pa.int64()}, {"arch_id": enc.M_DELTA}, tmp_path, group)
    assert np.array_equal(got.column("arch_id").to_numpy(), ids)
    assert "DELTA_BINARY_PACKED" in meta.row_group(0).column(0).encodings
    assert "DELTA_BINARY_PACKED" not in meta.row_group(1).column(0).encodings
    assert_policy(tmp_path / "synthetic.parquet", sorted_by_id=False, group_rows=group)
    if any(__import__("importlib").util.find_spec(e) for e in ("duckdb", "polars", "fastparquet")):
        assert_readers_agree(tmp_path / "synthetic.parquet")


def test_readers_agree(tmp_path):
    """pandas (through pyarrow), polars and duckdb read the same values and types of the wide layout,
    with nulls past a candidate's depth, the string columns and the detector levels."""
    space = build_space(MIXED)
    path = tmp_path / "wide.parquet"
    sweep.search_to_parquet(str(path), space, columns="wide")
    ref = _decoded(_reference(space, "wide"))
    df = pd.read_parquet(path)
    assert str(df["kernel_3"].dtype) == "UInt8" or df["kernel_3"].isna().any()
    assert df["op_0"].dtype.name == "category" and str(df["rf"].dtype) == "int8"
    pl = pytest.importorskip("polars")
    got = pl.read_parquet(path).to_arrow()
    assert _decoded(got).cast(ref.schema).equals(ref)
    duckdb = pytest.importorskip("duckdb")
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").arrow()
    rel = rel.read_all() if hasattr(rel, "read_all") else rel
    assert _decoded(rel).cast(ref.schema).equals(ref)


def test_lists_and_big_ids_keep_pyarrows_writer(tmp_path):
    space = build_space(MIXED)
    assert parquet_out.plan(space, sink.schema(space, "lists")) is None
    path = tmp_path / "lists.parquet"
    sweep.search_to_parquet(str(path), space, columns="lists")
    assert pq.ParquetFile(path).metadata.created_by.startswith("parquet-cpp")


def test_an_empty_result_is_a_valid_file(tmp_path):
    space = build_space(dict(MIXED, rf_min=500, rf_max=600))
    got = _write(tmp_path / "e.parquet", space, "wide")
    assert got.num_rows == 0 and got.schema.equals(sink.schema(space, "wide"), check_metadata=False)


def test_batches_are_encoded_before_the_engine_reuses_them(tmp_path):
    """write_batch copies what it needs: a batch overwritten right after it was handed over changes
    nothing in the file."""
    space = build_space(MIXED)
    batches = [b.copy() for b in selected_batches(space)]
    sch = sink.schema(space, "compact")
    path = tmp_path / "c.parquet"
    with sink.ParquetSink(str(path), sch, sink.metadata(space), space=space) as out:
        for b in batches:
            scratch = Batch(b.out.copy(), b.choice.copy())
            out.write_batch(scratch)
            scratch.out[:] = -1
    assert_same_file(pq.read_table(path), space, "compact")


def test_empty_groups_are_not_encoded(tmp_path):
    space = build_space(MIXED)
    sch = sink.schema(space, "wide")
    encoder = parquet_out.Encoder(space, sch, parquet_out.plan(space, sch))
    out = np.zeros((space.out_width, 0), np.int64)
    choice = np.zeros((space.depth_max, 0), np.int16)
    assert encoder.encode(out, choice, []) == [] and encoder.encode(out, choice, [(0, 0)]) == []


def test_pages_are_not_overwritten_while_the_writer_reads_them(tmp_path):
    """Encoded pages are views of the encoder's RING buffers, not copies: a writer far behind the encoder
    (an unbounded queue, each write held back; one row group an encode call) still writes every page as
    it was encoded, since an encode call waits for its buffer's jobs: the same bytes as writing each
    group at once."""
    space = build_space(MIXED)
    batch = Batch.concat([b.copy() for b in selected_batches(space)])
    sch = sink.schema(space, "compact").with_metadata(sink.metadata(space))
    groups = [(lo, min(len(batch), lo + 8)) for lo in range(0, len(batch), 8)]
    assert len(groups) > 3 * parquet_out.RING

    def written(path, behind: bool) -> bytes:
        encoder = parquet_out.Encoder(space, sch, parquet_out.plan(space, sch))
        jobs: queue.Queue = queue.Queue()
        with open(path, "wb") as fh:
            fh.write(encoder.header())

            def drain():
                while (job := jobs.get()) is not None:
                    time.sleep(0.005)
                    encoder.write_group(fh, job)

            writer_thread = threading.Thread(target=drain)
            writer_thread.start()
            for g in groups:
                for job in encoder.encode(batch.out, batch.choice, [g]):
                    jobs.put(job)
                    if not behind:
                        while not jobs.empty():
                            time.sleep(0.001)
            jobs.put(None)
            writer_thread.join()
            fh.write(encoder.footer())
        return path.read_bytes()

    assert written(tmp_path / "behind.parquet", True) == written(tmp_path / "in_step.parquet", False)


def test_a_failed_write_releases_every_page_and_leaves_nothing(tmp_path, monkeypatch):
    """A row group that cannot be written: the encoder is not left waiting for buffers the writer thread
    will never free (the jobs after the failure are released unwritten); one error naming the output, and
    no file, temporary or not."""
    space = build_space(MIXED)
    calls = []

    def fails_second(self, fh, job):
        calls.append(job[0])
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(parquet_out.Encoder, "_write_group", fails_second)
    with pytest.raises(RFSweepError, match="write failed"):
        _write(tmp_path / "f.parquet", space, "compact", group_rows=8, monkeypatch=monkeypatch)
    assert len(calls) == 2 and os.listdir(tmp_path) == []


def test_aligned_batches_keep_the_encoder_to_one_compiled_signature(tmp_path, monkeypatch):
    """The engine's aligned batches are column slices of its slab (the rows past the last whole group wait
    for the next one): the encoder takes them as the C-contiguous slab, never compiling a second signature
    for another layout (or a read-only view) on a first run; the last batch is moved to the slab's front."""
    space = build_space(MIXED)
    got = _write(tmp_path / "a.parquet", space, "compact", group_rows=7, monkeypatch=monkeypatch)
    assert_same_file(got, space, "compact")
    for sig in enc.encode_tasks.signatures:
        out, choice = sig[4], sig[6]
        assert out.layout == choice.layout == "C" and out.mutable and choice.mutable, sig
    sliced = np.arange(60, dtype=np.int64).reshape(3, 20)[:, :7]
    wide = parquet_out._c_rows(sliced)
    assert wide.flags.c_contiguous and np.array_equal(wide[:, :7], sliced)
    assert np.shares_memory(wide, sliced)
    odd = np.arange(60, dtype=np.int64).reshape(3, 20)[:, ::2]  # not a column slice: copied
    assert parquet_out._c_rows(odd).flags.c_contiguous and np.array_equal(parquet_out._c_rows(odd), odd)
