"""Survivor batches -> Arrow tables -> Parquet, written under a temporary name and renamed when complete.

Schema: arch_id, depth, per-layer list columns (op, kernel, stride, dilation, padding, channels), then
rf, jump, eff_padding, center, out_size, params, macs, erf_sigma, in the narrowest integer types the
space's bounds allow. The search settings and the rfsweep version are stored in the schema metadata
as JSON under ``rfsweep.spec``.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rfsweep.engine import Batch
from rfsweep.errors import RFSweepError
from rfsweep.kernels import layer_math as lm
from rfsweep.space import OP_CODES, Space

META_KEY = b"rfsweep.spec"
OP_NAMES = sorted(OP_CODES, key=OP_CODES.get)


def _int_type(bound: int, signed: bool = True) -> pa.DataType:
    """The narrowest Arrow integer type holding 0..bound (and -bound..bound when signed)."""
    for bits in (8, 16, 32, 64):
        if signed and bound < 2 ** (bits - 1):
            return getattr(pa, f"int{bits}")()
        if not signed and bound < 2 ** bits:
            return getattr(pa, f"uint{bits}")()
    return pa.int64()


def schema(space: Space, extra: list[pa.Field] | None = None) -> pa.Schema:
    rf_t = _int_type(space.rf_bound)
    small = _int_type(max(max(c.kernel, c.stride, c.dilation) for p in space.positions for c in p), signed=False)
    fields = [
        pa.field("arch_id", pa.int64()),
        pa.field("depth", pa.uint8()),
        pa.field("op", pa.list_(pa.dictionary(pa.int8(), pa.string()))),
        pa.field("kernel", pa.list_(small)),
        pa.field("stride", pa.list_(small)),
        pa.field("dilation", pa.list_(small)),
        pa.field("padding", pa.list_(pa.dictionary(pa.int8(), pa.string()))),
        pa.field("channels", pa.list_(_int_type(space.max_channels))),
        pa.field("rf", rf_t),
        pa.field("jump", _int_type(space.jump_bound)),
        pa.field("eff_padding", rf_t),
        pa.field("center", pa.float64()),
        pa.field("out_size", _int_type(space.input_size)),
        pa.field("params", pa.int64()),
        pa.field("macs", pa.int64()),
        pa.field("erf_sigma", pa.float64()),
    ]
    return pa.schema(fields + (extra or []))


def metadata(space: Space, extra: dict | None = None) -> dict[bytes, bytes]:
    from rfsweep import __version__

    spec = {"version": __version__, "space": space.settings, **(extra or {})}
    return {META_KEY: json.dumps(spec, sort_keys=True).encode()}


class LayerTables:
    """Per-position lookup tables (choice index -> op code, kernel, ...) for vectorised list columns."""

    def __init__(self, space: Space):
        width = max(space.radices)
        self.space = space
        self.op = np.zeros((space.depth_max, width), np.int8)
        self.kernel = np.zeros((space.depth_max, width), np.int64)
        self.stride = np.zeros((space.depth_max, width), np.int64)
        self.dilation = np.zeros((space.depth_max, width), np.int64)
        self.channels = np.zeros((space.depth_max, width), np.int64)
        for p, options in enumerate(space.positions):
            for c, ch in enumerate(options):
                self.op[p, c] = OP_CODES[ch.op]
                self.kernel[p, c] = ch.kernel
                self.stride[p, c] = ch.stride
                self.dilation[p, c] = ch.dilation
                self.channels[p, c] = ch.channels

    def columns(self, choice: np.ndarray, depth: np.ndarray) -> dict[str, np.ndarray]:
        """[rows, depth_max] arrays of each per-layer value (entries past a row's depth are junk)."""
        rows, dmax = choice.shape[0], self.space.depth_max
        pos = np.arange(dmax)
        c = choice.astype(np.int64)
        cols = {name: getattr(self, name)[pos, c] for name in ("op", "kernel", "stride", "dilation")}
        raw_ch = self.channels[pos, c]
        chans = np.empty((rows, dmax), np.int64)
        cin = np.full(rows, self.space.in_channels, np.int64)
        ndown = np.zeros(rows, np.int64)
        for p in range(dmax):
            ndown += cols["stride"][:, p] > 1
            width = np.minimum(self.space.width * 2 ** np.minimum(ndown, 62), self.space.max_width)
            ch = np.where(raw_ch[:, p] == lm.CH_WIDTH, width, raw_ch[:, p])
            cin = np.where(raw_ch[:, p] == lm.CH_PASS, cin, ch)
            chans[:, p] = cin
        cols["channels"] = chans
        return cols


def to_table(batch: Batch, space: Space, tables: LayerTables, sch: pa.Schema,
             extra: dict[str, np.ndarray] | None = None) -> pa.Table:
    out = batch.out
    depth = out[:, lm.O_DEPTH]
    mask = np.arange(space.depth_max)[None, :] < depth[:, None]
    offsets = np.zeros(len(depth) + 1, np.int32)
    np.cumsum(depth, out=offsets[1:])
    offsets = pa.array(offsets, pa.int32())
    per_layer = tables.columns(batch.choice, depth)

    def lst(name, values):
        typ = sch.field(name).type.value_type
        return pa.ListArray.from_arrays(offsets, pa.array(values[mask], typ))

    n_flat = int(offsets[-1].as_py()) if len(depth) else 0
    op_dict = pa.DictionaryArray.from_arrays(pa.array(per_layer["op"][mask], pa.int8()), pa.array(OP_NAMES))
    pad_dict = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n_flat, np.int8)), pa.array([space.padding]))
    rf = out[:, lm.O_RF]
    pad = out[:, lm.O_PAD]
    cols = {
        "arch_id": pa.array(out[:, lm.O_ARCH], pa.int64()),
        "depth": pa.array(depth, pa.uint8()),
        "op": pa.ListArray.from_arrays(offsets, op_dict),
        "kernel": lst("kernel", per_layer["kernel"]),
        "stride": lst("stride", per_layer["stride"]),
        "dilation": lst("dilation", per_layer["dilation"]),
        "padding": pa.ListArray.from_arrays(offsets, pad_dict),
        "channels": lst("channels", per_layer["channels"]),
        "rf": pa.array(rf, sch.field("rf").type),
        "jump": pa.array(out[:, lm.O_JUMP], sch.field("jump").type),
        "eff_padding": pa.array(pad, sch.field("eff_padding").type),
        "center": pa.array((rf - 1) / 2.0 - pad, pa.float64()),
        "out_size": pa.array(out[:, lm.O_N], sch.field("out_size").type),
        "params": pa.array(out[:, lm.O_PARAMS], pa.int64()),
        "macs": pa.array(out[:, lm.O_MACS], pa.int64()),
        "erf_sigma": pa.array(np.sqrt(out[:, lm.O_ERF] / 12.0), pa.float64()),
    }
    for name, values in (extra or {}).items():
        cols[name] = pa.array(values, sch.field(name).type)
    return pa.Table.from_arrays([cols[f.name] for f in sch], schema=sch)


class ParquetSink:
    """Write tables to ``path`` atomically: a temporary file beside it, renamed on success, removed on error."""

    def __init__(self, path: str, sch: pa.Schema, meta: dict[bytes, bytes]):
        self.path = os.path.abspath(path)
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise RFSweepError(f"field 'output': value {json.dumps(path)}: directory does not exist")
        fd, self.tmp = tempfile.mkstemp(prefix=".rfsweep-", suffix=".parquet.tmp", dir=directory)
        os.close(fd)
        self.schema = sch.with_metadata(meta)
        self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd", compression_level=1)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table.replace_schema_metadata(self.schema.metadata))
        self.rows += table.num_rows

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def read_spec(path: str) -> dict:
    """The ``rfsweep.spec`` metadata of a Parquet file written by rfsweep."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise RFSweepError(f"field 'file': value {json.dumps(str(path))}: not a readable Parquet file ({exc})") from None
    if META_KEY not in meta:
        raise RFSweepError(f"field 'file': value {json.dumps(str(path))}: has no rfsweep.spec metadata")
    return json.loads(meta[META_KEY])
