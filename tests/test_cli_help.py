"""`--help` of every command: each numeric option says its type and range, no obsolete choice or stale
sentence is offered; and the defaults' first answers: conv stacks, the rows -o writes (issue 24)."""

from __future__ import annotations

import re

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rfsweep.cli.main import main
from rfsweep.space import build_space

# options whose value is text by nature (names, paths, filters, addresses), not a number
TEXT_OPTIONS = {
    "--taps", "--plot", "-o", "--output", "--where", "--ids", "--pareto", "--model", "--scheduler", "--space",
    "--boxes",
}  # fmt: skip


def commands(group=main, path=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def help_of(*path):
    res = CliRunner().invoke(main, [*path, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split())


@pytest.mark.parametrize("path,cmd", list(commands()), ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_every_option_says_its_type(path, cmd):
    """No option that takes a value is shown as TEXT unless its value is text."""
    text = help_of(*path)
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.is_flag or p.opts[0] in TEXT_OPTIONS:
            continue
        metavar = p.make_metavar(click.Context(cmd))
        assert metavar != "TEXT", (path, p.opts)
        assert f"{p.opts[-1]} {metavar}" in text, (path, p.opts, metavar)


def test_search_help_shows_integer_and_ranges():
    text = help_of("search")
    for shown in (
        "--depth N|MIN-MAX Layers per candidate: N or MIN-MAX. [default: 1-8; 1<=N<=32]",
        "--kernels INTEGER,... Conv kernel sizes. [default: 1,3,5,7; 1<=x<=255]",
        "--max-params INTEGER Parameter budget (e.g. 5e6). [x>=0]",
        "--max-rf-ratio FLOAT Largest rf / input size. [x>0]",
        "--min-convs INTEGER",
        "[default: 1 (0 for conv-only chains and spaces of stages); 0<=x<=32]",
        "--limit INTEGER Keep only the best N (with --sort) or the first N. [x>=1]",
        "--columns [wide|lists|compact]",
        "--cluster local:N",
    ):
        assert shown in text, shown
    assert "full" not in re.findall(r"--columns \[([^\]]*)\]", text)[0]


def test_numbers_in_exponent_form_still_work():
    """The help says INTEGER; the settings parser still reads 5e1 (rfsweep.space.settings.parse_int)."""
    res = CliRunner().invoke(main, ["count", "--depth", "3", "--ops", "conv", "--kernels", "3", "--rf-min", "5e0"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "8\n"  # 3 layers of conv 3x3, stride 1 or 2: 2^3 stacks, every rf >= 7
    res = CliRunner().invoke(main, ["count", "--depth", "3", "--rf-min", "2.5"])
    assert res.exit_code == 2
    assert res.stderr == "error: field 'rf_min': value \"2.5\": must be an integer\n"


def test_count_help_speaks_of_counts_not_datasets():
    text = help_of("count")
    assert "dataset" not in text and "-o DIR" not in text
    assert "the shards' counts are added up" in text
    assert "the survivors go to a dataset directory, -o DIR" in help_of("search")


def test_default_space_needs_a_conv_unless_asked():
    """Pool-only stacks (no parameters) are not candidates of a chain with pools unless --min-convs 0; a
    conv-only chain and a space of stages are unchanged."""
    assert build_space({"target_rf": 224}).min_convs == 1
    assert build_space({"target_rf": 224, "min_convs": 0}).min_convs == 0
    assert build_space({"target_rf": 224, "ops": "conv"}).min_convs == 0
    assert build_space({}, for_search=False).settings["min_convs"] == 1
    assert build_space({"ops": "conv,avgpool", "depth": 2}).min_convs == 1
    res = CliRunner().invoke(main, ["count", "--depth", "1-2", "--kernels", "3", "--pool-kernels", "2"])
    with_conv = int(res.stdout)
    res = CliRunner().invoke(
        main, ["count", "--depth", "1-2", "--kernels", "3", "--pool-kernels", "2", "--min-convs", "0"]
    )
    # choices a layer: conv 3x3 s1/s2, maxpool 2 s1/s2: 4 + 16 candidates, of which 2 + 4 have no conv
    assert (with_conv, int(res.stdout)) == (14, 20)


def test_search_prints_the_first_rows_it_writes(tmp_path):
    """Without -o the rows are the first ones -o writes for the same flags, in the same order, and they are
    conv stacks."""
    flags = ["search", "--depth", "2-4", "--target-rf", "15", "--tolerance", "2", "--input-size", "32"]
    res = CliRunner().invoke(main, flags, terminal_width=400)
    assert res.exit_code == 0, res.output
    shown = [int(line.split()[0]) for line in res.stdout.splitlines()[1:]]
    assert len(shown) == 20
    out = tmp_path / "r.parquet"
    res = CliRunner().invoke(main, [*flags, "-o", str(out)])
    assert res.exit_code == 0, res.output
    t = pq.read_table(out)
    assert t.column("arch_id").to_pylist()[:20] == shown
    ops = [c for c in t.column_names if c.startswith("op_")]
    for row in t.select(ops).to_pylist():
        assert "conv" in row.values()
    sorted_flags = [*flags, "--min-convs", "2", "--sort", "params", "--limit", "5"]
    res = CliRunner().invoke(main, sorted_flags, terminal_width=400)
    shown = [int(line.split()[0]) for line in res.stdout.splitlines()[1:]]
    res = CliRunner().invoke(main, [*sorted_flags, "-o", str(out)])
    assert pq.read_table(out).column("arch_id").to_pylist() == shown


def test_quiet_silences_the_librarys_notes():
    """-q: no progress line, notes or summary on stderr; the notes of logger 'rfsweep' (a first-run
    compile) included, and only for that command."""
    import logging

    from rfsweep.cli.base import diagnostics_to_stderr, friendly

    @click.command()
    @click.option("-q", "--quiet", is_flag=True)
    @friendly
    def noisy(quiet):
        logging.getLogger("rfsweep").info("compiling the numba kernels ...")

    diagnostics_to_stderr()
    assert CliRunner().invoke(noisy, []).stderr == "compiling the numba kernels ...\n"
    assert CliRunner().invoke(noisy, ["-q"]).stderr == ""
    assert CliRunner().invoke(noisy, []).stderr == "compiling the numba kernels ...\n"
