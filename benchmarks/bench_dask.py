"""An R7 search written as a dataset on a Dask LocalCluster, beside the single-process file, as markdown tables.

R7 [200, 250]: depth 7, conv only, kernels 1,3,5,7, strides 1,2, dilations 1,2,3, 32 channels, 'same'
padding, input 224 (20^7 = 1.28e9 candidates), rf in [200, 250]: 145,592,546 survivors, ~800 MB.

Each row runs ``rfsweep search ... -o OUT`` as a child process (wall seconds including start-up; CPU
seconds of the child and every process it started and reaped, the Dask workers included; peak RSS as the
largest sum over the process tree, sampled every 0.1 s, and the largest single process):

1. ``-o r7.parquet``: one process, every numba thread (the reference);
2. ``-o r7/``: the same process writing a dataset (one part per ~8M rows);
3. ``-o r7/ --cluster local:N``: N worker processes of 1 Dask thread and cores/N numba threads each;
4. ``--cluster local:N --shards S``: the shards a ``local:P`` run would cut (8 a worker, S = 8 P), timed
   on N workers, then a **projection** of ``--cluster local:P`` on P cores: those shards' measured
   seconds list-scheduled on P workers in submission order (as the scheduler hands them out), plus the
   run's measured start-up and plan. It assumes each of P workers gets what one of N workers got here
   (one core) and that the disk keeps up; it is labelled a projection wherever it is printed.

Every dataset is checked against the file (the arch_id and params columns, streamed, hashed in order)
and its row count against 145,592,546; a mismatch prints MISMATCH and makes the exit code 1. Nothing
here asserts a timing. Other work on the machine slows every row: the load average is printed before
each run, and CPU seconds are the steadier figure.

    python benchmarks/bench_dask.py                 # R7 [200, 250], local:2, projection to local:16
    python benchmarks/bench_dask.py --quick         # depth 5, a smoke run (< 1 min)
    python benchmarks/bench_dask.py --workers 2 --project 16 --repeat 2
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import machine, table  # noqa: E402  (the same machine line and table format)

EXPECTED = {7: 145_592_546}
WINDOW = (200, 250)


def r7_args(depth: int) -> list[str]:
    return ["--depth", str(depth), "--ops", "conv", "--kernels", "1,3,5,7", "--strides", "1,2"] + [
        "--dilations",
        "1,2,3",
        "--channels",
        "32",
        "--rf-min",
        str(WINDOW[0]),
        "--rf-max",
        str(WINDOW[1]),
    ]


def load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


class TreeMemory:
    """Peak resident memory of a process and its descendants: the largest sum, and the largest single one."""

    def __init__(self, pid: int, every: float = 0.1):
        import psutil

        self.root = psutil.Process(pid)
        self.peak_sum = self.peak_one = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self.thread.start()

    def _run(self, every: float) -> None:
        import psutil

        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            self.peak_sum = max(self.peak_sum, sum(rss))
            self.peak_one = max([self.peak_one, *rss])
            self.stop.wait(every)

    def done(self) -> None:
        self.stop.set()
        self.thread.join()


def run_cli(args: list[str]) -> dict:
    """``rfsweep ARGS --json`` as a child: its summary, wall seconds, CPU seconds (the child's and those of
    every process it reaped: a LocalCluster's workers are its children), peak memory of the tree."""
    cmd = [sys.executable, "-c", "from rfsweep.cli.main import main; main()", *args, "--json"]
    before = load()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mem = TreeMemory(proc.pid)
    got: dict = {}
    readers = [
        threading.Thread(target=lambda: got.update(out=proc.stdout.read())),
        threading.Thread(target=lambda: got.update(err=proc.stderr.read())),
    ]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    for t in readers:
        t.join()
    mem.done()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here: Popen must not wait for it again
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(args)}\n{got.get('err')}")
    return {
        "summary": json.loads(got["out"]),
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_sum": mem.peak_sum,
        "peak_one": mem.peak_one,
        "load": before,
    }


def best_of(args: list[str], repeat: int, out: Path) -> dict:
    best = None
    for _ in range(repeat):
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        got = run_cli([*args, "-o", str(out) + ("/" if out.suffix != ".parquet" else "")])
        if best is None or got["wall"] < best["wall"]:
            best = {**got, "peak_sum": max(got["peak_sum"], best["peak_sum"] if best else 0)}
    return best


def digest(path: Path) -> tuple[int, str]:
    """Rows and a hash of the arch_id and params columns in order, streamed (a file or a dataset)."""
    import pyarrow.dataset as ds

    hashes = [hashlib.sha256(), hashlib.sha256()]  # one a column: batch boundaries differ between layouts
    rows = 0
    for batch in ds.dataset(path, format="parquet").to_batches(columns=["arch_id", "params"], batch_size=1 << 20):
        for h, col in zip(hashes, batch.columns):
            h.update(col.to_numpy(zero_copy_only=False).astype("int64").tobytes())
        rows += batch.num_rows
    return rows, "".join(h.hexdigest()[:16] for h in hashes)


def project(seconds: list[float], workers: int) -> float:
    """Makespan of shards handed out in order to the first free of ``workers`` (list scheduling)."""
    free = [0.0] * workers
    heapq.heapify(free)
    end = 0.0
    for s in seconds:
        start = heapq.heappop(free)
        heapq.heappush(free, start + s)
        end = max(end, start + s)
    return end


def mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="depth 5 instead of 7 (a smoke run)")
    ap.add_argument("--workers", type=int, default=2, help="local:N workers measured (default 2)")
    ap.add_argument("--project", type=int, default=16, help="local:P projected from the shard times (default 16)")
    ap.add_argument("--repeat", type=int, default=1, help="best wall of this many runs per row (default 1)")
    ap.add_argument("--keep", help="write the outputs into this directory (default: a temporary one, removed)")
    a = ap.parse_args()
    depth = 5 if a.quick else 7
    r7 = ["search", *r7_args(depth)]
    m = machine()
    work = Path(a.keep or tempfile.mkdtemp(prefix="bench-dask-"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    n, p = a.workers, a.project
    runs = {}
    runs["file"] = best_of(r7, a.repeat, work / "r7.parquet")
    runs["dir"] = best_of(r7, a.repeat, work / "r7_dir")
    runs["cluster"] = best_of([*r7, "--cluster", f"local:{n}"], a.repeat, work / "r7_cluster")
    runs["shards"] = best_of([*r7, "--cluster", f"local:{n}", "--shards", str(8 * p)], 1, work / "r7_shards")

    checks, bad = [], False
    want_rows, want_hash = digest(work / "r7.parquet")
    expected = EXPECTED.get(depth)
    if expected is not None:
        ok = want_rows == expected
        bad |= not ok
        checks.append(f"{'OK' if ok else 'MISMATCH'}: the file has {want_rows:,} rows (expected {expected:,})")
    for name in ("r7_dir", "r7_cluster", "r7_shards"):
        rows, h = digest(work / name)
        ok = (rows, h) == (want_rows, want_hash)
        bad |= not ok
        what = f"({rows:,} rows, sha256 of arch_id and params in order)"
        checks.append(f"{'OK' if ok else 'MISMATCH'}: {name}/ holds the file's rows in its order {what}")

    man = json.loads((work / "r7_shards" / "_rfsweep.json").read_text())
    shard_s = [part["seconds"] for part in man["parts"]]
    fixed = man["run"]["startup_seconds"] + man["run"]["plan_seconds"]
    measured = project(shard_s, n)
    projected = project(shard_s, p)
    rows_total = runs["file"]["summary"]["written"]

    def row(label, r):
        s = r["summary"]
        parts = s.get("parts", 1)
        return [label, f"{parts:,}", f"{r['wall']:.1f}", f"{r['cpu']:.1f}", f"{rows_total / r['wall']:.3g}/s",
                f"{r['wall'] / runs['file']['wall']:.2f}x", mib(r["peak_sum"]), mib(r["peak_one"]),
                f"{r['load']:.2f}"]  # fmt: skip

    header = ["run", "parts", "wall s", "CPU s", "rows/s", "wall vs file", "peak RSS (all processes)",
              "largest process", "load before"]  # fmt: skip
    rows = [
        row("`-o r7.parquet` (one process)", runs["file"]),
        row("`-o r7/` (one process, a dataset)", runs["dir"]),
        row(f"`-o r7/ --cluster local:{n}`", runs["cluster"]),
        row(f"`-o r7/ --cluster local:{n} --shards {8 * p}`", runs["shards"]),
    ]
    proj_total = fixed + projected
    rows.append([f"**projection** of `--cluster local:{p}` on {p} cores (not measured)", f"{len(shard_s):,}",
                 f"{proj_total:.1f}", "-", f"{rows_total / proj_total:.3g}/s",
                 f"{proj_total / runs['file']['wall']:.2f}x", "-", "-", "-"])  # fmt: skip

    print(f"## bench_dask.py: R7 [{WINDOW[0]}, {WINDOW[1]}] at depth {depth} to a dataset\n")
    print(
        f"{m['date']}, {m['cores']} cores, {m['cpu']} (numba {m['numba']}, {m['threading_layer']} layer; numpy "
        f"{m['numpy']}; Python {m['python']}), rfsweep {m['rfsweep']} at commit {m['commit']}, dask.distributed "
        f"{_dask_version()}\n"
    )
    print(table(header, rows))
    print(
        f"\nProjection: the {len(shard_s)} shards of the `--shards {8 * p}` run (what `local:{p}` cuts: 8 a "
        f"worker) took {sum(shard_s):.1f} worker-seconds on {n} workers here (longest {max(shard_s):.2f} s); "
        f"list-scheduled in submission order they finish in {measured:.1f} s on {n} workers (that run's "
        f"measured wall: {runs['shards']['wall']:.1f} s) and in {projected:.1f} s on {p}; plus the run's "
        f"start-up and plan ({fixed:.1f} s) = {proj_total:.1f} s. Assumes each of {p} workers gets the core each "
        f"of {n} got here and that the disk keeps up ({rows_total / proj_total * 5.5 / 1e6:.0f} MB/s at ~5.5 "
        f"bytes a row)."
    )
    print("\nChecks:\n" + "\n".join(f"- {c}" for c in checks))
    print(f"\n{time.perf_counter() - t_all:.0f} s in all; 1-minute load average at the end: {load():.2f}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


def _dask_version() -> str:
    try:
        import distributed

        return distributed.__version__
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
