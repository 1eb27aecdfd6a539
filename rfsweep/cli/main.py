"""The `rfsweep` command: a thin layer over the Python API. Results go to stdout, diagnostics to stderr.

Bad input exits with code 2 and one line ``error: ...`` naming the field and the value; no traceback.
"""

from __future__ import annotations

import json
import sys

import click

from rfsweep.cli import export as cli_export
from rfsweep.cli import sweep as cli_sweep
from rfsweep.cli.base import OneLineErrors, diagnostics_to_stderr, friendly


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


@main.command()
@click.argument("model")
@click.option("--input-size", help="Input size N or HxW (overrides the spec's).")
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


@main.command()
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


@main.command()
@click.argument("model")
@click.option("--taps", required=True, help="Detector levels: layer names L1,L2,... in level order.")
@click.option(
    "--rule",
    type=click.Choice(["s3fd", "fpn", "retinanet", "ssd"]),
    default="fpn",
    show_default=True,
    help="Anchor rule: s3fd 4*stride, fpn 8*stride, retinanet 4*2^(i/3)*stride, ssd linear scales.",
)
@click.option("--ratios", help="Aspect ratios w/h, e.g. 0.5,1,2 (default: 1 for s3fd, 0.5,1,2 otherwise).")
@click.option(
    "--center-offset",
    type=click.Choice(["0", "0.5"]),
    default="0",
    show_default=True,
    help="Anchor centres at (i + offset)*stride, as mmdetection's center_offset.",
)
@click.option("--input-size", help="Input size N or HxW (overrides the spec's).")
@click.option(
    "--boxes",
    type=click.Path(dir_okay=False),
    help="CSV or Parquet with columns w,h (pixels): YOLOv5 BPR/AAT and a k-means proposal.",
)
@click.option(
    "--evolve",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Generations of genetic evolution after k-means (YOLOv5 uses 1000).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of k-means and evolution (>= 0).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--export",
    "export_kind",
    type=click.Choice(["mmdet", "torchvision"]),
    help="Print anchor-generator settings as JSON instead of the report (notes go to stderr).",
)
@click.option(
    "--plot",
    "plot_path",
    help="Draw ERF heat maps with anchors and RF to this file (.png, .pdf or .svg).",
)
@friendly
def anchors(model, taps, rule, ratios, center_offset, input_size, boxes, evolve, seed, fmt, export_kind, plot_path):
    """Anchors per detector level of MODEL against stride, RF and exact ERF.

    MODEL is a built-in model, a JSON/TOML spec file or an ONNX model (.onnx).

    \b
    Examples:
      rfsweep anchors resnet50 --taps layer2.3.relu_2,layer3.5.relu_2,layer4.2.relu_2 --rule fpn
      rfsweep anchors vgg16 --taps features.22,features.29 --rule s3fd --boxes boxes.csv
      rfsweep anchors resnet50 --taps layer3.5.relu_2,layer4.2.relu_2 --rule retinanet --export mmdet
    """
    from rfsweep.anchors import design as anc
    from rfsweep.anchors.export import export
    from rfsweep.network import report

    plot_out = report.check_plot(plot_path, inputs=(model, boxes)) if plot_path is not None else None
    rep = anc.anchor_report(
        model,
        taps,
        rule=rule,
        ratios=ratios,
        input_size=input_size,
        center_offset=float(center_offset),
        boxes=boxes,
        generations=evolve,
        seed=seed,
    )
    if export_kind:
        cfg, notes = export(rep, export_kind)
        click.echo(json.dumps(cfg))
        for note in notes:
            click.echo(f"note: {note}", err=True)
    elif fmt == "json":
        click.echo(json.dumps(anc.to_json(rep), indent=1))
    else:
        click.echo(anc.to_table(rep))
    if plot_out is not None:
        anc.plot(rep, plot_out)
        click.echo(f"plot written to {plot_path}", err=True)


@main.command("import")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the spec to this .json or .toml file (atomically); default: JSON on stdout.",
)
@click.option("--input-size", help="Re-run ONNX shape inference at N or HxW instead of the model's own size.")
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


# The sweep commands live in their own module.
for _command in (cli_sweep.search, cli_sweep.count, cli_sweep.show):
    main.add_command(_command)
main.add_command(cli_export.export)


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
