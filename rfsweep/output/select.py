"""Row selection over search outputs: a ``--where`` filter (:mod:`rfsweep.engine.where`), ``--ids`` and the best
``--top N`` by a sort key.

Selection streams: :func:`select_batches` takes any iterable of Arrow batches and holds at most one
batch plus the rows it keeps for ``ids`` (at most one per id) or ``top`` (at most N), however many
rows the file has. Order of application: ``where``, then ``ids``, then ``top``. The search can reuse
it on its own survivor tables (``Selection.mask`` takes a table, a batch or a dict of numpy columns).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from rfsweep.core.errors import field_error
from rfsweep.engine.objectives import KEY_COLUMNS, SORT_KEYS, rf_target2
from rfsweep.engine.objectives import key as sort_key
from rfsweep.engine.where import Where, num_rows, numpy_column, parse_where
from rfsweep.space.ids import as_arch_id, is_arch_id, python_ids, sort_keys

BATCH_ROWS = 1 << 16  # rows per Arrow batch read from the file; memory is a batch plus what is kept

# ------------------------------------------------------------------ ids, sort keys, selection


def parse_ids(text: Any) -> list[int]:
    """'12,40,7' (or a list of ints) -> [12, 40, 7] without duplicates, in the given order."""
    raw = text
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            text = [int(p) for p in parts]
        except ValueError:
            raise field_error("ids", raw, "must be a comma-separated list of arch_ids (integers >= 0)") from None
    if is_arch_id(text):
        text = [text]
    if not isinstance(text, (list, tuple)) or not text:
        raise field_error("ids", raw, "must be a non-empty list of arch_ids")
    out: list[int] = []
    for v in text:
        try:  # any int-like value: int, numpy integer, Decimal (the decimal128 ids of a space of stages)
            v = as_arch_id(v)
        except ValueError:
            raise field_error("ids", raw, "every arch_id must be an integer >= 0") from None
        if v not in out:
            out.append(v)
    return out


@dataclass
class Selection:
    """What to keep: ``where`` (a parsed filter), then ``ids``, then the best ``top`` by ``sort``."""

    where: Where | None = None
    ids: list[int] | None = None
    top: int | None = None
    sort: str | None = None
    target2: int | None = None  # for sort rf_error: see rf_target2
    scanned: int = 0  # rows read so far
    kept: int = 0  # rows selected

    def __post_init__(self):
        if self.top is not None and (isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 1):
            raise field_error("top", self.top, "must be an integer >= 1")
        if self.sort is not None and self.top is None:
            raise field_error("sort", self.sort, "orders the --top N rows; give --top")
        if self.top is not None and self.sort is None:
            self.sort = "params"
        if self.sort is not None and self.sort not in SORT_KEYS:
            raise field_error("sort", self.sort, f"must be one of {', '.join(SORT_KEYS)}")

    @property
    def streams(self) -> bool:
        """True when rows come out as they are read (no ids, no top): nothing is held back."""
        return self.ids is None and self.top is None

    def mask(self, batch: pa.Table | pa.RecordBatch | Mapping[str, Any], found: set[int] | None = None) -> np.ndarray:
        """Rows of one batch passing ``where`` and ``ids`` (``found`` collects the ids the batch holds)."""
        n = num_rows(batch)
        keep = self.where.mask(batch) if self.where is not None else np.ones(n, bool)
        if self.ids is not None:
            column = batch["arch_id"] if isinstance(batch, Mapping) else batch.column("arch_id")
            if isinstance(column, (pa.Array, pa.ChunkedArray)) and pa.types.is_decimal(column.type):
                arch = np.array(python_ids(column), object)  # past int64 (rfsweep.space.ids): Python ints
                wanted = np.isin(arch, np.array(self.ids, object))
            else:
                arch = numpy_column(batch, "arch_id")
                wanted = np.isin(arch, np.asarray([i for i in self.ids if i < 2**63], dtype=np.int64))
            if found is not None:
                found.update(int(a) for a in arch[wanted])
            keep &= wanted
        return keep


def select_batches(batches: Iterable[pa.RecordBatch | pa.Table], selection: Selection) -> Iterator[pa.Table]:
    """The selected rows of a stream of Arrow batches, as tables.

    Without ids or top, each batch's selected rows come out as soon as it is read (file order). With
    ids, the matching rows (at most one per id) are held and come out, in file order, once the stream
    ends and every id has been found; an id the stream does not hold is an error. With top, the best N
    by the sort key (ties: smaller arch_id) come out in that order.
    """
    found: set[int] = set()
    held: list[pa.Table] = []
    best: pa.Table | None = None
    selection.scanned = selection.kept = 0
    for batch in batches:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        selection.scanned += table.num_rows
        keep = selection.mask(table, found)
        if not keep.any():
            continue
        chosen = table.filter(pa.array(keep))
        if selection.top is not None:
            best = chosen if best is None else pa.concat_tables([best, chosen])
            best = _best(best, selection)
        elif selection.ids is not None:
            held.append(chosen)
        else:
            selection.kept += chosen.num_rows
            yield chosen
    if selection.ids is not None:
        missing = [i for i in selection.ids if i not in found]
        if missing:
            raise field_error(
                "ids",
                missing[:10],
                f"{len(missing)} of the {len(selection.ids)} arch_ids are not rows of this file"
                + (" (the first 10 shown)" if len(missing) > 10 else ""),
            )
    out = [best] if best is not None else held
    for table in out:
        selection.kept += table.num_rows
        yield table


def _best(table: pa.Table, selection: Selection) -> pa.Table:
    cols = {name: numpy_column(table, name) for name in _key_columns(selection.sort)}
    key = sort_key(cols, selection.sort, selection.target2)
    order = np.lexsort((*sort_keys(table.column("arch_id")), key))[: selection.top]
    return table.take(pa.array(order))


def _key_columns(sort: str) -> tuple[str, ...]:
    return (KEY_COLUMNS[sort],)


def scalar_columns(schema: pa.Schema) -> list[str]:
    """The file's columns that are not per-layer values (lists, or the wide layout's op_0, kernel_0, ...,
    padding): selection and export never need them."""
    per_layer = re.compile(r"(op|kernel|stride|dilation|channels)_\d+|padding")
    return [f.name for f in schema if not pa.types.is_list(f.type) and not per_layer.fullmatch(f.name)]


def select_file(path: str, selection: Selection, batch_rows: int = BATCH_ROWS) -> Iterator[pa.Table]:
    """The selected rows of a search output (scalar columns only), read in batches of ``batch_rows``."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise field_error("file", str(path), f"not a readable Parquet file ({exc})") from None
    try:
        columns = scalar_columns(pf.schema_arrow)
        yield from select_batches(_readable(pf.iter_batches(batch_size=batch_rows, columns=columns), path), selection)
    finally:
        pf.close()


def _readable(batches, path) -> Iterator:
    """The batches of a Parquet file, a damaged page (footer intact) ending them with one line naming the
    file instead of pyarrow's traceback."""
    try:
        yield from batches
    except (OSError, pa.ArrowException) as exc:
        why = " ".join(str(exc).split())[:160]
        raise field_error("file", str(path), f"is damaged: a data page cannot be read ({why})") from None


__all__ = [
    "SORT_KEYS",
    "Where",
    "Selection",
    "parse_where",
    "parse_ids",
    "sort_key",
    "rf_target2",
    "select_batches",
    "select_file",
    "scalar_columns",
]
