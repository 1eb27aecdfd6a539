"""Measured latency tables: every distinct block of a space of stages (stem and head included) built exactly
as the exported model builds it (rfsweep.nas.torch_modules.block_modules, rfsweep.nas.torch_build), at the
input shape the space gives it, and timed on this machine with torch or onnxruntime.

Per entry: ``warmup`` untimed runs, then ``repeats`` timed runs of batch 1 (``time.perf_counter_ns``, or
the thread's CPU time, around one forward pass); the median is the entry's time, p10, p90 and the repeats
are kept beside it. Each is net of the call overhead: the median time of an empty model timed the same
way (``call_overhead_ms`` in the file, the raw median kept as ``raw_median_ms``), so that a sum over a
subnet's blocks does not count the cost of calling a model once per block (small with torch eager: 8 us
of CPU on the 2-core EPYC of benchmarks/README.md). The
file records the machine (platform, CPU model, cores, load average before and after), the backend, the
threads, the library versions and the counts. It is rewritten (temporary file, renamed) every few
entries and when the run stops, Ctrl-C included, so it is always a valid, partial table; ``resume`` keeps
the entries already measured (same backend and threads, else refused).

The keys are rfsweep.space.latency's (Once-for-All's format); a candidate's prediction is the sum of its
blocks' entries, which :func:`time_model` checks against end-to-end timings (benchmarks/bench_latency.py).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np

from rfsweep.core.errors import field_error
from rfsweep.core.files import atomic, check_output, read_text
from rfsweep.engine import steer
from rfsweep.space import latency
from rfsweep.space.model import Choice

BACKENDS = ("torch", "onnxruntime")
CACHES = ("warm", "cold")
# wall: time.perf_counter_ns; cpu: time.thread_time_ns, the CPU time of this thread alone, which leaves out the
# time other processes hold the core (one thread only: torch with 1 intra-op thread and onnxruntime with 1
# run the operators in the calling thread)
CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}
FLUSH_BYTES = 64 << 20  # written before each timed run with cache 'cold': twice the 32 MiB L3 measured here
SAVE_EVERY = 8  # entries between rewrites of the file (a rewrite takes milliseconds)


def _need(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise field_error("backend", module, f"needs {module} installed ({extra})") from None


def machine() -> dict:
    """What the times were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in read_text("/proc/cpuinfo", "cpuinfo").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except Exception:  # noqa: BLE001 (not Linux: the platform's word is kept)
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0]}


def versions(backend: str) -> dict:
    from rfsweep.core.version import __version__

    out = {"rfsweep": __version__, "numpy": np.__version__}
    torch = _need("torch", "pip install torch")
    out["torch"] = torch.__version__
    if backend == "onnxruntime":
        out["onnxruntime"] = _need("onnxruntime", "pip install 'rfsweep[onnxruntime]'").__version__
    return out


def block_model(b: latency.BlockAt):
    """The torch module of one block as export builds it, and its input shape (batch 1)."""
    from rfsweep.nas.torch_build import instantiate_blocks
    from rfsweep.nas.torch_modules import block_modules

    one = SimpleNamespace(
        in_channels=b.cin,
        positions=[[Choice(op="block", kernel=0, stride=1, dilation=1, channels=0, blocks=(b.block,))]],
        position_names=[b.role],
    )
    n = 1 if b.n is None else b.n
    return instantiate_blocks(block_modules(one, [0])), (1, b.cin, n, n)


def runner(model, shape: tuple[int, ...], backend: str, threads: int) -> tuple[Callable[[], None], Callable]:
    """(a function running one forward pass of ``model`` on a fixed random input on the backend, one reading
    that input through, which brings it into the cache)."""
    torch = _need("torch", "pip install torch")
    torch.set_num_threads(threads)
    model.eval()
    x = torch.randn(*shape)
    if backend == "torch":

        def run():
            with torch.inference_mode():
                model(x)

        return run, lambda: float(x.sum())
    ort = _need("onnxruntime", "pip install 'rfsweep[onnxruntime]'")
    import io

    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (x,), buf, input_names=["x"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}

    def run():
        sess.run(None, feed)

    return run, lambda: float(feed["x"].sum())


def time_model(
    model, shape, backend: str, threads: int, warmup: int, repeats: int, cache: str = "warm", clock: str = "wall"
) -> dict:
    """Median, p10, p90 (ms) of ``repeats`` timed forward passes after ``warmup`` untimed ones. ``cache``
    'cold': before each timed pass a buffer larger than the caches is written (the weights leave the
    cache) and the input is read (it is back in cache, as a block's input is inside the whole model).
    ``clock`` 'cpu': this thread's CPU time (``threads`` must be 1), else wall time."""
    _check_mode(cache, clock, threads)
    now = CLOCKS[clock]
    run, touch = runner(model, shape, backend, threads)
    flush = np.zeros(FLUSH_BYTES // 8) if cache == "cold" else None
    for _ in range(warmup):
        run()
        steer.check()
    times = np.empty(repeats)
    for i in range(repeats):
        if flush is not None:
            flush += 1.0
            touch()
        t0 = now()
        run()
        times[i] = (now() - t0) / 1e6
        steer.check()
    p10, med, p90 = np.percentile(times, [10, 50, 90])
    return {"median_ms": round(float(med), 6), "p10_ms": round(float(p10), 6), "p90_ms": round(float(p90), 6),
            "repeats": repeats}  # fmt: skip


def call_overhead(backend: str, threads: int, warmup: int, repeats: int, cache: str, clock: str) -> float:
    """The median time (ms) of an empty model (BlockNet with no block) on a 1x1x1 input, timed as the
    blocks are: what calling a model costs whatever is in it."""
    from rfsweep.nas import torch_blocks

    _need("torch", "pip install torch")
    empty = torch_blocks.BlockNet([], [])
    return time_model(empty, (1, 1, 1, 1), backend, threads, warmup, repeats, cache, clock)["median_ms"]


def _net_of(entry: dict, overhead: float) -> dict:
    """An entry less the call overhead (never below 0), the raw median kept beside it."""
    out = {k: (round(max(0.0, v - overhead), 6) if k in latency.TIME_FIELDS else v) for k, v in entry.items()}
    out["raw_median_ms"] = entry["median_ms"]
    return out


def _previous_overhead(path: str) -> float | None:
    raw = json.loads(read_text(path, "output"))
    v = raw.get("call_overhead_ms")
    return float(v) if isinstance(v, (int, float)) else None


def _check_mode(cache: str, clock: str, threads: int) -> None:
    if cache not in CACHES:
        raise field_error("cache", cache, f"must be one of {', '.join(CACHES)}")
    if clock not in CLOCKS:
        raise field_error("clock", clock, f"must be one of {', '.join(CLOCKS)}")
    if clock == "cpu" and threads != 1:
        raise field_error("clock", clock, f"times one thread's CPU: --threads 1, not {threads}")


def _previous(path: str, head: dict) -> dict:
    """The entries of an earlier run of the same table (--resume)."""
    if not os.path.exists(path):
        return {}
    table = latency.parse_json(read_text(path, "output"), path)
    for k in ("backend", "threads", "cache", "clock", "warmup", "repeats"):
        if table.info.get(k) != head[k]:
            raise field_error(
                "resume", path, f"was measured with {k} {table.info.get(k)!r}, not {head[k]!r}: measure into a new file"
            )
    raw = json.loads(read_text(path, "output"))
    return dict(raw["entries"])


def measure(
    space,
    output: str,
    *,
    backend: str = "torch",
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    resume: bool = False,
    cache: str = "warm",
    clock: str = "wall",
    progress: Callable[[int, int, float], None] | None = None,
    inputs: tuple = (),
) -> dict:
    """Measure every distinct block of ``space`` into the latency table ``output`` (JSON); returns the table.
    ``progress(done, total, elapsed)`` is called after each entry."""
    if backend not in BACKENDS:
        raise field_error("backend", backend, f"must be one of {', '.join(BACKENDS)}")
    for name, v, lo in (("threads", threads, 1), ("warmup", warmup, 0), ("repeats", repeats, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise field_error(name, v, f"must be an integer >= {lo}")
    _check_mode(cache, clock, threads)
    latency.check_space(space)
    out = check_output(output, "output", suffixes=(".json",), inputs=inputs)
    head = {
        "format": latency.FORMAT,
        "resolution_us": latency.RESOLUTION_US,
        "space": {"name": space.settings.get("name"), "input_size": space.input_size},
        "backend": backend,
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "batch": 1,
        "cache": cache,
        "clock": clock,
        "versions": versions(backend),
        "machine": machine(),
    }
    entries = _previous(out.real, head) if resume else {}
    previous = _previous_overhead(out.real) if resume and entries else None
    head["call_overhead_ms"] = (
        previous if previous is not None else call_overhead(backend, threads, warmup, repeats, cache, clock)
    )
    blocks = [b for b in latency.distinct_blocks(space) if b.key not in entries]
    head["machine"]["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]

    def save() -> dict:
        table = {**head, "entries": entries}
        table["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        with atomic(out) as name, open(name, "w", encoding="utf-8") as f:
            json.dump(table, f, indent=1)
        return table

    t0 = time.monotonic()
    try:
        for i, b in enumerate(blocks):
            model, shape = block_model(b)
            raw = time_model(model, shape, backend, threads, warmup, repeats, cache, clock)
            entries[b.key] = _net_of(raw, head["call_overhead_ms"])
            if (i + 1) % SAVE_EVERY == 0:
                save()
            if progress is not None:
                progress(i + 1, len(blocks), time.monotonic() - t0)
    finally:
        table = save()  # stopped or done: the entries so far, a valid table
    return table


def complete(space, path: str, *, progress: Callable[[int, int, float], None] | None = None) -> int:
    """``--measure-missing``: measure the blocks of ``space`` that the table ``path`` lacks, on this machine, with
    the backend, threads, warm-up, repeats, cache and clock the table was measured with, into the same file
    (:func:`measure` with ``resume``); returns how many entries were added. Refused with one line: a table
    that is not rfsweep's JSON (Once-for-All's YAML was measured elsewhere), one measured for another space
    or on another machine (its entries and the new ones would not add up)."""
    if str(path).lower().endswith((".yaml", ".yml")):
        raise field_error("measure_missing", path, "completes a table rfsweep measured (JSON), not a YAML table "
                          "measured elsewhere: rfsweep latency measure --space ... -o lut.json")  # fmt: skip
    table = latency.read_table(path)
    measured_for = (table.info.get("space") or {}).get("name")
    here = space.settings.get("name")
    if measured_for is not None and here is not None and measured_for != here:
        raise field_error("latency_lut", path, f"was measured for space {measured_for!r}, not {here!r}")
    then, now = table.info.get("machine") or {}, machine()
    for k in ("cpu", "cores", "platform"):
        if then.get(k) != now[k]:
            raise field_error(
                "measure_missing", path, f"was measured on another machine ({k} {then.get(k)!r}, here {now[k]!r}): "
                "its entries and this machine's would not add up; measure the whole table here"
            )  # fmt: skip
    missing = [b for b in latency.distinct_blocks(space) if b.key not in table.entries]
    if missing:
        mode = {k: table.info.get(k) for k in ("backend", "threads", "warmup", "repeats", "cache", "clock")}
        measure(space, path, resume=True, progress=progress, **mode)
    return len(missing)


__all__ = ["BACKENDS", "block_model", "complete", "machine", "measure", "runner", "time_model", "versions"]
