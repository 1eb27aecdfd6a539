"""First run against later runs: every shell example of README.md and docs/, cold and warm.

Cold: a new process with an empty numba cache (NUMBA_CACHE_DIR set to a fresh directory), so every
kernel the command needs is compiled, as on the first run after an install. Warm: the same command
again with that cache filled (best of --repeat runs). Each example runs in a scratch directory after
the commands before it on its page (untimed, warm), as the docs tests run them (tests/docs_pages.py
finds the examples; blocks marked skip are left out, slow ones included). Prints the machine, the load
average before and after, and a table with the ratio cold / warm; also times which dispatchers compile
for the main job (--compiles).

    python benchmarks/bench_cold.py                 # every example (~10 min on 2 cores)
    python benchmarks/bench_cold.py --only "main job"
    python benchmarks/bench_cold.py --compiles      # the main job's compile times, per dispatcher

Never a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import docs_pages  # noqa: E402  (the pages' examples, found as the docs tests find them)

MAIN_JOB = "rfsweep search --target-rf 224 --min-convs 5 --sort params --limit 1000 -o candidates.parquet"
RFSWEEP = [sys.executable, "-c", "from rfsweep.cli.main import run; run()"]


def examples() -> list[tuple[str, list[tuple[str, str]], str]]:
    """(where, setup steps, command): every example command of the pages, with what runs before it on its
    page (a setup step is ('run', command) or ('file', name) with the file's text)."""
    out = [("README.md (main job)", [], MAIN_JOB)]
    for name in docs_pages.example_pages():
        setup: list[tuple[str, str]] = []
        for block in docs_pages.blocks(name):
            kind, arg = block.marker or ("", "")
            if kind == "file":
                setup.append(("file", arg + "\n" + "\n".join(block.lines) + "\n"))
                continue
            if not block.is_example or kind == "example" and arg.startswith("skip"):
                continue
            for command, _ in block.commands():
                out.append((name, list(setup), command))
                setup.append(("run", command))
    return out


def shell(command: str, cwd: Path, cache: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `rfsweep ...` line in a new process (`> FILE` honoured), output
    discarded. CPU seconds show compile work even on a busy machine (compiling uses one thread)."""
    args = shlex.split(command, comments=True)
    target = None
    if ">" in args:
        at = args.index(">")
        args, target = args[:at], args[at + 1]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(cwd / target if target else os.devnull, "w") as out:
        res = subprocess.run(RFSWEEP + args[1:], cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"{command}: exit {res.returncode}: {res.stderr.strip()[-300:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba

    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores ({model}), "
        f"Python {platform.python_version()}, numba {numba.__version__}"
    )


def compiles() -> None:
    """The main job in this process with numba's compile events: seconds per top-level dispatcher."""
    cache = Path(tempfile.mkdtemp(prefix="rfsweep-cold-"))
    os.environ["NUMBA_CACHE_DIR"] = str(cache)
    code = f"""
import collections, sys, time
from numba.core import event
spans = []
class Listen(event.Listener):
    def on_start(self, ev):
        open_spans = sum(1 for s in spans if s[2] is None)
        spans.append([ev.data["dispatcher"].py_func, time.perf_counter(), None, open_spans])
    def on_end(self, ev):
        f = ev.data["dispatcher"].py_func
        for s in reversed(spans):
            if s[0] is f and s[2] is None:
                s[2] = time.perf_counter()
                break
event.register("numba:compile", Listen())
from rfsweep.cli.main import main
start = time.perf_counter()
try:
    main({shlex.split(MAIN_JOB)[1:] + ["-q"]!r}, standalone_mode=False)
except SystemExit:
    pass
total = time.perf_counter() - start
top = collections.Counter()
for f, a, b, depth in spans:
    if depth == 0:
        top[f.__module__ + "." + f.__qualname__] += b - a
print(f"main job, cold, in one process: {{total:.1f}} s; top-level compiles {{sum(top.values()):.1f}} s")
print("| dispatcher | compile s |")
print("|---|---|")
for name, s in top.most_common():
    print(f"| {{name}} | {{s:.2f}} |")
"""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", code], cwd=tmp, check=True)
    shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2, help="warm runs per example (best is shown)")
    ap.add_argument("--only", help="examples whose page or command contains this text")
    ap.add_argument("--compiles", action="store_true", help="the main job's compile time per dispatcher only")
    args = ap.parse_args()
    print(machine())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.compiles:
        compiles()
        return
    print("wall seconds of a new process; CPU s: its user + system time (both cores may be busy)")
    print()
    print("| page | command | cold s | warm s | cold / warm | cold CPU s | warm CPU s |")
    print("|---|---|---|---|---|---|---|", flush=True)
    seen = set()
    for where, setup, command in examples():
        if args.only and args.only not in where and args.only not in command or command in seen:
            continue
        seen.add(command)  # the same command on another page: measured once
        with tempfile.TemporaryDirectory() as tmp:
            cwd = Path(tmp)
            (cwd / "data").symlink_to(ROOT / "data")
            warm_cache = Path(tmp) / ".warm-cache"
            for kind, step in setup:
                if kind == "file":
                    name, _, text = step.partition("\n")
                    (cwd / name).write_text(text)
                else:
                    shell(step, cwd, warm_cache)
            cold_cache = Path(tmp) / ".cold-cache"
            cold, cold_cpu = shell(command, cwd, cold_cache)
            warm, warm_cpu = min(shell(command, cwd, cold_cache) for _ in range(args.repeat))
        shown = command.split("#")[0].strip().replace("|", "\\|")
        print(
            f"| {where} | `{shown}` | {cold:.1f} | {warm:.2f} | {cold / warm:.1f}x | {cold_cpu:.1f} | {warm_cpu:.2f} |",
            flush=True,
        )
    print()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
