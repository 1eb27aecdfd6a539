"""Row selection (rfsweep.output.select): --where, --ids and --top against brute force over small search outputs."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from rfsweep import api as sweep
from rfsweep.core.errors import RFSweepError
from rfsweep.output.select import Selection, parse_ids, parse_where, rf_target2, select_batches, select_file
from rfsweep.space import build_space

# Small spaces (as in test_sweep.py): every padding rule, pools, dilations, a target rf, detector levels
SPACES = {
    "same_pools": dict(
        depth="1-3",
        kernels=[1, 3, 5],
        strides=[1, 2],
        dilations=[1, 2],
        channels=[4, 8],
        pool_kernels=[2, 3],
        ops=["conv", "maxpool", "avgpool"],
        input_size=20,
        rf_min=5,
        rf_max=30,
    ),
    "valid_target": dict(
        depth="2-3", kernels=[1, 3], strides=[1, 2, 3], padding="valid", input_size=17, target_rf=9, tolerance=2
    ),
    "tf_same_levels": dict(
        depth="2-4",
        kernels=[1, 3, 5],
        strides=[1, 2],
        ops=["conv", "maxpool"],
        pool_kernels=[2, 3],
        padding="tf_same",
        input_size=30,
        anchors="8@2,16@4",
        anchor_rf="1:3",
        anchor_erf="0.5",
    ),
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """name -> (path, space, full DataFrame); tf_same_levels is written with --columns compact."""
    out = {}
    base = tmp_path_factory.mktemp("select")
    for name, settings in SPACES.items():
        space = build_space(settings)
        path = base / f"{name}.parquet"
        columns = "compact" if name == "tf_same_levels" else "full"
        sweep.search_to_parquet(str(path), space, columns=columns)
        out[name] = (str(path), space, pq.read_table(path).to_pandas())
    return out


def _selected(path, **kw):
    tables = list(select_file(path, Selection(**kw), batch_rows=1000))
    return [a for t in tables for a in t.column("arch_id").to_pylist()]


WHERES = [
    ("params < 2e3 and depth >= 2", lambda d: (d.params < 2000) & (d.depth >= 2)),
    ("200 <= params <= 5000", lambda d: (d.params >= 200) & (d.params <= 5000)),
    ("not (jump == 2 or out_size < 7)", lambda d: ~((d.jump == 2) | (d.out_size < 7))),
    ("rf < 10.5 or erf_sigma > 3.25", lambda d: (d.rf <= 10) | (d.erf_sigma > 3.25)),
    ("rf > eff_padding and center >= -1", lambda d: (d.rf > d.eff_padding) & (d.center >= -1)),
    ("rf == 9.5", lambda d: d.rf < 0),
    ("rf != 9.5 and macs < 1e40", lambda d: d.rf > 0),
    ("depth>=3 AND NOT rf=9", lambda d: (d.depth >= 3) & (d.rf != 9)),
    ("center < 1e400 and erf_sigma > -1e999", lambda d: d.rf > 0),
    ("center >= 1e400 or erf_sigma == 1e999", lambda d: d.rf < 0),
]


@pytest.mark.parametrize("name", sorted(SPACES))
def test_where_selects_what_pandas_selects(outputs, name):
    path, _, df = outputs[name]
    for text, brute in WHERES:
        assert _selected(path, where=parse_where(text, pq.read_schema(path))) == list(df.arch_id[brute(df)]), text


def test_where_on_detector_level_columns(outputs):
    path, _, df = outputs["tf_same_levels"]
    where = parse_where("s4_rf >= 20 and s2_tap < 2", pq.read_schema(path))
    assert _selected(path, where=where) == list(df.arch_id[(df.s4_rf >= 20) & (df.s2_tap < 2)])


def _random_filter(rng: random.Random, columns: dict, depth: int = 0) -> str:
    if depth < 2 and rng.random() < 0.5:
        op = rng.choice(["and", "or"])
        return f"({_random_filter(rng, columns, depth + 1)} {op} {_random_filter(rng, columns, depth + 1)})"
    if depth < 3 and rng.random() < 0.15:
        return f"not {_random_filter(rng, columns, depth + 1)}"
    col = rng.choice(sorted(columns))
    lo, hi = columns[col]
    literal = rng.choice(
        [
            str(rng.randint(int(lo) - 2, int(hi) + 2)),
            f"{rng.uniform(lo - 1, hi + 1):.3f}",
            rng.choice(["1e30", "-1e30", "9.5e18", "-9.3e18", "0.5"]),
        ]
    )
    op = rng.choice(["<", "<=", ">", ">=", "==", "!=", "="])
    if rng.random() < 0.15:
        other = rng.choice(sorted(columns))
        return f"{col} {op} {other}"
    return f"{col} {op} {literal}" if rng.random() < 0.7 else f"{literal} {op} {col}"


def _exact(text: str, row: dict) -> bool:
    """The filter's meaning on one row, in exact rational arithmetic (the generated text spaces every token)."""
    values = {k: Fraction(v) for k, v in row.items()}
    tokens = []
    for tok in text.replace("(", " ( ").replace(")", " ) ").split():
        if tok in values:
            tokens.append(f"_v[{tok!r}]")
        elif tok[0].isdigit() or tok[0] in "-.":
            tokens.append(f"_F({tok!r})")
        else:
            tokens.append("==" if tok == "=" else tok)
    return bool(eval(" ".join(tokens), {"_v": values, "_F": Fraction}))  # test oracle only, on generated text


def test_random_filters_numpy_arrow_and_exact_arithmetic_agree(outputs):
    """Seeded random filters: the numpy mask, the pyarrow.dataset scan with Where.expression and exact
    rational arithmetic row by row select the same rows (integers never compared through a float)."""
    path, _, df = outputs["same_pools"]
    sample = df[["arch_id", "depth", "rf", "jump", "eff_padding", "center", "out_size", "params", "macs"]]
    sample = sample.iloc[:: max(1, len(sample) // 250)]
    table = pq.read_table(path).take(list(sample.index))
    columns = {c: (float(sample[c].min()), float(sample[c].max())) for c in sample.columns}
    rows = sample.to_dict("records")
    rng = random.Random(11)
    dataset = ds.InMemoryDataset(table)
    for _ in range(60):
        text = _random_filter(rng, columns)
        where = parse_where(text, table.schema)
        mask = where.mask(table)
        assert list(mask) == [_exact(text, r) for r in rows], text
        assert dataset.to_table(filter=where.expression).column("arch_id").to_pylist() == list(sample.arch_id[mask]), (
            text
        )
        as_dict = {c: table.column(c).to_numpy() for c in where.columns}
        if as_dict:
            assert list(where.mask(as_dict)) == list(mask)


@pytest.mark.parametrize("sort", ["params", "macs", "rf_error", "erf"])
def test_top_is_the_search_order(outputs, sort):
    """--top N --sort KEY picks what `rfsweep search --limit N --sort KEY` keeps, in the same order."""
    for name in ("same_pools", "valid_target"):
        path, space, _ = outputs[name]
        expected = list(sweep.search(space, limit=13, sort=sort, columns="compact").arch_id)
        assert _selected(path, top=13, sort=sort, target2=rf_target2(space)) == expected


def test_where_then_ids_then_top(outputs):
    path, space, df = outputs["same_pools"]
    where = "params < 3000 and depth >= 2"
    sub = df[(df.params < 3000) & (df.depth >= 2)]
    ids = list(df.arch_id[::7])
    picked = sub[sub.arch_id.isin(ids)]
    target2 = rf_target2(space)
    brute = picked.assign(key=(2 * picked.rf - target2).abs()).sort_values(["key", "arch_id"])
    got = _selected(
        path, where=parse_where(where, pq.read_schema(path)), ids=ids, top=5, sort="rf_error", target2=target2
    )
    assert got == list(brute.arch_id[:5])
    # ids alone come out in file order, whatever order they were given in
    assert _selected(path, ids=ids[::-1]) == ids
    # an id filtered out by where is not an error; top larger than what is left returns what is left
    assert _selected(path, where=parse_where("depth >= 2", pq.read_schema(path)), ids=ids, top=10_000) == list(
        df[(df.depth >= 2) & df.arch_id.isin(ids)].sort_values(["params", "arch_id"]).arch_id
    )


def test_selection_counts_rows_and_streams_without_ids_or_top(outputs):
    path, _, df = outputs["valid_target"]
    sel = Selection(where=parse_where("depth == 3", pq.read_schema(path)))
    tables = list(select_file(path, sel, batch_rows=10))
    assert sel.streams and len(tables) > 1
    assert sel.scanned == len(df) and sel.kept == int((df.depth == 3).sum())


def test_select_batches_takes_record_batches_and_dicts_of_numpy_columns(outputs):
    """The same selection serves a search's own survivor batches (Arrow) and plain numpy columns."""
    path, _, df = outputs["same_pools"]
    table = pq.read_table(path)
    where = parse_where("params < 2e3", table.schema)
    got = list(select_batches(table.to_batches(max_chunksize=50), Selection(where=where, top=4)))
    assert got[0].column("arch_id").to_pylist() == list(
        df[df.params < 2000].sort_values(["params", "arch_id"]).arch_id[:4]
    )
    cols = {"params": np.asarray(df.params), "arch_id": np.asarray(df.arch_id)}
    assert list(Selection(where=where).mask(cols)) == list(df.params < 2000)


def test_unknown_ids_name_the_missing_ones(outputs):
    path, _, df = outputs["valid_target"]
    missing = max(df.arch_id) + 1
    with pytest.raises(RFSweepError, match=rf"field 'ids': value \[{missing}\]: 1 of the 2 arch_ids are not rows"):
        _selected(path, ids=[int(df.arch_id[0]), int(missing)])


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(sort="params"), "field 'sort': value \"params\": orders the --top N rows; give --top"),
        (dict(top=0), "field 'top': value 0: must be an integer >= 1"),
        (
            dict(top=3, sort="depth"),
            "field 'sort': value \"depth\": must be one of params, macs, rf_error, erf, peak_act, latency_ms",
        ),
    ],
)
def test_bad_selection_is_one_line(kw, message):
    with pytest.raises(RFSweepError) as err:
        Selection(**kw)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "text, message",
    [
        ("params <", "expected a column or a number but found the end (at character 9)"),
        ("foo < 3", "no column 'foo' in this file; columns: arch_id, depth,"),
        ("op == 3", "column 'op' holds lists; a filter compares the numeric columns"),
        ("rf", "expected a comparison after 'rf', e.g. 'rf < 10' (at character 1)"),
        ("1 < 2", "a comparison needs a column on at least one side"),
        ("(rf < 3", "expected ')' but found the end"),
        ("rf < 3 rf > 1", "unexpected 'rf'; expected and, or or the end (at character 8)"),
        ("rf < 3; import os", "unexpected character ';'"),
        ("rf < - x", "'-' must be followed by a number"),
        ("", "must be a non-empty filter"),
        ("__import__('os')", "unexpected character"),
    ],
)
def test_bad_filters_are_one_line_errors(outputs, text, message):
    path, _, _ = outputs["same_pools"]
    with pytest.raises(RFSweepError) as err:
        parse_where(text, pq.read_schema(path))
    assert str(err.value).startswith(f"field 'where': value \"{text}\": ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_parse_ids():
    assert parse_ids("12, 40,12,7") == [12, 40, 7]
    for bad in ("12,x", "-3", "", []):
        with pytest.raises(RFSweepError, match="field 'ids'"):
            parse_ids(bad)
