"""`rfsweep verify`: a thin wrapper over :mod:`rfsweep.output.verify`."""

from __future__ import annotations

import json
import sys

import click

from rfsweep.cli.base import friendly


def _bar(enabled: bool):
    """Progress on one stderr line (a terminal only): bytes checked of the total, with an ETA."""
    from rfsweep.engine import steer

    bar = steer.Progress(enabled=None if enabled else False)

    def show(done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        head = f"verify {100 * fraction:5.1f}% | {done / 1e6:,.1f} of {total / 1e6:,.1f} MB"
        bar.update(lambda now: f"{head} | {steer.eta(now, fraction)}")

    show.done = bar.done
    return show


@click.command()
@click.argument("path", metavar="FILE|DIR")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout (no progress).")
@click.option("-q", "--quiet", is_flag=True, help="No progress, notes or summary on stderr: the findings only.")
@friendly
def verify(path, as_json, quiet):
    """Check a Parquet file or a dataset directory: page CRCs, statistics against the data, footers, and a
    dataset's manifest (every part present and no other, rows, SHA-256 checksums, shard ranges).

    One line a finding on stdout; notes (what could not be checked, and why) and a summary on stderr.
    Exit code 0 when sound, 1 when damaged, 2 for bad usage (a missing path, not a Parquet file, a
    directory that is not a dataset). Nothing is written.

    \b
    Examples:
      rfsweep verify candidates.parquet
      rfsweep verify r7/            # a dataset: the manifest, then every part
      rfsweep verify r7/ --json
    """
    from rfsweep.output import verify as checks

    talk = not (as_json or quiet)
    bar = _bar(talk)
    try:
        report = checks.check(path, progress=bar)
    finally:
        bar.done()
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        for line in report.findings:
            click.echo(line)
        if talk:
            for line in report.notes:
                click.echo(f"note: {line}", err=True)
            covered = ", ".join(
                f"{n:,} {what}{'s' * (n != 1)}"
                for n, what in (
                    (report.files, "file"),
                    (report.rows, "row"),
                    (report.row_groups, "row group"),
                    (report.pages, "page"),
                )  # fmt: skip
            )
            if report.sound:
                click.echo(f"sound: {covered} checked", err=True)
            else:
                n = len(report.findings)
                click.echo(f"damaged: {n:,} finding{'s' * (n != 1)} in {covered}", err=True)
    if not report.sound:
        sys.exit(1)
