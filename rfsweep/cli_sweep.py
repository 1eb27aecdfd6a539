"""`rfsweep search`, `rfsweep count` and `rfsweep show`: thin wrappers over rfsweep.sweep."""

from __future__ import annotations

import json
import sys

import click

from rfsweep.cli_base import friendly
from rfsweep.errors import RFSweepError, field_error

SPACE_OPTIONS = [
    click.option(
        "--space",
        "space_file",
        type=click.Path(dir_okay=False),
        help="TOML file with any of these settings (underscores) and [[positions]] overrides; flags win.",
    ),
    click.option("--depth", help="Layers per candidate: N or MIN-MAX.  [default: 1-8]"),
    click.option("--ops", help="Layer ops to choose from: conv,maxpool,avgpool.  [default: conv,maxpool]"),
    click.option("--kernels", help="Conv kernel sizes.  [default: 1,3,5,7]"),
    click.option("--pool-kernels", help="Pool kernel sizes.  [default: 2,3]"),
    click.option("--strides", help="Strides.  [default: 1,2]"),
    click.option("--pool-strides", help="Pool strides.  [default: --strides]"),
    click.option("--dilations", help="Conv dilations (only for kernels > 1).  [default: 1]"),
    click.option("--channels", help="Conv output channels to choose from (instead of the width rule)."),
    click.option(
        "--width", type=int, help="Width rule: conv channels = width x 2^(strided layers so far).  [default: 32]"
    ),
    click.option("--max-width", type=int, help="Cap of the width rule.  [default: 512]"),
    click.option(
        "--padding", type=click.Choice(["same", "valid", "tf_same"]), help="Padding of every layer.  [default: same]"
    ),
    click.option("--input-size", type=int, help="Square input size.  [default: 224]"),
    click.option("--in-channels", type=int, help="Input channels.  [default: 3]"),
    click.option("--bias/--no-bias", default=None, help="Conv bias in the parameter count.  [default: bias]"),
    click.option("--target-rf", help="Target receptive field (with --tolerance)."),
    click.option("--tolerance", help="Allowed |rf - target|.  [default: 0]"),
    click.option("--rf-min", help="Smallest rf kept."),
    click.option("--rf-max", help="Largest rf kept."),
    click.option("--min-out-size", help="Smallest final feature map size.  [default: 1]"),
    click.option("--max-params", help="Parameter budget (e.g. 5e6)."),
    click.option("--max-macs", help="MAC budget (e.g. 1e9)."),
    click.option("--jump", help="Allowed final jumps (effective strides), e.g. 16,32."),
    click.option("--max-rf-ratio", type=float, help="Largest rf / input size."),
    click.option(
        "--no-unproductive",
        is_flag=True,
        default=None,
        help="Drop candidates with a spatial layer whose every input unit already sees the whole input.",
    ),
    click.option(
        "--min-convs",
        help="Fewest conv layers in a candidate (pools alone have no parameters, so "
        "--sort params without it favours pool-only stacks).  [default: 0]",
    ),
    click.option(
        "--anchors",
        help="Detector levels SIZE@STRIDE, e.g. 32@8,64@16,128@32: each needs a tap (the "
        "last layer at that jump) whose rf and ERF suit the anchor.",
    ),
    click.option(
        "--anchor-rf",
        help="Tap rf / anchor window MIN:MAX.  [default: 1:4; S3FD's taps have RFs "
        "1.4-3.6x their anchors, LFFD sizes RFs 2-4x its objects]",
    ),
    click.option(
        "--anchor-erf",
        help="Smallest 2 x erf_sigma / anchor at the tap (S3FD: anchors should sit "
        "inside the effective RF).  [default: 1]",
    ),
    click.option(
        "--device",
        type=click.Choice(["cpu", "cuda", "auto"]),
        default="cpu",
        show_default=True,
        help="Where the kernels run; auto takes the GPU when numba.cuda sees one.",
    ),
    click.option("--threads", type=int, help="CPU threads (default: all cores)."),
    click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."),
]


def space_options(fn):
    for opt in reversed(SPACE_OPTIONS):
        fn = opt(fn)
    return fn


def _space(kwargs):
    from rfsweep.space import DEFAULTS, build_space, load_space_file

    settings = load_space_file(kwargs["space_file"]) if kwargs.get("space_file") else {}
    for name in DEFAULTS:  # every setting has a flag of the same name, but positions (TOML only)
        if kwargs.get(name) is not None:
            settings[name] = kwargs[name]
    return build_space(settings)


def _human(n: float) -> str:
    return f"{n:,.0f}" if n < 1e6 else f"{n:.3g}"


@click.command()
@space_options
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Parquet file for the survivors.")
@click.option("--limit", type=int, help="Keep only the best N (with --sort) or the first N.")
@click.option(
    "--sort",
    type=click.Choice(["params", "macs", "rf_error", "erf"]),
    help="Order for --limit: fewest params/MACs, closest rf, or largest ERF first.",
)
@click.option(
    "--columns",
    type=click.Choice(["full", "compact"]),
    default="full",
    show_default=True,
    help="compact leaves out the per-layer list columns (arch_id + `rfsweep show` decode them); "
    "the R7 search writes ~3x faster.",
)
@friendly
def search(output, limit, sort, columns, device, threads, as_json, **kwargs):
    """Enumerate candidate stacks and keep those meeting the constraints.

    Survivors stream to a Parquet file (-o), written under a temporary name and renamed when
    complete; without -o the best 20 by params are printed. A summary goes to stderr (or to stdout
    as JSON with --json).

    \b
    Examples:
      rfsweep search --target-rf 224 -o candidates.parquet
      rfsweep search --target-rf 224 --min-convs 5 --sort params --limit 1000 -o best.parquet
      rfsweep search --depth 7 --ops conv --kernels 1,3,5,7 --strides 1,2 --dilations 1,2,3 \\
          --channels 32 --rf-min 223 --rf-max 225 -o r7.parquet
      rfsweep search --target-rf 224 --tolerance 4 --max-params 2e6 --jump 32 --limit 100 --sort params
    """
    from rfsweep import sweep
    from rfsweep.engine import Stats

    space = _space(kwargs)
    stats = Stats()
    progress = _progress_bar() if sys.stderr.isatty() and not as_json else None
    if output is None:
        limit = 20 if limit is None else limit
        sort = sort or "params"
        df = sweep.search(space, limit=limit, sort=sort, device=device, threads=threads, stats=stats)
        written = len(df)
        if written and not as_json:
            cols = [
                "arch_id",
                "depth",
                "op",
                "kernel",
                "stride",
                "dilation",
                "channels",
                "rf",
                "jump",
                "out_size",
                "params",
                "macs",
                "erf_sigma",
            ]
            click.echo(df[cols].to_string(index=False))
    else:
        sweep.search_to_parquet(
            output,
            space,
            limit=limit,
            sort=sort,
            device=device,
            threads=threads,
            stats=stats,
            progress=progress,
            columns=columns,
        )
        written = stats.extra["written"]
    if progress is not None:
        click.echo("", err=True)
    summary = {
        "space_size": stats.space_size,
        "evaluated": stats.evaluated,
        "pruned": stats.pruned,
        "kept": stats.kept,
        "written": written,
        "seconds": round(stats.seconds, 4),
        "rate": round(stats.rate),
        "device": stats.device,
        "output": output,
    }
    if stats.kept == 0:
        below, above = sweep.nearest_rfs(space)
        summary["nearest_rf_below"], summary["nearest_rf_above"] = below, above
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"space {_human(stats.space_size)} candidates, evaluated {_human(stats.evaluated)}, "
            f"pruned {_human(stats.pruned)}, kept {stats.kept:,}, written {written:,} in "
            f"{stats.seconds:.2f} s ({_human(stats.rate)} candidates/s, {stats.device})"
            + (f" -> {output}" if output else ""),
            err=True,
        )
        if stats.kept == 0:
            click.echo(_nothing(space, summary), err=True)


def _nothing(space, summary) -> str:
    window = f"{space.rf_min}" if space.rf_max == space.rf_min else f"[{space.rf_min}, {space.rf_max or 'inf'}]"
    below, above = summary["nearest_rf_below"], summary["nearest_rf_above"]
    text = f"no candidate matches rf {window}"
    if below or above:
        text += (
            "; nearest reachable RFs in this space (jump and out-size constraints kept; budgets, --min-convs, "
            "--anchors and --no-unproductive ignored): "
            f"below {', '.join(map(str, below)) or 'none'}, above {', '.join(map(str, above)) or 'none'}"
        )
    if space.rf_min % 2 == 0 and all(c.kernel % 2 == 1 for p in space.positions for c in p):
        text += "; with odd kernels every rf is odd: add --tolerance or an even (pool) kernel"
    return text


def _progress_bar():
    def show(done, total, kept):
        width = 30
        filled = int(width * done / max(total, 1))
        click.echo(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} prefixes, {kept:,} kept", err=True, nl=False
        )

    return show


@click.command()
@space_options
@click.option(
    "--method",
    type=click.Choice(["auto", "dp", "enumerate"]),
    default="auto",
    show_default=True,
    help="dp counts without enumerating (rf, jump, out-size constraints); enumerate walks the pruned tree.",
)
@friendly
def count(method, device, threads, as_json, **kwargs):
    """Exact number of candidates meeting the constraints, without writing them.

    rf / jump / out-size constraints are counted by dynamic programming, so spaces of 10^15
    candidates answer in well under a second; budgets (--max-params, --max-macs) and
    --no-unproductive are counted by the pruned enumeration.

    \b
    Examples:
      rfsweep count --depth 7 --ops conv --kernels 1,3,5,7 --strides 1,2 --dilations 1,2,3 --rf-min 200 --rf-max 250
      rfsweep count --depth 12 --target-rf 224 --json
    """
    from rfsweep import sweep

    space = _space(kwargs)
    res = sweep.count_details(space, device=device, threads=threads, method=method)
    if as_json:
        click.echo(json.dumps(res.as_dict()))
    else:
        click.echo(res.count)
        click.echo(
            f"{res.count:,} of {res.space_size:,} candidates ({res.method}, {res.seconds:.3f} s, {res.device})",
            err=True,
        )


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("arch_id", type=int)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "spec"]),
    default="table",
    show_default=True,
    help="spec prints the candidate as a network spec for `rfsweep analyze`.",
)
@friendly
def show(file, arch_id, fmt):
    """Print one candidate of a search output as an analyze table.

    \b
    Example:
      rfsweep show candidates.parquet 123456
    """
    from rfsweep import report, sink
    from rfsweep.analyze import evaluate
    from rfsweep.space import build_space
    from rfsweep.spec import parse_network

    spec = sink.read_spec(file)
    space = build_space(spec["space"])
    try:
        idx = space.decode(arch_id)
    except RFSweepError:
        raise field_error("arch_id", arch_id, f"not in this file's space (0..{space.size - 1})") from None
    net_spec = space.network_spec(idx, name=f"arch {arch_id}")
    if fmt == "spec":
        click.echo(json.dumps(net_spec, indent=1))
        return
    net = parse_network(net_spec)
    results = evaluate(net)
    if fmt == "json":
        click.echo(json.dumps(report.to_json(results), indent=1))
    else:
        click.echo(report.to_table(net, results))
