"""`rfsweep latency measure`: a thin wrapper over rfsweep.nas.latency_measure."""

from __future__ import annotations

import json

import click

from rfsweep.cli.base import friendly


@click.group()
def latency():
    """Latency look-up tables for spaces of stages (then: --latency-lut on search, count and export)."""


@latency.command()
@click.option(
    "--space",
    "space_file",
    required=True,
    help="A space of stages: a shipped name (ofa_mbv3, ...) or a TOML file. Chain spaces have no blocks to key.",
)
@click.option("--backend", type=click.Choice(["torch", "onnxruntime"]), default="torch", show_default=True,
              help="What runs the blocks: torch eager (inference mode), or onnxruntime on the block exported to "
              "ONNX (pip install 'rfsweep[onnxruntime]').")  # fmt: skip
@click.option("--threads", type=int, default=1, show_default=True, help="Intra-op threads of the backend.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed runs before the timed ones.")
@click.option("--repeats", type=int, default=50, show_default=True, help="Timed runs per block (median kept).")
@click.option(
    "--cache",
    type=click.Choice(["warm", "cold"]),
    default="warm",
    show_default=True,
    help="warm: the block runs again and again on the same input (weights stay in cache); cold: a 64 MiB "
    "buffer is written before each timed run (the weights leave the cache) and the input read back in.",
)
@click.option(
    "--clock",
    type=click.Choice(["wall", "cpu"]),
    default="wall",
    show_default=True,
    help="wall: elapsed time; cpu: the CPU time of the one thread that runs the block (--threads 1), which "
    "leaves out the time other processes hold the core: for a shared machine.",
)
@click.option("-o", "--output", required=True, help="The table (.json), rewritten atomically as entries come.")
@click.option("--resume", is_flag=True, help="Keep the entries already in -o (same backend and threads).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout (no progress).")
@click.option("-q", "--quiet", is_flag=True, help="No progress line or summary on stderr.")
@friendly
def measure(space_file, backend, threads, warmup, repeats, cache, clock, output, resume, as_json, quiet):
    """Time every distinct block of a space of stages (stem and head too) on this machine.

    Each block is built exactly as `rfsweep export` / rfsweep.torch.build builds it, at the input
    shape the space gives it, and timed with batch 1: --warmup runs, then --repeats timed runs; the
    median is the entry (p10 and p90 kept). Keys are Once-for-All's (expanded_conv-input:...). The
    file keeps the machine, backend, threads and versions; it is valid after every few entries and
    after Ctrl-C, and --resume measures only what is missing.

    \b
    Examples:
      rfsweep latency measure --space ofa_mbv3 --threads 1 -o mbv3_cpu1.json
      rfsweep count --space ofa_mbv3 --latency-lut mbv3_cpu1.json --max-latency-ms 30
    """
    from rfsweep.engine import steer
    from rfsweep.nas import latency_measure
    from rfsweep.space import build_space
    from rfsweep.space.stages import load

    space = build_space(load(space_file), for_search=False)
    bar = steer.Progress(enabled=None if not (as_json or quiet) else False)

    def progress(done, total, elapsed):
        bar.update(lambda now: f"latency {done}/{total} blocks | {steer.eta(elapsed, done / total)}")

    try:
        table = latency_measure.measure(
            space, output, backend=backend, threads=threads, warmup=warmup, repeats=repeats, resume=resume,
            cache=cache, clock=clock, progress=progress, inputs=(space_file,),
        )  # fmt: skip
    finally:
        bar.done()
    summary = {"entries": len(table["entries"]), "backend": backend, "threads": threads, "output": output}
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        click.echo(f"{summary['entries']} entries ({backend}, {threads} thread(s)) -> {output}", err=True)
