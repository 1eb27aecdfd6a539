"""`rfsweep search`, `rfsweep count` and `rfsweep show`: thin wrappers over rfsweep.api and rfsweep.engine.count.

The space options are generated from :data:`rfsweep.space.settings.SETTINGS` (names, help and defaults
written once). Values reach the settings parser as text, so every bad value gets the same one-line
error naming the setting.
"""

from __future__ import annotations

import json

import click

from rfsweep.cli.base import Text, friendly, shown
from rfsweep.core.errors import RFSweepError, field_error
from rfsweep.space.settings import SETTINGS

# Measured end to end on 2 cores (benchmarks/README.md): what a "this will take a while" note assumes.
# measured on R7 [200, 250] (145.6M rows, 2 cores, benchmarks/README.md): rows/s end to end, file bytes a row
WRITE_RATE = {"wide": 1.1e7, "lists": 1.3e6, "compact": 1.4e7}
ROW_BYTES = {"wide": 1.7, "lists": 6.3, "compact": 1.6}
NOTE_ROWS = 5_000_000  # say what is coming when a search writes more rows than this
ENUMERATE_RATE = 3e8  # candidates/s of the pruned enumeration (R7 count)
NOTE_CANDIDATES = 10**9  # announce an enumeration over more candidates than this


def _setting_option(s):
    help_text = shown(s.help, s.default_text(), s.bounds)
    if s.kind == "bool":
        return click.option(f"{s.flag}/--no-{s.flag[2:]}", s.name, default=None, help=help_text)
    if s.kind == "switch":
        return click.option(s.flag, s.name, is_flag=True, default=None, help=help_text)
    if s.choices:
        return click.option(s.flag, s.name, type=click.Choice(s.choices), help=help_text)
    return click.option(s.flag, s.name, type=Text(s.metavar), help=help_text)


SPACE_OPTIONS = (
    [
        click.option(
            "--space",
            "space_file",
            type=click.Path(dir_okay=False),
            help="TOML file with any of these settings (underscores) and [[positions]] overrides, or a space of "
            "stages; or the name of a shipped space (ofa_mbv3, ...); flags win.",
        )
    ]
    + [_setting_option(s) for s in SETTINGS if s.kind != "toml"]
    + [
        click.option(
            "--device",
            type=click.Choice(["cpu", "cuda", "auto"]),
            default="cpu",
            show_default=True,
            help="Where the kernels run; auto takes the GPU when numba.cuda sees one.",
        ),
        click.option(
            "--threads", type=int, help=shown("CPU threads (default: all cores numba may use).", bounds="x>=1")
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout (no progress)."),
        click.option("-q", "--quiet", is_flag=True, help="No progress line, notes or summary on stderr."),
    ]
)


def cluster_options(for_search: bool):
    """--cluster, --scheduler and --shards; a search's shards write parts of a dataset directory, a count's
    only add up."""
    output = "; the survivors go to a dataset directory, -o DIR" if for_search else "; the shards' counts are added up"
    options = [
        click.option(
            "--cluster",
            metavar="local:N",
            help=f"Shard the run over a Dask LocalCluster of N worker processes here (needs pip install "
            f"'rfsweep[dask]'){output}.",
        ),
        click.option(
            "--scheduler",
            metavar="ADDRESS|FILE",
            help="Shard the run over a running Dask cluster: its scheduler's address (tcp://host:8786) or "
            "scheduler file; the workers need this rfsweep version"
            + (" and the output directory." if for_search else "."),
        ),
        click.option(
            "--shards",
            type=int,
            help=shown(
                "How many shards (contiguous ranges of prefixes) to cut the run into (default: 8 per worker"
                + (", and parts of at most ~8M rows)." if for_search else ")."),
                bounds="x>=1",
            ),
        ),
    ]

    def add(fn):
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return add


def space_options(fn):
    for opt in reversed(SPACE_OPTIONS):
        fn = opt(fn)
    return fn


def _space(kwargs, for_search: bool = True):
    from rfsweep.space import build_space
    from rfsweep.space.settings import DEFAULTS
    from rfsweep.space.stages import load

    settings = load(kwargs["space_file"]) if kwargs.get("space_file") else {}
    if not isinstance(settings, dict):
        raise field_error("space", kwargs["space_file"], "must hold a table of settings")
    for name in DEFAULTS:  # every setting has a flag of the same name, but positions (TOML only)
        if kwargs.get(name) is not None:
            settings[name] = kwargs[name]
    if kwargs.get("measure_missing"):
        _measure_missing(settings, quiet=bool(kwargs.get("quiet")))
    return build_space(settings, for_search=for_search)


def _measure_missing(settings: dict, quiet: bool) -> None:
    """--measure-missing: the latency table gains the space's blocks it lacks, measured here as it was."""
    from rfsweep.engine import steer
    from rfsweep.nas import latency_measure
    from rfsweep.space import build_space

    lut = settings.get("latency_lut")
    if lut is None:
        raise field_error("measure_missing", True, "needs --latency-lut FILE (the table to complete)")
    bare = {k: v for k, v in settings.items() if k not in ("latency_lut", "max_latency_ms")}
    bar = steer.Progress(enabled=False if quiet else None)

    def progress(done, total, elapsed):
        bar.update(lambda now: f"latency {done}/{total} missing blocks | {steer.eta(elapsed, done / total)}")

    try:
        added = latency_measure.complete(build_space(bare, for_search=False), lut, progress=progress)
    finally:
        bar.done()
    if added and not quiet:
        click.echo(f"note: {added} block(s) missing from {lut} measured on this machine and added to it", err=True)


MEASURE_MISSING = click.option(
    "--measure-missing",
    is_flag=True,
    help="With --latency-lut: measure the blocks the table lacks on this machine (its backend, threads, "
    "repeats, cache and clock; torch needed) and add them to it, instead of refusing.",
)


def _human(n: float) -> str:
    return f"{n:,.0f}" if n < 1e6 else f"{n:.3g}"


def _seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    if s < 365 * 86400:
        return f"{s / 86400:.0f} days"
    return f"{s / (365 * 86400):.2g} years"


def _progress(enabled: bool, what: str):
    """A callback drawing engine.Progress snapshots on one stderr line (a terminal only), with an ETA at
    the pace so far."""
    from rfsweep.engine import steer

    bar = steer.Progress(enabled=None if enabled else False)

    def show(p):
        if p.phase == "stages":  # rfsweep.engine.stage_count: no candidate is walked, the fraction is of its tables
            start = bar.elapsed - p.elapsed
            head = f"{what} {100 * p.fraction:5.1f}% | per-stage tables, meet in the middle"
            bar.update(lambda now: f"{head} | {steer.eta(now - start, p.fraction)}")
            return
        head = (
            f"{what} {100 * p.fraction:5.1f}% | {_human(p.covered)} of {_human(p.space_size)} candidates settled, "
            f"{_human(p.evaluated)} evaluated, {p.kept:,} kept" + (f", {p.rows:,} out" if p.rows else "")
        )
        # the run's own clock: p.elapsed at the snapshot, plus the time since
        start = bar.elapsed - p.elapsed
        bar.update(lambda now: f"{head} | {steer.eta(now - start, p.fraction)}")

    show.done = bar.done
    return show if bar.enabled else None


def _estimate_note(space, columns: str) -> str | None:
    """A line on what a search is about to write, when it is a lot (from the exact DP count)."""
    from rfsweep.engine import count as counting

    try:
        rows = counting.window_count(space)
    except RFSweepError:
        return None
    if rows is None or rows < NOTE_ROWS:
        return None
    exact = counting.count_method(space)[0] == "dp"
    size = rows * ROW_BYTES[columns]
    unit = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"
    return (
        f"note: {'' if exact else 'at most '}{rows:,} rows to write (~{unit}, ~{_seconds(rows / WRITE_RATE[columns])} "
        f"at {WRITE_RATE[columns]:.2g} rows/s on 2 cores); Ctrl-C stops cleanly"
    )


@click.command()
@space_options
@MEASURE_MISSING
@click.option(
    "-o",
    "--output",
    help="Parquet file for the survivors (replaced atomically if it exists); a name without extension, a "
    "trailing / or a URL (s3://...) is a dataset directory of parts (see README: datasets).",
)
@cluster_options(for_search=True)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the dataset in -o DIR (same settings): run only the shards whose part is missing or fails "
    "its check (footer, shard, rows, checksum); a note names each part written again and why.",
)
@click.option(
    "--break-lock",
    is_flag=True,
    help="Take over the lock of -o DIR left by a run on another machine (a lock of this machine whose "
    "process is gone is taken over without it).",
)
@click.option("--limit", type=int, help=shown("Keep only the best N (with --sort) or the first N.", bounds="x>=1"))
@click.option(
    "--sort",
    type=click.Choice(["params", "macs", "rf_error", "erf", "peak_act", "latency_ms"]),
    help="Order for --limit: fewest params/MACs, closest rf, largest ERF, least peak activation memory or least "
    "predicted latency (--latency-lut) first.",
)
@click.option(
    "--pareto",
    help="Keep only the Pareto front by two or three of params,macs,rf_error,erf,depth,peak_act,latency_ms (fewest, "
    "closest, largest ERF), e.g. params,macs; streamed, bounded memory.",
)
@click.option(
    "--sample", type=int, help=shown("Write N survivors drawn uniformly at random, without replacement.", bounds="x>=1")
)
@click.option("--seed", type=int, help=shown("Seed of --sample (default: fresh entropy each run).", bounds="0<=x<2^63"))
@click.option("--where", help='Keep survivors passing a filter, e.g. "params < 2e6 and depth >= 5".')
@click.option(
    "--columns",
    type=click.Choice(["wide", "lists", "compact"]),
    help="Layout of the per-layer values: wide (a chain's default), one column per position (op_0, kernel_0, "
    "...); lists, list columns (op, kernel, ...), ~3x slower to write, and a space of "
    "stages' default (depths per stage, then per block); compact, none (arch_id and `rfsweep show` decode them).",
)
@friendly
def search(
    output,
    limit,
    sort,
    pareto,
    sample,
    seed,
    where,
    columns,
    device,
    threads,
    as_json,
    quiet,
    cluster,
    scheduler,
    shards,
    resume,
    break_lock,
    **kwargs,
):
    """Enumerate candidate stacks and keep those meeting the constraints.

    Survivors stream to a Parquet file (-o), written under a temporary name and renamed when
    complete; without -o the rows -o would write come to stdout as a table (the first 20 unless
    --limit says otherwise). A summary goes to stderr (or to stdout as JSON with --json), with
    progress and an ETA on a terminal. Candidates have at least one conv unless --min-convs 0.

    \b
    Examples:
      rfsweep search --target-rf 224 --min-convs 5 --sort params --limit 10   # the 10 smallest, printed
      rfsweep search --target-rf 224 --min-convs 5 --sort params --limit 1000 -o best.parquet
      rfsweep search --target-rf 224 -o candidates.parquet   # every stack with rf 224 at input 224
      rfsweep search --depth 7 --ops conv --kernels 1,3,5,7 --strides 1,2 --dilations 1,2,3 \\
          --channels 32 --rf-min 223 --rf-max 225 -o r7.parquet
      rfsweep search --target-rf 224 --tolerance 4 --max-params 2e6 --jump 32 --limit 100 --sort params
      rfsweep search --depth 8 --target-rf 224 --cluster local:4 -o r8/   # a dataset: r8/part-*.parquet

    \b
    Summary: of the space's candidates, 'evaluated' were walked, 'pruned' sat in subtrees a bound cut
    (never evaluated), 'not walked' were never reached (a --limit stopped the run); 'kept' are the
    survivors among the evaluated, 'written' the rows output. With --limit and --sort the walk also
    prunes what cannot enter the best N, and 'matching' gives the exact number of survivors where the
    counting programme can tell.
    """
    from rfsweep import api as sweep
    from rfsweep.engine import count as counting
    from rfsweep.engine import objectives
    from rfsweep.engine import run as engine

    if pareto is not None:
        pareto = objectives.parse_objectives(pareto)
    if output is None and pareto is None and sample is None and limit is None:
        limit = 20  # the first 20 rows that -o would write for the same flags, in the same order
    sweep.check_selection(limit, sort, pareto, sample, where, seed)
    selection = dict(limit=limit, sort=sort, pareto=pareto, sample=sample, seed=seed, where=where)
    if device == "cuda":
        from rfsweep.engine import device as gpu

        gpu.backend(device)  # refuse a missing GPU before anything else is said (a compile note included)
    space = _space({**kwargs, "quiet": quiet or as_json})
    from rfsweep.output import sink

    columns = sink.layout_name(columns, space)
    if where is not None:
        from rfsweep.engine.where import parse_where

        parse_where(where, sink.schema(space, layout="compact"))  # a bad filter fails before the walk
    stats = engine.Stats()
    talk = not (as_json or quiet)
    dataset_out = _dataset_output(output, cluster, scheduler, shards, resume, break_lock)
    if output is not None:
        from rfsweep.core.files import check_output

        if not dataset_out:
            check_output(output, "output", suffixes=(".parquet",), inputs=(kwargs.get("space_file"),))
        note = _estimate_note(space, columns) if talk and limit is None and pareto is None and not sample else None
        if note:
            click.echo(note, err=True)
    progress = _progress(talk, "search")
    try:
        if output is None:
            df = sweep.search(
                space, device=device, threads=threads, stats=stats, progress=progress, columns="lists", **selection
            )
            written = len(df)
        else:
            sweep.search_to_parquet(
                output,
                space,
                device=device,
                threads=threads,
                stats=stats,
                progress=progress,
                columns=columns,
                inputs=(kwargs.get("space_file"),),
                **(
                    dict(cluster=cluster, scheduler=scheduler, shards=shards, resume=resume, break_lock=break_lock)
                    if dataset_out
                    else {}
                ),
                **selection,
            )
            written = stats.extra["written"]
    finally:
        if progress is not None:
            progress.done()
    if output is None and written and not as_json:
        if space.has_blocks:
            cols = ["arch_id", "depths", "kernel", "expand", "channels", "rf", "jump", "out_size"]
        else:
            cols = ["arch_id", "depth", "op", "kernel", "stride", "dilation", "channels", "rf", "jump", "out_size"]
        metrics = ["params", "macs", "erf_sigma"]
        if space.max_peak_act is not None or sort == "peak_act" or "peak_act" in str(pareto or ""):
            metrics.append("peak_act")
        if "latency_ms" in df:
            metrics.append("latency_ms")
        click.echo(df[cols + metrics].to_string(index=False))
    summary = {
        "space_size": stats.space_size,
        "evaluated": stats.evaluated,
        "pruned": stats.pruned,
        "not_walked": stats.not_walked,
        "kept": stats.kept,
        "written": written,
        "seconds": round(stats.seconds, 4),
        "rate": round(stats.rate),
        "device": stats.device,
        "output": output,
    }
    if dataset_out:
        summary.update({k: stats.extra[k] for k in ("parts", "cluster", "workers", "shards_run", "shards_reused")})
    # (a latency budget is never counted by the programme: count_method refuses what the split method cannot count)
    selected = sort is not None or pareto is not None or where is not None
    if selected and space.max_latency is None and counting.count_method(space)[0] == "dp":
        summary["matching"] = counting.window_count(space)
    if sample is not None:
        summary["sampled_from"] = stats.extra.get("sampled_from", stats.kept)
    if stats.kept == 0:
        summary.update(_nothing(space))
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        walked = f", not walked {_human(stats.not_walked)} (stopped at --limit)" if stats.not_walked else ""
        matching = f" of {summary['matching']:,} matching" if "matching" in summary else ""
        if sample is not None:
            matching = f" (a uniform sample of {summary['sampled_from']:,})"
        click.echo(
            f"space {_human(stats.space_size)} candidates, evaluated {_human(stats.evaluated)}, "
            f"pruned {_human(stats.pruned)}{walked}, kept {stats.kept:,}, written {written:,}{matching} in "
            f"{stats.seconds:.2f} s ({_human(stats.rate)} candidates/s, {stats.device})"
            + (f" -> {output}" if output else "")
            + (_dataset_note(stats) if dataset_out else ""),
            err=True,
        )
        if stats.kept == 0:
            click.echo(summary["why"], err=True)


def _dataset_output(output, cluster, scheduler, shards, resume, break_lock=False) -> bool:
    """Whether -o names a dataset directory; the cluster flags need one."""
    from rfsweep.core.files import is_dataset

    if output is not None and is_dataset(output):
        return True
    flags = (("cluster", cluster), ("scheduler", scheduler), ("shards", shards), ("resume", resume))
    for flag, value in (*flags, ("break_lock", break_lock)):
        if value:
            raise field_error(
                flag,
                value,
                "writes a dataset directory: give -o DIR (no extension, or a trailing /)"
                + (f", not {output}" if output is not None else ""),
            )
    return False


def _dataset_note(stats) -> str:
    ex = stats.extra
    reused = f", {ex['shards_reused']} reused" if ex.get("shards_reused") else ""
    where = "" if ex["cluster"] == "this process" else f", {ex['cluster']} with {ex['workers']} workers"
    return f" ({ex['parts']} part{'s' if ex['parts'] != 1 else ''}{reused}{where})"


def _nothing(space) -> dict:
    """Why nothing survived: the window is unreachable (nearest reachable RFs), or other constraints
    removed every candidate the window has."""
    from rfsweep.engine import count as counting

    window = f"{space.rf_min}" if space.rf_max == space.rf_min else f"[{space.rf_min}, {space.rf_max or 'inf'}]"
    in_window = counting.window_count(space)
    out = {"in_rf_window": in_window}
    if in_window:
        others = counting.prefix_flags(space)
        out["why"] = (
            f"no candidate matches: {in_window:,} candidates have rf {window} (with the jump, out-size and "
            f"min-convs constraints), but {', '.join(others) or 'the other constraints'} removed every one"
        )
        return out
    below, above = counting.nearest_rfs(space)
    out["nearest_rf_below"], out["nearest_rf_above"] = below, above
    text = f"no candidate matches rf {window}"
    if below or above:
        text += (
            "; nearest reachable RFs in this space (jump, out-size and min-convs constraints kept; budgets, "
            "--anchors and --no-unproductive ignored): "
            f"below {', '.join(map(str, below)) or 'none'}, above {', '.join(map(str, above)) or 'none'}"
        )
    if space.rf_min % 2 == 0 and all(c.kernel % 2 == 1 for p in space.positions for c in p):
        text += "; with odd kernels every rf is odd: add --tolerance or an even (pool) kernel"
    out["why"] = text
    return out


@click.command()
@space_options
@MEASURE_MISSING
@click.option(
    "--method",
    type=click.Choice(["auto", "dp", "stages", "enumerate"]),
    default="auto",
    show_default=True,
    help="dp counts without enumerating (rf, jump, out-size, min-convs constraints and a head); stages counts "
    "a space of stages under one budget exactly (per-stage tables, meet in the middle); enumerate walks the "
    "pruned tree (needed for --max-params, --max-macs, --no-unproductive and --anchors on chains).",
)
@cluster_options(for_search=False)
@friendly
def count(method, device, threads, as_json, quiet, cluster, scheduler, shards, **kwargs):
    """Exact number of candidates meeting the constraints, without writing them.

    rf, jump, out-size and min-convs constraints (and a head) are counted by dynamic programming
    over (jump, rf, convs) states, so spaces of 10^15 candidates and more answer in milliseconds,
    exactly (integers of any size). --max-params, --max-macs, --no-unproductive and --anchors need
    the whole prefix: they force the pruned enumeration (said on stderr, with progress on a
    terminal). The method used and why are printed on stderr (and in --json).

    \b
    Examples:
      rfsweep count --depth 7 --ops conv --kernels 1,3,5,7 --strides 1,2 --dilations 1,2,3 --rf-min 200 --rf-max 250
      rfsweep count --depth 12 --target-rf 224 --json
      rfsweep count --depth 9 --target-rf 224 --max-params 2e6 --method enumerate --cluster local:4
    """
    from rfsweep.engine import count as counting

    if device != "cpu":
        from rfsweep.engine import device as gpu

        gpu.backend(device)  # refuse a missing GPU before anything else is said (a compile note included)
    space = _space({**kwargs, "quiet": quiet or as_json}, for_search=False)
    talk = not (as_json or quiet)
    chosen, why = counting.count_method(space)
    if talk and method == "auto" and chosen == "enumerate" and space.size >= NOTE_CANDIDATES:
        click.echo(
            f"note: counting by the pruned enumeration ({why}): it walks at most {_human(space.size)} candidates, "
            f"up to ~{_seconds(space.size / ENUMERATE_RATE)} at {ENUMERATE_RATE:.1g}/s on 2 cores (pruning "
            "usually skips most); progress below, Ctrl-C stops it",
            err=True,
        )
    progress = _progress(talk, "count")
    try:
        if cluster is not None or scheduler is not None or shards is not None:
            from rfsweep.distributed import cluster as sharded

            res = sharded.count_details(
                space,
                cluster=cluster,
                scheduler=scheduler,
                shards=shards,
                method=method,
                device=device,
                threads=threads,
                progress=progress,
            )
        else:
            res = counting.count_details(space, device=device, threads=threads, method=method, progress=progress)
    finally:
        if progress is not None:
            progress.done()
    if as_json:
        click.echo(json.dumps(res.as_dict()))
    else:
        click.echo(res.count)
        if not quiet:
            click.echo(
                f"{res.count:,} of {res.space_size:,} candidates ({res.method}: {res.reason}; "
                f"{res.seconds:.3f} s, {res.device})",
                err=True,
            )


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("arch_id")
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
    from rfsweep.network import report
    from rfsweep.network.analyze import evaluate
    from rfsweep.network.spec import parse_network
    from rfsweep.output import sink
    from rfsweep.space import build_space
    from rfsweep.space.ids import ID_LIMIT
    from rfsweep.space.settings import parse_int

    arch_id = parse_int("arch_id", arch_id, 0, ID_LIMIT - 1)
    spec = sink.read_spec(file)
    try:
        space = build_space(spec["space"])
    except RFSweepError as exc:
        raise field_error("file", file, f"its rfsweep.spec metadata does not build a space ({exc})") from None
    found, lo, hi, rows = sink.arch_ids_summary(file, arch_id)
    if not found:
        where = f"its {rows:,} rows have arch_ids from {lo} to {hi}" if rows else "it has no rows"
        gaps = "; with a head (positions index -1) not every id in between names a candidate" if space.has_head else ""
        raise field_error("arch_id", arch_id, f"is not a row of {file}: {where}{gaps}")
    net_spec = space.network_spec(space.decode(arch_id), name=f"arch {arch_id}")
    if fmt == "spec":
        click.echo(json.dumps(net_spec, indent=1))
        return
    net = parse_network(net_spec)
    results = evaluate(net)
    if fmt == "json":
        click.echo(json.dumps(report.to_json(results), indent=1))
    else:
        click.echo(report.to_table(net, results))
