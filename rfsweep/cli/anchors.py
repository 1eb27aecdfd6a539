"""`rfsweep anchors`: detector levels against stride, rf and exact ERF, through rfsweep.anchors."""

from __future__ import annotations

import json

import click

from rfsweep.cli.base import friendly


@click.command()
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
