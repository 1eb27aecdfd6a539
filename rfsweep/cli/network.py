"""`rfsweep analyze`, `rfsweep zoo` and `rfsweep import`: one network, through rfsweep.network."""

from __future__ import annotations

import json

import click

from rfsweep.cli.base import Text, friendly


@click.command()
@click.argument("model")
@click.option("--input-size", type=Text("N|HxW"), help="Input size N or HxW (overrides the spec's).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option(
    "--plot",
    "plot_path",
    help="Draw RF and ERF (2 sigma) growth to this file (.png, .pdf or .svg).",
)
@friendly
def analyze(model, input_size, fmt, plot_path):
    """Per-layer RF, jump, offsets, out size, params, MACs and ERF sigma of MODEL.

    MODEL is a built-in model (see `rfsweep zoo`), a JSON/TOML spec file or an ONNX model (.onnx,
    pip install 'rfsweep[onnx]').

    \b
    Examples:
      rfsweep analyze resnet_v1_50
      rfsweep analyze mynet.toml --input-size 320x480 --format json
      rfsweep analyze resnet50.onnx
    """
    from rfsweep.network import report
    from rfsweep.network.analyze import evaluate
    from rfsweep.network.spec import parse_input_size
    from rfsweep.network.zoo import resolve

    plot_out = report.check_plot(plot_path, inputs=(model,)) if plot_path is not None else None
    net = resolve(model, parse_input_size(input_size))
    results = evaluate(net)
    if fmt == "json":
        click.echo(json.dumps(report.to_json(results), indent=1))
    elif fmt == "csv":
        click.echo(report.to_csv(results), nl=False)
    else:
        click.echo(report.to_table(net, results))
    if plot_out is not None:
        report.plot(net, results, plot_out)
        click.echo(f"plot written to {plot_path}", err=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@friendly
def zoo(as_json):
    """List the built-in models (TF-Slim and torchvision), with their final RF at the default input size."""
    from rfsweep.core.numbers import fmt_number
    from rfsweep.network.analyze import evaluate
    from rfsweep.network.zoo import list_models, resolve

    rows = []
    for name in list_models():
        net = resolve(name)
        results = evaluate(net)
        target = net.feature_layer or results[-1].layer.name
        res = next(r for r in results if r.layer.name == target)
        rows.append(
            {
                "model": name,
                "input_size": list(net.input_size or []),
                "feature_layer": target,
                "rf": [fmt_number(a.rf) for a in res.axes],
                "jump": [fmt_number(a.jump) for a in res.axes],
                "params": sum(r.params for r in results),
                "source": net.source,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'model':<18} {'input':>7} {'rf':>6} {'jump':>5} {'params':>13}  feature layer")
    for r in rows:
        size = "x".join(map(str, r["input_size"])) if r["input_size"] else "-"
        rf = r["rf"][0] if r["rf"][0] == r["rf"][1] else "x".join(r["rf"])
        jump = r["jump"][0] if r["jump"][0] == r["jump"][1] else "x".join(r["jump"])
        click.echo(f"{r['model']:<18} {size:>7} {rf:>6} {jump:>5} {r['params']:>13,}  {r['feature_layer']}")


@click.command("import")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the spec to this .json or .toml file (atomically); default: JSON on stdout.",
)
@click.option(
    "--input-size", type=Text("N|HxW"), help="Re-run ONNX shape inference at N or HxW instead of the model's own size."
)
@friendly
def import_model(model, output, input_size):
    """Translate an ONNX model into a network spec you can read, edit and analyze.

    Every layer keeps its ONNX node's name (or its PyTorch module's, where the exporter recorded it); an op
    whose geometry rfsweep does not know is refused with one line naming the node.

    \b
    Examples:
      rfsweep import resnet50.onnx -o resnet50.toml
      rfsweep import detector.onnx --input-size 640 -o detector.json
    """
    from rfsweep.network.importers import from_onnx
    from rfsweep.network.spec_io import to_json, write_spec

    spec = from_onnx(model, input_size=input_size)
    if output is None:
        click.echo(to_json(spec), nl=False)
        return
    write_spec(spec, output, protect=model)
    size = spec["input"]["size"]
    size = f"{size}x{size}" if isinstance(size, int) else "x".join(map(str, size))
    click.echo(f"{len(spec['layers'])} layers at input {size} from {model} -> {output}", err=True)
