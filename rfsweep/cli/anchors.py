"""`rfsweep anchors`: detector levels against stride, rf and exact ERF, through rfsweep.anchors."""

from __future__ import annotations

import json

import click

from rfsweep.cli.base import Text, friendly


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
@click.option(
    "--ratios", type=Text("FLOAT,..."), help="Aspect ratios w/h, e.g. 0.5,1,2 (default: 1 for s3fd, 0.5,1,2 otherwise)."
)
@click.option(
    "--center-offset",
    type=click.Choice(["0", "0.5"]),
    default="0",
    show_default=True,
    help="Anchor centres at (i + offset)*stride, as mmdetection's center_offset.",
)
@click.option("--input-size", type=Text("N|HxW"), help="Input size N or HxW (overrides the spec's).")
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


def _hw(text: str | None):
    if text is None:
        return None
    from rfsweep.network.spec import parse_input_size

    h, w = parse_input_size(text)
    return int(h), int(w)


SHOWN = ("config", "recall_iou50", "recall_iou70", "best_iou_mean", "positives_per_gt", "anchors_per_image")


@click.command("anchor-search")
@click.option(
    "--boxes", "boxes", required=True, type=click.Path(), help="COCO JSON, VOC or YOLO directory, CSV/Parquet."
)
@click.option(
    "--boxes-format", type=click.Choice(["coco", "voc", "yolo", "csv", "parquet"]), help="Default: from the path."
)
@click.option("--voc-difficult", type=click.Choice(["include", "skip"]), default="include", show_default=True)
@click.option(
    "--image-size", type=Text("N|HxW"), help="YOLO labels without images beside them: every image's size, N or HxW."
)
@click.option(
    "--detector",
    type=click.Choice(["faster_rcnn", "retinanet", "ssd300"]),
    default="faster_rcnn",
    show_default=True,
    help="torchvision's fasterrcnn_resnet50_fpn, retinanet_resnet50_fpn or ssd300_vgg16.",
)
@click.option(
    "--sizes",
    type=Text("INTEGER,..."),
    help="Base sizes to choose one per level from, increasing with the level (grid presets).",
)
@click.option(
    "--scales",
    type=Text("FLOAT,..."),
    help="ssd300: scales to choose the levels' s_k (and the last) from, e.g. 0.05,0.1,...",
)
@click.option(
    "--ratios", type=Text("FLOAT,..."), help="Aspect ratios h/w (torchvision's) to choose from, e.g. 0.25,0.5,1,2,4."
)
@click.option("--ratio-count", type=click.IntRange(min=1), help="Ratios a configuration takes (default: all).")
@click.option("--per-level-ratios", is_flag=True, help="Each level chooses its own ratios (default: shared).")
@click.option(
    "--scales-per-octave",
    type=Text("INTEGER,..."),
    help="RetinaNet-style sizes per level x 2^(k/n), k < n: n to choose from.",
)
@click.option("--min-size", type=click.IntRange(min=1), help="The transform's min_size (800; ssd300: its side).")
@click.option("--max-size", type=click.IntRange(min=1), help="The transform's max_size (1333).")
@click.option("--strides", type=Text("INTEGER,..."), help="Level strides of another backbone, e.g. 8,16,32,64,128.")
@click.option("--fg-iou", type=click.FloatRange(0, 1, min_open=True), help="Foreground IoU (0.7 RPN, 0.5 else).")
@click.option("--model", help="A network (zoo name, spec, ONNX) whose levels limit the anchors, with --taps.")
@click.option("--taps", help="The model's layers, one a level (as rfsweep anchors --taps).")
@click.option(
    "--input-size", "model_input", type=Text("N|HxW"), help="The model's input size N or HxW (default: its spec's)."
)
@click.option("--max-anchor-rf", type=click.FloatRange(0, min_open=True), help="No anchor side above K x its tap's rf.")
@click.option(
    "--max-anchor-erf",
    type=click.FloatRange(0, min_open=True),
    help="No anchor side above K x its tap's ERF 95% extent.",
)
@click.option("--sort", type=click.Choice(["recall_iou50", "recall_iou70", "best_iou_mean", "positives_per_gt",
              "anchors_per_image", "recall_small", "recall_medium", "recall_large"]),
              help="Keep the best --limit by this statistic (anchors_per_image: fewest).")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), help="Keep the best N (with --sort) or the first N.")
@click.option("--pareto", help="Keep the Pareto front by 2+ statistics, e.g. recall_iou70,anchors_per_image.")
@click.option("-o", "--output", help="Write every kept row to this Parquet file (settings in its metadata).")
@click.option(
    "--export", "export_kind", type=click.Choice(["torchvision", "mmdet"]), help="Print the first row's configuration."
)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: all).")
@click.option(
    "--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True,
    help="Where the configurations are scored (cuda: rfsweep[cuda] and an NVIDIA GPU).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary (and rows without -o) as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line.")
@friendly
def anchor_search(
    boxes, boxes_format, voc_difficult, image_size, detector, sizes, scales, ratios, ratio_count, per_level_ratios,
    scales_per_octave, min_size, max_size, strides, fg_iou, model, taps, model_input, max_anchor_rf, max_anchor_erf,
    sort, limit, pareto, output, export_kind, threads, device, as_json, quiet,
):  # fmt: skip
    """Score anchor configurations over a dataset's boxes, matched as torchvision's detectors match them.

    Per configuration, over every box: recall_iou50/70 (share of boxes whose best IoU with an anchor of
    their image reaches 0.5/0.7), best_iou_mean, positives_per_gt (anchors at the foreground IoU),
    anchors_per_image, and recall at the foreground IoU of COCO's small/medium/large boxes. With no space
    option a preset scores its own torchvision configuration.

    \\b
    Examples:
      rfsweep anchor-search --boxes instances_val2017.json --detector faster_rcnn
      rfsweep anchor-search --boxes voc/Annotations --sizes 16,32,64,128,256,512,1024 \\
          --ratios 0.25,0.5,1,2,4 --ratio-count 3 --sort recall_iou70 --limit 10
      rfsweep anchor-search --boxes coco.json --detector retinanet --scales-per-octave 1,2,3,4 \\
          --pareto recall_iou70,anchors_per_image -o front.parquet
    """
    import time

    from rfsweep.anchors import scoring as S
    from rfsweep.core.files import check_output
    from rfsweep.engine import steer

    names = S.check_selection(sort, limit, pareto)
    out = check_output(output, "output", suffixes=(".parquet",), inputs=(boxes,)) if output else None
    t0 = time.perf_counter()
    space, data = S.prepare(
        boxes, detector, min_size=min_size, max_size=max_size, strides=strides, fg_iou=fg_iou,
        boxes_format=boxes_format, voc_difficult=voc_difficult, image_size=_hw(image_size),
        sizes=sizes, scales=scales, ratios=ratios,
        ratio_count=ratio_count, per_level_ratios=per_level_ratios,
        scales_per_octave=scales_per_octave, model=model, taps=taps,
        input_size=model_input, max_anchor_rf=max_anchor_rf, max_anchor_erf=max_anchor_erf,
    )  # fmt: skip
    p = space.preset
    read_s = time.perf_counter() - t0
    head = (
        f"{p.name} ({p.model}): space {_plural(space.size, 'configuration')} over {len(data):,} boxes in "
        f"{data.images:,} images (read in {read_s:.2f} s; {data.skipped:,} crowd, empty or difficult skipped)"
    )
    if not as_json:
        click.echo(head, err=True)
    bar = steer.Progress(enabled=None if not (quiet or as_json) else False)
    t1 = time.perf_counter()

    def progress(done, total):
        bar.update(lambda now: f"anchor-search {100 * done / total:5.1f}% | {done:,} of {total:,} configurations | "
                   f"{steer.eta(now, done / total)}")  # fmt: skip

    S.scorer(device)  # a GPU asked for and not there: one line before any work
    chunks = S.select(
        space, data, sort=sort, limit=limit, pareto=names, threads=threads, progress=progress, device=device
    )
    selection = {"sort": sort, "limit": limit, "pareto": list(names) if names else None}
    try:
        if out is not None:
            written = S.write_parquet(out, space, data, chunks, selection)
            rows = None
        else:
            kept = [c for c in chunks]
            rows = S.to_records(space, S.Scored.concat(kept)) if kept else []
            written = len(rows)
    finally:
        bar.done()
    seconds = time.perf_counter() - t1
    summary = {
        "detector": p.name,
        "space": space.size,
        "boxes": len(data),
        "images": data.images,
        "written": written,
        "seconds": round(seconds, 3),
        "configurations_per_s": space.size / seconds if seconds > 0 else None,
        "output": output,
    }
    if as_json:
        click.echo(json.dumps({**summary, **({"rows": rows} if rows is not None else {})}))
    else:
        click.echo(
            f"scored {_plural(space.size, 'configuration')} x {len(data):,} boxes in {seconds:.2f} s "
            f"({space.size / max(seconds, 1e-9):.3g} configurations/s), kept {written:,}"
            + (f" -> {output}" if output else ""),
            err=True,
        )
        if rows:
            _print_rows(space, rows[:20] if sort is None and names is None else rows)
    if export_kind is not None:
        first = rows[0] if rows else _first_row(output)
        click.echo(first[export_kind])  # one line: AnchorGenerator(**json.loads(line)), or the mmdet dict


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _first_row(path: str) -> dict:
    import pyarrow.parquet as pq

    return pq.read_table(path).slice(0, 1).to_pylist()[0]


def _print_rows(space, rows: list[dict]) -> None:
    value = "size" if space.preset.kind == "grid" else "scale"
    values = [k for k in rows[0] if k.startswith(value + "_")]
    cols = [
        "config",
        *values,
        "ratios",
        "scales_per_octave",
        *SHOWN[1:],
        "recall_small",
        "recall_medium",
        "recall_large",
    ]
    if space.preset.kind != "grid":
        cols.remove("scales_per_octave")

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    table = [[fmt(r[c]) for c in cols] for r in rows]
    width = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.rjust(w) for c, w in zip(cols, width)))
    for t in table:
        click.echo("  ".join(v.rjust(w) for v, w in zip(t, width)))
