"""Writing the same survivors to Parquet, per layout, with the same writer policy (rfsweep.output.writer:
exact statistics on every page and column chunk, page index, page CRC32s, sorting_columns, no
DELTA_BINARY_PACKED, zstd level 1, row groups of 512K rows): rfsweep's own encoder (rfsweep.output.parquet,
wide and compact) beside pyarrow's writer (rfsweep.output.writer.TableWriter, from the same batches through
Arrow tables), and pyarrow with 0.4.0's settings (no statistics, index or CRC) for what the policy costs.

R7 [223, 225]: 11,531,384 survivors, computed once and held in memory; each writer is then timed from the
batches to a closed file (Arrow tables built, encoded, compressed, written), best of ``--repeat``.

    python benchmarks/bench_parquet.py            # R7 [223, 225], wide, compact, lists (~2 min on 2 cores)
    python benchmarks/bench_parquet.py --quick    # depth 5
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import rfsweep
from rfsweep.engine import run as engine
from rfsweep.output import parquet as parquet_out
from rfsweep.output import sink, writer
from rfsweep.space import build_space

sys.path.insert(0, str(Path(__file__).parent))
from bench_cuda import R7  # noqa: E402  (one definition of the reference space)


def pyarrow_policy(path, space, sch, batches) -> None:
    tables = sink.tables_for(space)
    w = writer.TableWriter(path, sch, sorted_by_id=True)
    for b in batches:
        w.write(sink.to_table(b, space, tables, sch))
    w.close()


def pyarrow_040(path, space, sch, batches) -> None:
    """0.4.0's pyarrow settings: no statistics, index or CRC; one write a batch."""
    tables = sink.tables_for(space)
    with pq.ParquetWriter(path, sch, compression="zstd", compression_level=1,
                          use_dictionary=writer.dictionary_columns(sch), write_statistics=False) as w:  # fmt: skip
        for b in batches:
            w.write_table(sink.to_table(b, space, tables, sch), row_group_size=writer.ROW_GROUP_ROWS)


def encoder(path, space, sch, batches) -> None:
    """As rfsweep.output.sink.ParquetSink drives it (without the writer thread: one core's worth of framing
    and compression is counted here, which the sink overlaps with the kernels)."""
    enc = parquet_out.Encoder(space, sch, parquet_out.plan(space, sch), sorted_by_id=True)
    rows = writer.ROW_GROUP_ROWS
    with open(path, "wb") as f:
        f.write(enc.header())
        for b in batches:
            n = len(b)
            for job in enc.encode(b.out, b.choice, [(lo, min(n, lo + rows)) for lo in range(0, n, rows)]):
                enc.write_group(f, job)
        f.write(enc.footer())


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="depth 5 instead of 7")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--layouts", default="wide,compact,lists")
    args = ap.parse_args()
    depth = 5 if args.quick else 7
    window = (223, 225) if depth == 7 else (60, 70)
    space = build_space({**R7, "depth": depth, "rf_min": window[0], "rf_max": window[1]})
    batches = [b.copy() for b in engine.iter_batches(space, reuse_buffers=True)]
    n = sum(len(b) for b in batches)
    now = datetime.datetime.now(datetime.UTC)
    print(f"## bench_parquet.py: R7 depth {depth}, rf {list(window)}, {n:,} survivors\n")
    print(f"{now:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {platform.python_version()}, pyarrow "
          f"{pa.__version__}, rfsweep {rfsweep.__version__}, load average {os.getloadavg()[0]:.2f} before; "
          f"best of {args.repeat}; 'x encoder': seconds over the encoder's (lists: over the policy's)\n")  # fmt: skip
    print("| layout | writer | seconds | rows/s | x encoder | file MiB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for layout in args.layouts.split(","):
            sch = sink.schema(space, layout).with_metadata(sink.metadata(space))
            runs = []
            if parquet_out.plan(space, sch) is not None:
                runs.append(("rfsweep's encoder, the policy", encoder))
            runs += [("pyarrow (TableWriter), the policy", pyarrow_policy),
                     ("pyarrow, 0.4.0 settings (no statistics, index, CRC)", pyarrow_040)]  # fmt: skip
            base = None
            for name, fn in runs:
                path = os.path.join(tmp, f"{layout}.parquet")
                s = best(functools.partial(fn, path, space, sch, batches), args.repeat)
                base = base or s
                size = os.path.getsize(path) / 2**20
                print(f"| {layout} | {name} | {s:.2f} | {n / s:.3g}/s | {s / base:.2f}x | {size:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
