"""Importing real models: which import, how exact they are, how fast `rfsweep analyze model.onnx` is.

Needs torch, torchvision and onnxscript (timm optional). Three sections (``--only table|gradient|timing``):

1. **table**: every torchvision classifier except the transformers, the backbones of torchvision's
   Faster R-CNN, RetinaNet and SSD, and timm's resnet50, efficientnet_b0, mobilenetv3_large_100,
   convnext_tiny and cspdarknet53 through ``rfsweep.from_torch`` at 224 (inception_v3 299, SSD 300,
   detection 320): imported or refused (and why), layers, parameters against ``sum(p.numel())``, the rf
   and jump of the last spatial layer, seconds (export + import).
2. **gradient**: rf, jump and the hulls of three units (first, centre, last, on both axes) of each
   classifier's feature trunk against a gradient measurement in PyTorch: a float64 copy with every
   parameter positive (uniform in [0.5, 1.5], weights divided by their fan-in), BN running statistics
   0 and 1, max pools swapped for average pools (modules and F.max_pool2d), ReLU6 for ReLU (a unit
   saturated at 6 passes no gradient; the geometry is the same), squeeze-excitation gates
   detached (rfsweep's gate convention), a positive input; the support of d(sum over channels of one
   unit)/d(input) is the set of pixels whose gradient is not exactly zero. Each hull end that lies inside
   the image must equal the measured one exactly; an end in the padding (rfsweep counts padding as
   input) must bound it. The first and last units reach past the image on one side only, so their inner
   ends check the rf even where it is larger than the input.
3. **timing**: ``rfsweep analyze resnet50.onnx`` as a child process, wall seconds (best and median of 7),
   the ONNX file written by ``torch.onnx.export(resnet50, dynamo=True)`` in a temp dir, with its defaults
   (weights as external data) and with the weights inside, beside ``python -c pass``, ``rfsweep --help``
   and ``python -c "import onnx"``.

    python benchmarks/bench_import.py            # everything, ~40 min on 2 cores
    python benchmarks/bench_import.py --quick    # a dozen models in the table
    python benchmarks/bench_import.py --only gradient --models resnet50,vgg16
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import rfsweep
from rfsweep.network.analyze import evaluate
from rfsweep.network.zoo import resolve

TRANSFORMERS = ("vit_", "swin_", "maxvit_")
QUICK = [
    "alexnet",
    "vgg16",
    "resnet50",
    "densenet121",
    "googlenet",
    "inception_v3",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "shufflenet_v2_x1_0",
    "squeezenet1_0",
    "regnet_y_400mf",
    "convnext_tiny",
]
GRADIENT = QUICK + ["mnasnet1_0", "resnext50_32x4d", "mobilenet_v2", "regnet_x_400mf"]
TIMM = ["resnet50", "efficientnet_b0", "mobilenetv3_large_100", "convnext_tiny", "cspdarknet53"]


def classifier(name):
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def size_of(name):
    return 299 if name == "inception_v3" else 224


def last_spatial(spec):
    """All results, and the last layer that is still a map (more than one unit; a classifier's Gemm on a
    flattened map is a conv with a 1x1 output, not counted)."""
    results = evaluate(resolve(spec))
    spatial = [r for r in results if not r.axes[0].whole and r.axes[0].size * r.axes[1].size > 1]
    return results, (spatial or [r for r in results if not r.axes[0].whole])[-1]


# --------------------------------------------------------------------------- 1. the import table


def detection_backbones():
    from torchvision.models import detection as D

    f = D.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    r = D.retinanet_resnet50_fpn(weights=None, weights_backbone=None).eval()
    s = D.ssd300_vgg16(weights=None, weights_backbone=None).eval()
    m = D.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).eval()
    yield "fasterrcnn_resnet50_fpn.backbone", f.backbone, 320
    yield "fasterrcnn_resnet50_fpn.backbone.body", f.backbone.body, 320
    yield "retinanet_resnet50_fpn.backbone", r.backbone, 320
    yield "retinanet_resnet50_fpn.backbone.body", r.backbone.body, 320
    yield "ssd300_vgg16.backbone", s.backbone, 300
    yield "fasterrcnn_mobilenet_v3_large_fpn.backbone", m.backbone, 320


def timm_models():
    try:
        import timm
    except ImportError:
        return
    for name in TIMM:
        yield f"timm {name}", timm.create_model(name, pretrained=False).eval(), 224


def table_row(label, module, size):
    t0 = time.perf_counter()
    torch_params = sum(p.numel() for p in module.parameters())
    try:
        spec = rfsweep.from_torch(module, input_size=size)
        results, last = last_spatial(spec)
    except rfsweep.RFSweepError as exc:
        return {"model": label, "status": "refused", "why": str(exc), "torch_params": torch_params}
    params = sum(r.params for r in results)
    return {
        "model": label,
        "status": "imports",
        "layers": len(spec["layers"]),
        "params": params,
        "torch_params": torch_params,
        "rf": last.axes[0].rf,
        "jump": last.axes[0].jump,
        "last": last.layer.name,
        "seconds": time.perf_counter() - t0,
    }


def section_table(quick):
    names = QUICK if quick else [n for n in torchvision.models.list_models(module=torchvision.models)]
    items = [(n, None, size_of(n)) for n in names if not n.startswith(TRANSFORMERS)]
    items += list(detection_backbones()) + list(timm_models())
    print("\n## 1. import table (rf and jump of the last layer with more than one unit)\n")
    print("| model | input | result | layers | params (rfsweep) | params (torch) | rf | jump | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, module, size in items:
        row = table_row(name, module if module is not None else classifier(name), size)
        rows.append(row)
        if row["status"] == "imports":
            same = "" if row["params"] == row["torch_params"] else " (MISMATCH)"
            print(
                f"| {name} | {size} | imports | {row['layers']} | {row['params']:,}{same} | {row['torch_params']:,} "
                f"| {row['rf']} | {row['jump']} | {row['seconds']:.1f} |",
                flush=True,
            )
        else:
            print(f"| {name} | {size} | refused: {row['why']} | | | {row['torch_params']:,} | | | |", flush=True)
    ok = sum(r["status"] == "imports" for r in rows)
    bad = [r["model"] for r in rows if r["status"] == "imports" and r["params"] != r["torch_params"]]
    print(f"\n{ok} of {len(rows)} import; parameter mismatches: {bad or 'none'}")
    return not bad


# --------------------------------------------------------------------------- 2. gradient measurement


def trunk(name, model):
    """The feature extractor of a torchvision classifier: everything before its global pool."""
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return nn.Sequential(*list(model.children())[:-2])
    if name.startswith("regnet"):
        return nn.Sequential(model.stem, model.trunk_output)
    if name.startswith("mnasnet"):
        return model.layers
    if name.startswith("shufflenet"):
        return nn.Sequential(model.conv1, model.maxpool, model.stage2, model.stage3, model.stage4, model.conv5)
    if name in ("googlenet", "inception_v3"):
        skip = {"aux1", "aux2", "AuxLogits", "avgpool", "dropout", "fc"}
        return nn.Sequential(*[m for n, m in model.named_children() if n not in skip and m is not None])
    return model.features


@contextlib.contextmanager
def max_as_avg():
    """F.max_pool2d (called inside forward by Inception) as an average pool while the measurement runs."""
    original = F.max_pool2d

    def avg(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode)

    F.max_pool2d = avg
    try:
        yield
    finally:
        F.max_pool2d = original


def positive_copy(module):
    m = copy.deepcopy(module).double().eval()
    for child in list(m.modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.Hardtanh):  # ReLU6: a saturated unit passes no gradient; same geometry as ReLU
                setattr(child, attr, nn.ReLU())
            elif isinstance(sub, nn.MaxPool2d):
                setattr(child, attr, nn.AvgPool2d(sub.kernel_size, sub.stride, sub.padding, sub.ceil_mode))
            elif isinstance(sub, nn.AdaptiveMaxPool2d):
                setattr(child, attr, nn.AdaptiveAvgPool2d(sub.output_size))
    for se in m.modules():  # rfsweep's gate convention: the rf counts the gated map, not the global branch
        if isinstance(se, torchvision.ops.SqueezeExcitation):
            se.forward = (lambda mod: lambda x: mod._scale(x).detach() * x)(se)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.5 + torch.rand(p.shape, generator=gen, dtype=p.dtype))
            if p.dim() > 1:
                p.div_(p[0].numel())
        for b in m.modules():
            if isinstance(b, nn.modules.batchnorm._BatchNorm):
                b.running_mean.zero_()
                b.running_var.fill_(1.0)
    return m


def measured_hulls(module, n, units):
    """(first, last) row and column with a non-zero input gradient, for each (i, j) unit."""
    x = (0.5 + torch.rand(1, 3, n, n, dtype=torch.float64)).requires_grad_(True)
    with max_as_avg():
        y = module(x)
    out = []
    for i, j in units:
        (g,) = torch.autograd.grad(y[0, :, i, j].sum(), x, retain_graph=True)
        g = g[0].abs().sum(0)
        rows, cols = torch.nonzero(g.sum(1)).flatten(), torch.nonzero(g.sum(0)).flatten()
        out.append(((int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))))
    return y.shape[-2:], out


def gradient_row(name, n):
    model = classifier(name)
    t = trunk(name, model)
    spec = rfsweep.from_torch(t, input_size=n)
    last = evaluate(resolve(spec))[-1]
    h, w = last.axes[0].size, last.axes[1].size
    units = [(0, 0), (1, 1), (h // 2, w // 2), (h - 1, w - 1), (h - 2, w - 2)]
    shape, hulls = measured_hulls(positive_copy(t), n, units)
    assert tuple(shape) == (h, w), (name, tuple(shape), (h, w))
    agree, exact, full = True, 0, []
    for (i, j), (mh, mw) in zip(units, hulls):  # both axes of each unit
        for axis, u, (mlo, mhi) in ((0, i, mh), (1, j, mw)):
            lo, hi = last.axes[axis].hull(u)
            # an end inside the image must be exact; an end in the padding bounds the measurement (real
            # pixels only: a strided VALID conv may leave the last pixels unread)
            agree &= mlo == lo if lo >= 0 else mlo >= 0
            agree &= mhi == hi if hi <= n - 1 else mhi <= n - 1
            exact += (lo >= 0) + (hi <= n - 1)
            if lo >= 0 and hi <= n - 1:
                full.append(mhi - mlo + 1)
    (_, hi0), (_, hi1), (lo9, _), (lo8, _) = hulls[0][0], hulls[1][0], hulls[3][0], hulls[4][0]
    jump = hi1 - hi0 if hi1 < n - 1 else (lo9 - lo8 if lo8 > 0 else None)
    return {
        "model": name,
        "n": n,
        "layer": last.layer.name,
        "rf": last.axes[0].rf,
        "rf_measured": max(full) if full else f"> {n} (no whole hull inside)",
        "jump": last.axes[0].jump,
        "jump_measured": jump,
        "agree": agree,
        "exact": exact,
    }


def measurement_size(name) -> int:
    """The smallest multiple of 32 (at least the model's usual input) in which the first unit's far end lies
    inside the image, so that end is compared exactly; at most 1088 (time)."""
    _, last = last_spatial(rfsweep.from_torch(trunk(name, classifier(name)), input_size=size_of(name)))
    far = float(last.axes[0].hull(0)[1])
    return int(min(max(size_of(name), math.ceil((far + 33) / 32) * 32), 1088))


def section_gradient(names):
    print("\n## 2. rf, jump and unit hulls against a gradient measurement (float64, positive weights)\n")
    print("| model | input | last layer | rf | measured | jump | measured | hull ends exact (of 20) | agree | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for name in names:
        t0 = time.perf_counter()
        row = gradient_row(name, measurement_size(name))
        ok &= row["agree"]
        jump = "-" if row["jump_measured"] is None else row["jump_measured"]
        print(
            f"| {name} | {row['n']} | {row['layer']} | {row['rf']} | {row['rf_measured']} | {row['jump']} "
            f"| {jump} | {row['exact']} | {'yes' if row['agree'] else 'NO'} | {time.perf_counter() - t0:.0f} |",
            flush=True,
        )
    print(f"\nall hulls agree: {ok}")
    return ok


# --------------------------------------------------------------------------- 3. timing


def wall(cmd, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def section_timing(repeat):
    print("\n## 3. `rfsweep analyze resnet50.onnx`, whole process (wall seconds)\n")
    exe = str(Path(sys.executable).with_name("rfsweep"))
    with tempfile.TemporaryDirectory() as tmp:
        model = torchvision.models.resnet50().eval()
        default, single = os.path.join(tmp, "resnet50.onnx"), os.path.join(tmp, "single", "resnet50.onnx")
        os.makedirs(os.path.dirname(single))
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), default, dynamo=True)
            torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), single, dynamo=True, external_data=False)
        mb = {
            p: sum(f.stat().st_size for f in Path(p).parent.iterdir() if f.is_file()) / 1e6 for p in (default, single)
        }
        print(
            f"torch.onnx.export(resnet50, dynamo=True) with its defaults writes resnet50.onnx and its weights beside "
            f"it as external data ({mb[default]:.1f} MB in all; rfsweep never reads the weights); with "
            f"external_data=False one file of {mb[single]:.1f} MB.\n"
        )
        print("| command | best | median |")
        print("|---|---|---|")
        for label, cmd in (
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("python -c 'import onnx'", [sys.executable, "-c", "import onnx"]),
            ("rfsweep --help", [exe, "--help"]),
            ("rfsweep analyze resnet50 (zoo)", [exe, "analyze", "resnet50"]),
            ("rfsweep analyze resnet50.onnx (external weights, the default)", [exe, "analyze", default]),
            ("rfsweep analyze resnet50.onnx (weights inside)", [exe, "analyze", single]),
        ):
            best, median = wall(cmd, repeat)
            print(f"| `{label}` | {best:.2f} | {median:.2f} |", flush=True)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a dozen models in section 1")
    ap.add_argument("--only", choices=["table", "gradient", "timing"])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--models", help="comma-separated torchvision names for section 2 (default: a dozen families)")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"# bench_import: {when}, {cpu_name()}, "
        f"{os.cpu_count()} cores, load {load:.2f}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, rfsweep {rfsweep.__version__}"
    )
    ok = True
    if args.only in (None, "table"):
        ok &= section_table(args.quick)
    if args.only in (None, "gradient"):
        ok &= section_gradient(args.models.split(",") if args.models else GRADIENT)
    if args.only in (None, "timing"):
        section_timing(args.repeat)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
