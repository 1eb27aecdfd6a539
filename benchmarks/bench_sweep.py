"""rfsweep's CPU sweep beside plain baselines on R7, in one run, as markdown tables.

R7: depth 7, conv only, kernels 1,3,5,7, strides 1,2, dilations 1,2,3, 32 channels, 'same' padding,
input 224: 20 choices a layer, 20^7 = 1.28e9 candidates.

1. count, rf in [200, 250] (145,592,546 survivors): rfsweep's dynamic programme (method "dp") and
   pruned enumeration (method "enumerate") against a straightforward NumPy evaluation (arch ids
   decoded by div/mod in chunks of 2^22, rf / jump / out size layer by layer; timed on the first
   20^(D-1) ids, the subtree whose first layer is choice 0, i.e. 1/20 of the space) and a pure-Python
   loop over rfsweep.network.arithmetic (a random sample of ids). Rates are candidates/s: ids covered / seconds
   (space size / seconds for rfsweep, which covers the whole space).
2. search, rf in [223, 225] (11,531,384 survivors), and rf in [200, 250] (145,592,546 survivors, ~1 GB
   a file; ``--no-big`` leaves it out): the kernels alone (engine.iter_batches, nothing written), and
   ``rfsweep search ... -o FILE`` end to end as a child process for each layout (wide, the default;
   compact; lists): wall seconds including start-up, survivors/s, the ratio end-to-end / kernels only,
   the child's peak RSS (os.wait4).
3. scaling at rf [223, 225], depth 5..10 with the same per-layer choices: DP and enumeration seconds
   beside space size and survivors. Enumeration runs whose projected time exceeds ``--max-enum-seconds``
   are skipped (projection: the previous depth's seconds per survivor).

Nothing here asserts a timing: targets are printed with "met" / "NOT met". Correctness checks print
OK / MISMATCH (and the exit code is 1 on a mismatch). Kernels are compiled (or loaded from numba's
cache) by a warm-up before any clock starts; each rfsweep row is the best of ``--repeat`` runs.

    python benchmarks/bench_sweep.py              # R7, a few minutes on 2 cores
    python benchmarks/bench_sweep.py --quick      # depth 5 versions of everything (< 30 s)
    python benchmarks/bench_sweep.py --skip-numpy # without the NumPy row (the slowest baseline but one)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import rfsweep
from rfsweep import api as sweep
from rfsweep.engine import run as engine
from rfsweep.network import arithmetic as ar
from rfsweep.space import build_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cuda import R7  # noqa: E402  (one definition of the reference space)

COUNT_WINDOW = (200, 250)
SEARCH_WINDOW = (223, 225)
EXPECTED = {("count", 7): 145_592_546, ("search", 7): 11_531_384}  # R7 reference figures
# peak RSS: 1 GB = 1e9 B; search_rate is the default (wide) layout's, compact_rate the compact one's
TARGETS = {"dp_rate": 2e9, "dp_over_numpy": 50.0, "search_rate": 5e6, "compact_rate": 8e6, "peak_rss": 1e9}
NUMPY_CHUNK = 1 << 22


# ------------------------------------------------------------------ helpers


def r7(depth: int, window: tuple[int, int], **extra):
    lo, hi = window
    return build_space({**R7, "depth": depth, "rf_min": lo, "rf_max": hi, **extra})


def best_of(fn, repeat: int):
    """(result, best seconds) of ``repeat`` calls."""
    best = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        res = fn()
        dt = time.perf_counter() - t0
        if best is None or dt < best[1]:
            best = (res, dt)
    return best


def rate(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}/s"


def ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}x" if x >= 100 else f"{x:.3g}x"


def secs(x: float | None) -> str:
    return "-" if x is None else (f"{x:.4f}" if x < 0.1 else f"{x:.2f}")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()  # the layer chosen by the first parallel kernel run
    except ValueError:
        return numba.config.THREADING_LAYER


def _load() -> float:
    """1-minute load average (the benchmark itself adds up to ~1 while it runs)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def machine() -> dict:
    import numba

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        root = Path(__file__).resolve().parent.parent
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root, timeout=10
            ).stdout.strip()
            or "?"
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "rfsweep", "kernels"],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=10,
        ).stdout.strip()
        commit += " + uncommitted changes to rfsweep/ or kernels/" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "threading_layer": _threading_layer(),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "rfsweep": rfsweep.__version__,
        "commit": commit,
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


# ------------------------------------------------------------------ baselines


def _layer_tables(space):
    """Per position: rf added per unit of jump (k'-1), stride and k' of every choice, as int64 arrays."""
    add = [np.array([c.dilation * (c.kernel - 1) for c in p], np.int64) for p in space.positions]
    stride = [np.array([c.stride for c in p], np.int64) for p in space.positions]
    keff = [a + 1 for a in add]
    return add, stride, keff


def _numpy_eval(space, ids: np.ndarray, tables) -> int:
    """Survivors among ``ids`` (one depth, rf window + out size): div/mod decode, then layer by layer."""
    add, stride, keff = tables
    depth = space.depth_max
    digits = [None] * depth
    rest = ids.copy()
    for p in range(depth - 1, -1, -1):
        r = space.radices[p]
        digits[p] = rest % r
        rest //= r
    rf = np.ones(len(ids), np.int64)
    jump = np.ones(len(ids), np.int64)
    n = np.full(len(ids), space.input_size, np.int64)
    for p in range(depth):
        d = digits[p]
        rf += add[p][d] * jump
        s = stride[p][d]
        jump *= s
        if space.padding == "valid":
            k = keff[p][d]
            n = np.where(n >= k, (n - k) // s + 1, 0)
        else:  # same and tf_same: n_out = ceil(n / s)
            n = (n + s - 1) // s
    ok = (rf >= space.rf_min) & (n >= space.min_out_size)
    if space.rf_max is not None:
        ok &= rf <= space.rf_max
    return int(np.count_nonzero(ok))


def numpy_count(space, start: int, stop: int, chunk: int = NUMPY_CHUNK) -> int:
    """Survivors with arch_id in [start, stop), evaluated by NumPy in chunks of ``chunk`` ids."""
    tables = _layer_tables(space)
    total = 0
    for a in range(start, stop, chunk):
        total += _numpy_eval(space, np.arange(a, min(stop, a + chunk), dtype=np.int64), tables)
    return total


def python_count(space, ids) -> int:
    """Survivors among ``ids``, one candidate at a time with rfsweep.network.arithmetic (exact fractions)."""
    n_ok = 0
    for arch_id in ids:
        a = ar.input_axis(space.input_size)
        for p, c in enumerate(space.decode(arch_id)):
            ch = space.positions[p][c]
            k_eff = ar.effective_kernel(ch.kernel, ch.dilation)
            pl, pr = ar.resolve_padding(space.padding, a.size, k_eff, ch.stride)
            a = ar.conv_axis(a, ch.kernel, ch.stride, ch.dilation, pl, pr)
            if a.size < 1:
                break
        else:
            if a.size >= space.min_out_size and space.rf_min <= a.rf and (space.rf_max is None or a.rf <= space.rf_max):
                n_ok += 1
    return n_ok


def first_subtree(space):
    """The space with position 0 fixed to its choice 0: its arch ids are the first 20^(D-1) of ``space``."""
    c = space.positions[0][0]
    pos = {
        "index": 0,
        "ops": [c.op],
        "kernels": [c.kernel],
        "strides": [c.stride],
        "dilations": [c.dilation],
        "channels": [c.channels],
    }
    return build_space({**space.settings, "positions": [pos]})


# ------------------------------------------------------------------ sections


def section_count(args, depth: int, checks: list, targets: list) -> str:
    space = r7(depth, COUNT_WINDOW)
    size = space.size
    dp_res, dp_s = best_of(lambda: sweep.count_details(space, method="dp", threads=args.threads), max(5, args.repeat))
    en_res, en_s = best_of(lambda: sweep.count_details(space, method="enumerate", threads=args.threads), args.repeat)
    rows = []  # (name, ids covered, survivors, seconds, note)
    rows.append(("rfsweep count, DP (method dp)", size, dp_res.count, dp_s, "whole space"))
    rows.append(("rfsweep count, pruned enumeration (method enumerate)", size, en_res.count, en_s, "whole space"))

    np_rate = None
    if not args.skip_numpy:
        sub = first_subtree(space)
        stop = sub.size
        got, np_s = best_of(lambda: numpy_count(space, 0, stop), 1)
        np_rate = stop / np_s
        rows.append(
            (
                f"NumPy, div/mod decode, chunks of 2^{NUMPY_CHUNK.bit_length() - 1}",
                stop,
                got,
                np_s,
                f"first 20^{depth - 1} = {stop:,} ids (1/20 of the space)",
            )
        )
        want = sweep.count_details(sub, method="dp").count
        checks.append((f"NumPy count on ids [0, {stop:,}) = rfsweep DP count of that subtree ({want:,})", got == want))

    py_rate = None
    if args.python_sample > 0:
        rng = random.Random(7)
        ids = sorted(rng.randrange(size) for _ in range(args.python_sample))
        got, py_s = best_of(lambda: python_count(space, ids), 1)
        py_rate = len(ids) / py_s
        rows.append(
            ("pure Python loop, rfsweep.network.arithmetic", len(ids), got, py_s, f"{len(ids):,} random ids (seed 7)")
        )
        np_got = _numpy_eval(space, np.array(ids, np.int64), _layer_tables(space))
        checks.append(
            (f"pure Python count on the {len(ids):,}-id sample = NumPy count on it ({np_got:,})", got == np_got)
        )

    want = EXPECTED.get(("count", depth))
    if want is not None:
        checks.append((f"DP count = {want:,}", dp_res.count == want))
    checks.append((f"DP count = enumeration count ({en_res.count:,})", dp_res.count == en_res.count))

    out = []
    for name, covered, n, s, note in rows:
        r = covered / s
        out.append(
            [
                name,
                note,
                f"{n:,}",
                secs(s),
                rate(r),
                ratio(r / np_rate) if np_rate else "-",
                ratio(r / py_rate) if py_rate else "-",
            ]
        )
    dp_rate = size / dp_s
    targets.append(
        (f"count: DP >= {TARGETS['dp_rate']:.0e} candidates/s", dp_rate >= TARGETS["dp_rate"], f"{dp_rate:.3g}/s")
    )
    if np_rate:
        targets.append(
            (
                f"count: DP >= {TARGETS['dp_over_numpy']:.0f}x NumPy",
                dp_rate / np_rate >= TARGETS["dp_over_numpy"],
                f"{dp_rate / np_rate:,.0f}x; the enumeration: {size / en_s / np_rate:.1f}x",
            )
        )
    head = (
        f"### 1. count, rf in [{COUNT_WINDOW[0]}, {COUNT_WINDOW[1]}], depth {depth} "
        f"({size:,} candidates)\n\ncandidates/s = ids covered / seconds; x NumPy, x Python: ratio of "
        "candidates/s.\n\n"
    )
    return head + table(["method", "ids covered", "survivors", "seconds", "candidates/s", "x NumPy", "x Python"], out)


def _cli_flags(depth: int, window: tuple[int, int]) -> list[str]:
    return [
        "--depth",
        str(depth),
        "--ops",
        ",".join(R7["ops"]),
        "--kernels",
        ",".join(map(str, R7["kernels"])),
        "--strides",
        ",".join(map(str, R7["strides"])),
        "--dilations",
        ",".join(map(str, R7["dilations"])),
        "--channels",
        ",".join(map(str, R7["channels"])),
        "--padding",
        R7["padding"],
        "--input-size",
        str(R7["input_size"]),
        "--rf-min",
        str(window[0]),
        "--rf-max",
        str(window[1]),
    ]


def _rfsweep_exe() -> list[str]:
    exe = Path(sys.executable).parent / "rfsweep"
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from rfsweep.cli.main import main; main()"]


# Linux carries a process's peak RSS over exec: a child forked from this process (hundreds of MB after
# the in-process kernels) would report at least this process's RSS. A small Python starts the measured
# command instead and reports its wall seconds and rusage (its peak RSS then starts from ~10 MB).
TIMER_SCRIPT = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, ru = os.wait4(child.pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    json.dump([wall, os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024], f)
"""


def timed(cmd: list[str]) -> tuple[float, float, int, str, str]:
    """Run ``cmd`` as a grandchild: (wall seconds, CPU seconds, peak RSS in bytes, stdout, stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as d:
        report = os.path.join(d, "rusage.json")
        subprocess.run([sys.executable, "-c", TIMER_SCRIPT, report, *cmd], stdout=out, stderr=err, check=False)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        try:
            with open(report) as f:
                wall, code, cpu, rss = json.load(f)
        except (OSError, ValueError):
            raise RuntimeError(f"{' '.join(cmd)} could not be timed: {stderr[-2000:]}") from None
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {stderr[-2000:]}")
    return wall, cpu, rss, stdout, stderr


def run_cli(args, depth: int, window, path: Path, extra: list[str]):
    """Wall seconds, CPU seconds, peak RSS (bytes) and the --json summary of one `rfsweep search -o` run."""
    cmd = _rfsweep_exe() + ["search", *_cli_flags(depth, window), "-o", str(path), "--json", *extra]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    wall, cpu, rss, stdout, _ = timed(cmd)
    return wall, cpu, rss, json.loads(stdout.strip().splitlines()[-1])


# the floor of any layout end to end: a child process that starts, imports, builds the space and runs
# the kernels as the console script does (its garbage-collector settings too), writing nothing
FLOOR_SCRIPT = """
import gc, json, sys
gc.set_threshold(50_000, 50, 50)
from rfsweep.engine import run as engine
from rfsweep.space import build_space
space = build_space(json.loads(sys.argv[1]))
threads = int(sys.argv[2]) or None
print(sum(len(b) for b in engine.iter_batches(space, reuse_buffers=True, threads=threads)))
gc.freeze()
"""


def run_floor(args, depth: int, window) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, peak RSS and rows of the kernels alone in a child process."""
    settings = {**R7, "depth": depth, "rf_min": window[0], "rf_max": window[1]}
    cmd = [sys.executable, "-c", FLOOR_SCRIPT, json.dumps(settings), str(args.threads or 0)]
    wall, cpu, rss, stdout, _ = timed(cmd)
    return wall, cpu, rss, int(stdout.split()[-1])


LAYOUT_TARGETS = {"wide": "search_rate", "compact": "compact_rate"}  # the layouts with a stated target


def _search_rows(args, depth, window, layouts, checks, targets, tmp, label_window):
    """Kernels alone, then `rfsweep search -o` per layout with the ratio end-to-end / kernels only."""
    space = r7(depth, window)
    size = space.size

    def kernels_only():
        stats = engine.Stats()
        n = sum(len(b) for b in engine.iter_batches(space, reuse_buffers=True, threads=args.threads, stats=stats))
        return n, stats

    (n_kernel, _), k_s = best_of(kernels_only, args.repeat if size < 5e9 else 1)
    rows = [
        [
            f"{label_window}: kernels only, engine.iter_batches(reuse_buffers=True), nothing written",
            f"{n_kernel:,}",
            secs(k_s),
            rate(n_kernel / k_s),
            rate(size / k_s),
            "1.00x",
            "-",
            "-",
            "-",
            "-",
            "-",
        ]
    ]
    floor = None
    for _ in range(max(1, args.cli_repeat if n_kernel < 5e7 else 1)):
        res = run_floor(args, depth, window)
        floor = res if floor is None or res[0] < floor[0] else floor
    f_wall, f_cpu, f_rss, f_rows = floor
    checks.append((f"{label_window}: the kernels-only child found {f_rows:,} rows = in-process", f_rows == n_kernel))
    rows.append(
        [
            f"{label_window}: kernels only, child process (start-up, imports, space, kernels; nothing written): "
            "the floor of every layout below",
            f"{f_rows:,}",
            secs(f_wall),
            rate(f_rows / f_wall),
            rate(size / f_wall),
            f"{f_wall / k_s:.2f}x",
            "1.00x",
            f"{f_rss / 2**20:,.0f} MiB",
            "-",
            "-",
            secs(f_cpu),
        ]
    )
    want = EXPECTED.get(("search" if window == SEARCH_WINDOW else "count", depth))
    if want is not None:
        checks.append((f"{label_window}: search survivors = {want:,}", n_kernel == want))
    for columns in layouts:
        path = Path(tmp) / f"r{depth}_{columns}.parquet"
        best = None
        peak = 0
        for _ in range(max(1, args.cli_repeat if n_kernel < 5e7 else 1)):
            wall, cpu, rss, summary = run_cli(args, depth, window, path, ["--columns", columns])
            peak = max(peak, rss)
            if best is None or wall < best[0]:
                best = (wall, cpu, summary, path.stat().st_size)
        path.unlink()
        wall, cpu, summary, nbytes = best
        kept = summary["written"]
        checks.append((f"{label_window}: --columns {columns} wrote {kept:,} rows = kernel survivors", kept == n_kernel))
        rows.append(
            [
                f"{label_window}: `rfsweep search -o FILE --columns {columns}` (child process, wall incl. start-up)",
                f"{kept:,}",
                secs(wall),
                rate(kept / wall),
                rate(size / wall),
                f"{wall / k_s:.2f}x",
                f"{wall / f_wall:.2f}x",
                f"{peak / 2**20:,.0f} MiB",
                f"{nbytes / 2**20:,.1f} MiB",
                secs(summary["seconds"]),
                secs(cpu),
            ]
        )
        goal = LAYOUT_TARGETS.get(columns)
        if goal is not None and window == SEARCH_WINDOW:
            targets.append(
                (
                    f"search --columns {columns}: >= {TARGETS[goal]:.0e} survivors/s end to end",
                    kept / wall >= TARGETS[goal],
                    f"{kept / wall:.3g}/s ({wall:.2f} s; the kernels alone in a child process: "
                    f"{f_rows / f_wall:.3g}/s, {f_wall:.2f} s)",
                )
            )
        targets.append(
            (
                f"{label_window} --columns {columns}: peak RSS < 1 GB",
                peak < TARGETS["peak_rss"],
                f"{peak / 1e9:.3f} GB = {peak / 2**20:,.0f} MiB",
            )
        )
    return rows


def section_search(args, depth: int, checks: list, targets: list) -> str:
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        run_cli(args, min(depth, 3), (20, 30), Path(tmp) / "warm.parquet", [])  # load the numba cache once
        small = f"rf [{SEARCH_WINDOW[0]}, {SEARCH_WINDOW[1]}]"
        rows = _search_rows(args, depth, SEARCH_WINDOW, ("wide", "compact", "lists"), checks, targets, tmp, small)
        if args.big and depth == 7:
            big = f"rf [{COUNT_WINDOW[0]}, {COUNT_WINDOW[1]}]"
            rows += _search_rows(args, depth, COUNT_WINDOW, ("wide", "compact"), checks, targets, tmp, big)
    size = r7(depth, SEARCH_WINDOW).size
    head = (
        f"### 2. search, depth {depth} ({size:,} candidates)"
        f"\n\nCLI rows: best wall of {max(1, args.cli_repeat)} run(s) (one for the large window), peak RSS the "
        "largest of them; 'x kernels' is the row's wall over the kernels-only seconds of its window (in "
        "process, warm), 'x floor' over the kernels-only child's wall (a process that starts, imports, builds "
        "the space and runs the kernels, writing nothing: what any layout costs at least); "
        "'in-CLI s' is the sweep's own clock (--json summary), without interpreter start-up and imports; "
        "'CPU s' the child's user + system time (both cores busy: up to 2x wall).\n\n"
    )
    return head + table(
        [
            "what",
            "survivors",
            "seconds",
            "survivors/s",
            "candidates/s",
            "x kernels",
            "x floor",
            "peak RSS",
            "file",
            "in-CLI s",
            "CPU s",
        ],
        rows,
    )


def section_scaling(args, depths, checks: list) -> str:
    rows = []
    prev = None  # (survivors, enumeration seconds) of the last depth enumerated
    exact = True  # every candidate the walk evaluated was a survivor (pruning cut everything else)
    for depth in depths:
        space = r7(depth, SEARCH_WINDOW)
        size = space.size
        dp_res, dp_s = best_of(
            lambda space=space: sweep.count_details(space, method="dp", threads=args.threads), max(5, args.repeat)
        )
        n = dp_res.count
        projected = None if prev is None or prev[0] == 0 else prev[1] * n / prev[0]
        if projected is not None and projected > args.max_enum_seconds:
            en_cell = f"skipped (projected ~{projected:,.0f} s)"
            en_rates = ["-", "-"]
        else:
            stats = engine.Stats()
            t0 = time.perf_counter()
            got = engine.count_by_enumeration(space, threads=args.threads, stats=stats)
            en_s = time.perf_counter() - t0
            checks.append((f"scaling depth {depth}: enumeration count = DP count ({n:,})", got == n))
            prev = (n, en_s)
            en_cell = secs(en_s)
            exact &= stats.evaluated == n
            en_rates = [rate(size / en_s), rate(n / en_s)]
        rows.append([str(depth), f"{size:.3g}", f"{n:,}", secs(dp_s), rate(size / dp_s), en_cell, *en_rates])
    head = (
        f"### 3. scaling, rf in [{SEARCH_WINDOW[0]}, {SEARCH_WINDOW[1]}], same 20 choices a layer\n\n"
        f"Enumeration: one run per depth, skipped when the previous depth's seconds per survivor project "
        f"more than {args.max_enum_seconds:.0f} s. "
        + (
            "The walk evaluated no candidate outside the window at any depth run (pruning is exact), so its "
            "work is the survivors plus their prefixes.\n\n"
            if exact
            else "\n\n"
        )
    )
    return head + table(
        [
            "depth",
            "space",
            "survivors",
            "DP s",
            "DP candidates/s",
            "enumerate s",
            "enumerate candidates/s",
            "enumerate survivors/s",
        ],
        rows,
    )


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="depth 5 versions of everything (< 30 s)")
    ap.add_argument("--skip-numpy", action="store_true", help="leave out the NumPy row of the count")
    ap.add_argument(
        "--python-sample",
        type=int,
        help="ids in the pure-Python sample (default 200,000; 20,000 with --quick; 0 leaves the row out)",
    )
    ap.add_argument("--threads", type=int, help="numba threads (default: all cores)")
    ap.add_argument(
        "--no-big",
        dest="big",
        action="store_false",
        help="leave out the R7 [200, 250] search (145.6 M survivors, ~1 GB written per layout)",
    )
    ap.add_argument("--repeat", type=int, default=2, help="runs per rfsweep row, the best is kept (default 2)")
    ap.add_argument("--cli-repeat", type=int, default=2, help="runs per CLI row, the best is kept (default 2)")
    ap.add_argument(
        "--max-enum-seconds",
        type=float,
        default=60.0,
        help="skip scaling enumerations projected to take longer (default 60)",
    )
    ap.add_argument(
        "--only", choices=["count", "search", "scaling"], action="append", help="run only these sections (repeatable)"
    )
    args = ap.parse_args(argv)
    if args.python_sample is None:
        args.python_sample = 20_000 if args.quick else 200_000
    depth = 5 if args.quick else 7
    depths = range(3, 7) if args.quick else range(5, 11)
    sections = args.only or ["count", "search", "scaling"]

    import numba

    if args.threads:
        numba.set_num_threads(args.threads)
    load0 = _load()
    t_all = time.perf_counter()
    warm = r7(3, (20, 30))  # compile or load every kernel before a clock starts
    sweep.count_details(warm, method="dp")
    sweep.count_details(warm, method="enumerate", threads=args.threads)
    sum(len(b) for b in engine.iter_batches(warm, reuse_buffers=True, threads=args.threads))
    _numpy_eval(warm, np.arange(100, dtype=np.int64), _layer_tables(warm))

    m = machine()
    print(f"## rfsweep sweep benchmark ({'quick, depth 5' if args.quick else 'R7'})\n")
    print(f"- date: {m['date']}")
    print(
        f"- machine: {m['cores']} cores, {m['cpu']}; numba {m['numba']} with {m['numba_threads']} threads "
        f"(threading layer {m['threading_layer']}); numpy {m['numpy']}; Python {m['python']}"
    )
    print(f"- rfsweep {m['rfsweep']} (commit {m['commit']})")
    print(
        f"- 1-minute load average before the run: {load0:.2f}"
        + ("  (other work was running: timings may be low)" if load0 > 0.5 else "")
    )
    print(
        f"- space: conv, kernels 1,3,5,7, strides 1,2, dilations 1,2,3, 32 channels, same padding, input 224: "
        f"20 choices a layer; depth {depth} = {20**depth:,} candidates\n",
        flush=True,
    )

    checks: list[tuple[str, bool]] = []
    targets: list[tuple[str, bool, str]] = []
    if "count" in sections:
        print(section_count(args, depth, checks, targets) + "\n", flush=True)
    if "search" in sections:
        print(section_search(args, depth, checks, targets) + "\n", flush=True)
    if "scaling" in sections:
        print(section_scaling(args, depths, checks) + "\n", flush=True)

    if targets:
        print("### Targets" + (" (stated for R7 on 2 cores; this is the quick run)" if args.quick else "") + "\n")
        for what, met, got in targets:
            print(f"- {what}: {'met' if met else 'NOT met'} ({got})")
        print()
    print("### Checks\n")
    for what, ok in checks:
        print(f"- {'OK' if ok else 'MISMATCH'}: {what}")
    print(
        f"\n{time.perf_counter() - t_all:.0f} s in all; 1-minute load average at the end: {_load():.2f} "
        "(this benchmark alone brings it towards its thread count)"
    )
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
