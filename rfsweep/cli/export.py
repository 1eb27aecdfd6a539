"""`rfsweep export`: a thin wrapper over rfsweep.nas.export and rfsweep.output.select."""

from __future__ import annotations

import click

from rfsweep.cli.base import friendly, shown


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--to",
    "to",
    type=click.Choice(["pytorch", "jsonl"]),
    default="pytorch",
    show_default=True,
    help="pytorch: Python source with one builder a candidate and MODELS[arch_id]; jsonl: one network "
    "spec a line (what `rfsweep analyze` reads; name = the arch_id as a string).",
)
@click.option(
    "-o",
    "--output",
    help="Output file, written under a temporary name and renamed when complete (never the input). "
    "Without -o, or with '-o -', the output goes to stdout.",
)
@click.option("--where", help="Keep rows meeting a filter over the file's columns, e.g. 'params < 2e6 and depth >= 5'.")
@click.option("--ids", help="Keep these arch_ids, e.g. 12,40,408793350 (each must be a row of the file).")
@click.option("--top", type=int, help=shown("Keep the best N rows by --sort (after --where and --ids).", bounds="x>=1"))
@click.option(
    "--sort",
    type=click.Choice(["params", "macs", "rf_error", "erf", "peak_act", "latency_ms"]),
    help="Order for --top, as in `rfsweep search`: fewest params/MACs, rf closest to the target, largest "
    "ERF, least peak activation memory, least predicted latency (a search with --latency-lut); ties by "
    "arch_id.  [default: params]",
)
@click.option(
    "--act",
    type=click.Choice(["relu", "relu6", "silu", "none"]),
    help="Activation after every conv (no parameters); chain spaces only.  [default: relu]",
)
@click.option(
    "--norm",
    type=click.Choice(["bn", "none"]),
    help="bn: BatchNorm2d between every conv and its activation, +2·C parameters for C channels; chain "
    "spaces only.  [default: none]",
)
@click.option(
    "--num-classes",
    type=int,
    help=shown(
        "Add a head: global average pool, flatten, Linear(C, K): +C·K+K parameters; chain spaces only.", bounds="x>=1"
    ),
)
@friendly
def export(file, to, output, where, ids, top, sort, act, norm, num_classes):
    """Export search candidates as runnable PyTorch models or network specs.

    FILE is a `rfsweep search` output (full or --columns compact). Selection: --where, then --ids,
    then --top N by --sort; without any, every row. With the defaults (--act relu --norm none, no
    head) each model's parameter count is the row's params, and at the search's input size its last
    feature map is out_size on each side ('tf_same' padding is resolved at that size). A summary
    goes to stderr.

    A search over a space of stages (--space ofa_mbv3, ...) exports each candidate as its space
    defines it, one module a block (MBConv, Bottleneck, ...), head included: the parameters are the
    row's params, and model.features(x) is the map before the head's global pool (out_size on each
    side). --act and --norm apply to chain spaces only; --num-classes K gives a space of stages' head K
    logits (its last linear layer, or a global pool and a linear layer added). The models come with their
    rows' metrics (METRICS in the source, "metrics" in each JSONL line).

    \b
    Examples:
      rfsweep export candidates.parquet --to pytorch -o models.py
      rfsweep export candidates.parquet --top 50 --sort params --where 'depth >= 5' -o models.py
      rfsweep export candidates.parquet --ids 12,40 --norm bn --num-classes 10 -o models.py
      rfsweep export candidates.parquet --to jsonl --where 'params < 2e6' > specs.jsonl
    """
    import pyarrow.parquet as pq

    from rfsweep.core.errors import field_error
    from rfsweep.nas.export import export as run
    from rfsweep.output.select import Selection, parse_ids, parse_where
    from rfsweep.output.sink import read_spec

    read_spec(file)  # a readable rfsweep output, or one line saying why
    parsed = parse_where(where, pq.read_schema(file)) if where is not None else None
    if num_classes is not None and num_classes < 1:
        raise field_error("num-classes", num_classes, "must be an integer >= 1")
    selection = Selection(where=parsed, ids=parse_ids(ids) if ids is not None else None, top=top, sort=sort)
    result = run(file, output, to=to, selection=selection, act=act, norm=norm, num_classes=num_classes)
    what = "model" if to == "pytorch" else "spec"
    click.echo(
        f"exported {result.written:,} {what}{'' if result.written == 1 else 's'} of {result.scanned:,} rows"
        + (f" -> {result.output}" if result.output else ""),
        err=True,
    )
