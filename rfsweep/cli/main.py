"""The `rfsweep` command: a thin layer over the Python API. Results go to stdout, diagnostics to stderr.

Bad input exits with code 2 and one line ``error: ...`` naming the field and the value; no traceback.
"""

from __future__ import annotations

import sys

import click

from rfsweep.cli import anchors as cli_anchors
from rfsweep.cli import export as cli_export
from rfsweep.cli import latency as cli_latency
from rfsweep.cli import network as cli_network
from rfsweep.cli import sweep as cli_sweep
from rfsweep.cli import verify as cli_verify
from rfsweep.cli.base import OneLineErrors, diagnostics_to_stderr


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rfsweep")
def main():
    """Exact receptive fields of CNNs, and Numba-accelerated sweeps over millions of candidate stacks.

    \b
    Examples:
      rfsweep analyze vgg16
      rfsweep search --target-rf 224 -o candidates.parquet
      rfsweep count --depth 10 --rf-min 200 --rf-max 250
    """
    diagnostics_to_stderr()


# Each command group lives in its own module; the order here is the order of --help.
for _command in (
    cli_network.analyze,
    cli_network.zoo,
    cli_anchors.anchors,
    cli_anchors.anchor_search,
    cli_network.import_model,
    cli_sweep.search,
    cli_sweep.count,
    cli_sweep.show,
    cli_verify.verify,
    cli_export.export,
    cli_latency.latency,
):
    main.add_command(_command)


def run() -> None:
    """The ``rfsweep`` console script: :func:`main` in a process that ends with it.

    Start-up makes a few hundred thousand objects (numba's type registries) and no garbage worth a
    collection, so the collector waits longer between passes; at the end the atexit handlers run and
    the process exits without the interpreter's teardown, which only frees memory the system takes
    back anyway (measured on R7: ~0.1 s of start-up and ~0.15 s of exit, a tenth of a search's wall
    time). Tests call :func:`main` and keep Python's ways.
    """
    import gc

    gc.set_threshold(50_000, 50, 50)
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    finally:
        gc.freeze()
    _exit(code)


def _exit(code) -> None:
    """``sys.exit(code)`` without the teardown: atexit handlers, streams flushed, then ``os._exit``. A
    thread Python would wait for (none of rfsweep's) keeps the ordinary exit."""
    import atexit
    import os
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"), as Python prints it
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head) or stream: nothing left to say there
            pass
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    run()
