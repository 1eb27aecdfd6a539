"""arch_ids past int64 (rfsweep.space.ids): decimal128 columns equal Python's mixed-radix numbering, rows are
ordered by them, and files of such spaces are read back (show, export)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from rfsweep import api as sweep
from rfsweep.cli.main import main
from rfsweep.space import build_space, ids

# 13 choices a position (kernel 1 takes no dilation), depths 16-18: 1.2e20 arch_ids, past 2^64
BIG = dict(depth="16-18", ops=["conv"], kernels=[1, 3, 5, 7, 9], strides=[1], dilations=[1, 2, 3], channels=[8])


@pytest.fixture(scope="module")
def big_space():
    space = build_space(dict(BIG, rf_max=5))
    assert space.id_space > 2**64 and ids.big(space)
    return space


@given(data=st.data())
def test_limbs_equal_python_integers(big_space, data):
    n = data.draw(st.integers(1, 20))
    depth = np.array([data.draw(st.integers(16, 18)) for _ in range(n)], np.int64)
    choice = np.zeros((big_space.depth_max, n), np.int16)
    for i in range(n):
        for p in range(big_space.depth_max):
            choice[p, i] = data.draw(st.integers(0, big_space.radices[p] - 1))
    limbs = ids.limbs(choice, depth, big_space)
    for i in range(n):
        expected = big_space.encode([int(c) for c in choice[: depth[i], i]])
        assert int(limbs[i, 0]) + (int(limbs[i, 1]) << 64) == expected
    column = ids.arrow_ids(np.stack([np.zeros(n, np.int64), depth]), choice, big_space)
    assert column.type == ids.DECIMAL
    assert ids.python_ids(column) == [big_space.encode([int(c) for c in choice[: depth[i], i]]) for i in range(n)]
    # the order keys of the survivors rank them as their ids do
    out = np.zeros((big_space.out_width, n), np.int64)
    out[1] = depth  # O_DEPTH
    order = np.lexsort(ids.order_keys(out, choice, big_space))
    values = ids.python_ids(column)
    assert [values[i] for i in order] == sorted(values)


def test_search_writes_decimal_ids(big_space, tmp_path):
    path = tmp_path / "big.parquet"
    stats = sweep.search_to_parquet(str(path), big_space, columns="lists")
    table = pq.read_table(path)
    assert table.schema.field("arch_id").type == pa.decimal128(38, 0)
    values = ids.python_ids(table.column("arch_id"))
    assert len(values) == stats.extra["written"] > 0 and len(set(values)) == len(values) and max(values) > 2**64
    layers = table.column("kernel").to_pylist()
    dils = table.column("dilation").to_pylist()
    for value, ks, ds in zip(values, layers, dils):
        digits = big_space.decode(value)
        chosen = [big_space.positions[p][c] for p, c in enumerate(digits)]
        assert [c.kernel for c in chosen] == ks and [c.dilation for c in chosen] == ds
    # the best 7 by rf_error: ties to the smaller arch_id, computed on the choices
    top = sweep.search(big_space, limit=7, sort="rf_error", columns="compact")
    key = (2 * np.asarray(table.column("rf")) - (big_space.rf_min + big_space.rf_max)).__abs__()
    expected = sorted(zip(key.tolist(), values))[:7]
    assert list(zip(*expected))[1] == tuple(int(v) for v in top["arch_id"])


def test_show_and_select_read_decimal_ids(big_space, tmp_path):
    path = tmp_path / "big.parquet"
    sweep.search_to_parquet(str(path), big_space, columns="compact")
    last = max(ids.python_ids(pq.read_table(path).column("arch_id")))
    out = CliRunner().invoke(main, ["show", str(path), str(last), "--format", "spec"])
    assert out.exit_code == 0, out.output
    bad = CliRunner().invoke(main, ["show", str(path), str(last + 1)])
    assert bad.exit_code == 2 and "is not a row" in bad.stderr
    got = CliRunner().invoke(main, ["export", str(path), "--ids", str(last), "--to", "jsonl"])
    assert got.exit_code == 0, got.output
    assert f'"name": "{last}"' in got.stdout
    top = CliRunner().invoke(main, ["export", str(path), "--top", "2", "--sort", "params", "--to", "jsonl"])
    assert top.exit_code == 0, top.output


def test_beyond_38_digits_is_refused_for_search_only():
    settings = dict(depth=29, ops=["conv"], kernels=[1, 3, 5, 7, 9, 11], strides=[1], dilations=[1, 2, 3, 4])
    assert build_space(settings, for_search=False).id_space > ids.ID_LIMIT
    with pytest.raises(Exception, match="38 digits"):
        build_space(settings)
