"""Render analysis results: aligned table, JSON, CSV and the RF/ERF growth plot."""

from __future__ import annotations

import csv
import io
import math

from rfsweep.core.errors import RFSweepError, field_error
from rfsweep.core.files import Output, atomic, check_output
from rfsweep.core.numbers import fmt_number, plain
from rfsweep.network.analyze import LayerResult, axis_values
from rfsweep.network.spec import Network

JSON_KEYS = ["name", "op", "out_size", "channels", "jump", "rf", "eff_padding", "center", "params", "macs", "erf_sigma"]
_SPATIAL = ("out_size", "jump", "rf", "eff_padding", "center", "erf_sigma")


def _json_axis(r: LayerResult, col: str) -> list:
    if col == "rf" and r.axes[0].whole:
        return ["global", "global"]
    vals = axis_values(r, col)
    if col == "erf_sigma":
        return [None if v is None else round(v, 6) for v in vals]
    return [plain(v) for v in vals]


def to_json(results: list[LayerResult]) -> list[dict]:
    """One object per layer with exactly JSON_KEYS; spatial values as [h, w]; a global rf is "global"."""
    out = []
    for r in results:
        obj = {"name": r.layer.name, "op": r.layer.op}
        for col in _SPATIAL:
            obj[col] = _json_axis(r, col)
        obj["channels"] = r.channels
        obj["params"] = r.params
        obj["macs"] = r.macs
        out.append({k: obj[k] for k in JSON_KEYS})
    return out


def _cell(r: LayerResult, col: str) -> str:
    """h and w as one value when equal, else 'hxw'; 'global' where the unit sees the whole input."""
    if col in ("rf",) and r.axes[0].whole:
        return "global"
    vals = axis_values(r, col)
    if col == "erf_sigma":
        text = ["-" if v is None else f"{v:.2f}" for v in vals]
    else:
        text = [fmt_number(v) for v in vals]
    return text[0] if text[0] == text[1] else "x".join(text)


def to_csv(results: list[LayerResult]) -> str:
    """Flat CSV: one column per axis (rf_h, rf_w, ...)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = ["name", "op"]
    for col in _SPATIAL:
        header += [f"{col}_h", f"{col}_w"]
    header += ["channels", "params", "macs", "flags"]
    writer.writerow(header)
    for r in results:
        row = [r.layer.name, r.layer.op]
        for col in _SPATIAL:
            row += _json_axis(r, col)
        row += [r.channels, r.params, r.macs, ";".join(r.flags)]
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def to_table(net: Network, results: list[LayerResult]) -> str:
    """A readable aligned table with totals and notes on flagged layers."""
    cols = [
        "name",
        "op",
        "out_size",
        "channels",
        "jump",
        "rf",
        "eff_padding",
        "center",
        "erf_sigma",
        "params",
        "macs",
        "flags",
    ]
    rows = []
    for r in results:
        row = {
            "name": r.layer.name,
            "op": r.layer.op,
            "channels": str(r.channels),
            "params": f"{r.params:,}",
            "macs": "-" if r.macs is None else f"{r.macs:,}",
            "flags": ",".join(r.flags),
        }
        for col in _SPATIAL:
            row[col] = _cell(r, col)
        rows.append(row)
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in cols}
    right = {"out_size", "channels", "jump", "rf", "eff_padding", "center", "erf_sigma", "params", "macs"}
    lines = []
    size = "x".join(map(str, net.input_size)) if net.input_size else "unknown"
    lines.append(f"{net.name}: input {size}, {net.in_channels} channels")
    fmt_row = lambda row: "  ".join(row[c].rjust(widths[c]) if c in right else row[c].ljust(widths[c]) for c in cols)  # noqa: E731
    lines.append(fmt_row({c: c for c in cols}).rstrip())
    for row in rows:
        lines.append(fmt_row(row).rstrip())
    total_p = sum(r.params for r in results)
    macs = [r.macs for r in results]
    total_m = "-" if any(m is None for m in macs) else f"{sum(macs):,}"
    lines.append(f"total params {total_p:,}, MACs {total_m}")
    if any(r.axes[0].whole for r in results):
        lines.append("global: after a global pool or a linear layer every unit sees the whole input")
    if any("rf>input" in r.flags for r in results):
        lines.append("rf>input: the receptive field is larger than the input (it reaches into the padding)")
    if any("gated" in r.flags for r in results):
        lines.append(
            "gated: multiplied per channel by a globally pooled branch (squeeze-and-excitation); rf, jump and "
            "offsets count the gated map only, though every unit also depends on the whole input through the gate"
        )
    if any("unproductive" in r.flags for r in results):
        lines.append(
            "unproductive: every unit of the layer's input already sees the whole input, so its kernel "
            "adds no context (Richter et al.)"
        )
    return "\n".join(lines)


def plot(net: Network, results: list[LayerResult], path: str) -> None:
    """RF and 2-sigma ERF per layer (height axis, and width if it differs) against the input size."""
    plt = pyplot()
    spatial = [r for r in results if not r.axes[0].whole]
    x = list(range(len(spatial)))
    fig, ax = plt.subplots(figsize=(max(6, len(spatial) * 0.18), 4.5))
    for axis, label in ((0, "h"), (1, "w")):
        if axis == 1 and all(r.axes[0].rf == r.axes[1].rf for r in spatial):
            break
        suffix = f" ({label})" if axis == 1 or any(r.axes[0].rf != r.axes[1].rf for r in spatial) else ""
        ax.plot(x, [float(r.axes[axis].rf) for r in spatial], marker="o", ms=3, label=f"RF{suffix}")
        ax.plot(x, [2 * math.sqrt(r.axes[axis].erf_var) for r in spatial], marker="s", ms=3, label=f"ERF 2σ{suffix}")
    if net.input_size:
        ax.axhline(net.input_size[0], color="grey", ls="--", label=f"input size {net.input_size[0]}")
    ax.set_xticks(x)
    ax.set_xticklabels([r.layer.name for r in spatial], rotation=90, fontsize=6)
    ax.set_ylabel("input pixels")
    ax.set_title(f"{net.name}: receptive field growth")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a one-line error naming the missing extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RFSweepError("field 'plot': matplotlib is not installed (pip install 'rfsweep[plot]')") from None
    return plt


PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def check_plot(path: str, inputs=()) -> Output:
    """The --plot path, checked by the output rule (rfsweep.core.files): its extension picks PNG, PDF or SVG."""
    return check_output(path, "plot", suffixes=PLOT_SUFFIXES, inputs=inputs)


def save_figure(fig, path: str | Output, dpi: int) -> None:
    """Save a figure in the format its extension names, atomically, and close it."""
    plt = pyplot()
    out = path if isinstance(path, Output) else check_plot(path)
    fmt = out.suffix.lstrip(".") if out.suffix in PLOT_SUFFIXES else "png"
    try:
        with atomic(out, ".tmp" + (out.suffix or ".png")) as name:
            try:
                fig.savefig(name, dpi=dpi, format=fmt)
            except OSError as exc:
                raise field_error("plot", out.path, f"write failed ({exc.strerror})") from None
    finally:
        plt.close(fig)
