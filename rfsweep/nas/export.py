"""Search-output rows -> network specs -> PyTorch source or JSONL, for NAS and training pipelines.

A row's ``arch_id`` and the file's ``rfsweep.spec`` metadata rebuild its candidate exactly
(``Space.decode`` + ``Space.network_spec``, as ``rfsweep show`` does), so full and ``--columns compact``
outputs export alike. The export options add layers to that spec, never change its own:

* ``act`` relu|relu6|silu|none: an activation after every conv (no parameters);
* ``norm`` bn|none: a BatchNorm between every conv and its activation, 2·C trainable parameters for C
  channels (weight and bias; the running statistics are buffers, not parameters); the conv keeps the
  search's bias setting (search with ``--no-bias`` for the usual conv-BN pair);
* ``num_classes`` K: a head, global average pool then a linear layer of C·K + K parameters.

The defaults (relu, none, no head) keep every row's ``params``. Both outputs carry the same layers:
``--to jsonl`` writes the spec, ``--to pytorch`` the modules :mod:`rfsweep.nas.torch_modules` makes of it.
Every row is checked against the analyzer on its spec (rf, jump, eff_padding, out_size, params, MACs)
before it is written: export never states a metric the analyzer would not.

A candidate of a space of stages (rfsweep.space.stages: OFA, ProxylessNAS, ResNet spaces) is exported as the
space defines it: its blocks carry their own BatchNorm, activations, squeeze-and-excitation and head, so
the options are refused there. Its spec is the analyzer's expansion of its blocks (``Space.network_spec``,
layers named ``<stage>.<block>.<layer>``, a DAG of residual adds and SE gates) with ``feature_layer`` the
map before the head's global pool, where the row's rf, jump, eff_padding and out_size are measured; its
params and MACs are the whole network's, head included. The PyTorch source has one module a block
(rfsweep/nas/torch_blocks.py's classes, copied into the file) and one ``BlockNet(features, head)`` a candidate.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from typing import Any, TextIO

from rfsweep.core.errors import RFSweepError, field_error
from rfsweep.nas.torch_modules import BlockModel, block_modules, chain_modules
from rfsweep.network.analyze import LayerResult, evaluate
from rfsweep.network.spec import Network, parse_network
from rfsweep.output.select import Selection, rf_target2, select_file
from rfsweep.output.sink import LIST_COLUMNS, read_spec
from rfsweep.space import Space, build_space, ids

ACTS = ("relu", "relu6", "silu", "none")
NORMS = ("bn", "none")
FORMATS = ("pytorch", "jsonl")
METRICS = ("rf", "jump", "eff_padding", "center", "out_size", "params", "macs", "erf_sigma", "latency_ms")


# ------------------------------------------------------------------ specs


def check_options(act: str | None, norm: str | None, num_classes: int | None) -> None:
    if act is not None and act not in ACTS:
        raise field_error("act", act, f"must be one of {', '.join(ACTS)}")
    if norm is not None and norm not in NORMS:
        raise field_error("norm", norm, f"must be one of {', '.join(NORMS)}")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise field_error("num_classes", num_classes, "must be an integer >= 1")


def with_layers(spec: dict, act: str | None = None, norm: str | None = None, num_classes: int | None = None) -> dict:
    """A copy of a chain spec with a norm and an activation after every conv and, with ``num_classes``,
    a head (``head_pool``: global average pool, ``head``: linear). Added layers are named after the conv
    (``l3_conv`` -> ``l3_bn``, ``l3_relu``; ``stem`` -> ``stem_bn``, ``stem_relu``). ``feature_layer``
    names the last layer before the head."""
    check_options(act, norm, num_classes)
    layers = []
    for layer in spec["layers"]:
        layers.append(dict(layer))
        if layer.get("op") != "conv":
            continue
        base = layer["name"][: -len("_conv")] if str(layer["name"]).endswith("_conv") else layer["name"]
        if norm == "bn":
            layers.append({"name": f"{base}_bn", "op": "bn"})
        if act not in (None, "none"):
            layers.append({"name": f"{base}_{act}", "op": act})
    out = {**spec, "layers": layers}
    if num_classes is not None:
        out["feature_layer"] = layers[-1]["name"]
        out["layers"] = layers + [
            {"name": "head_pool", "op": "global_pool", "mode": "avg"},
            {"name": "head", "op": "linear", "channels": num_classes},
        ]
    return out


def _without_latency(settings: dict) -> dict:
    """The settings without the latency table: building a candidate needs no table (the rows carry
    latency_ms), and a table moved since the search must not stop an export."""
    return {k: v for k, v in settings.items() if k not in ("latency_lut", "max_latency_ms")}


def load_space(space: Any) -> Space:
    """A Space from a search output's path, its ``rfsweep.spec`` metadata, search settings or a Space."""
    if isinstance(space, Space):
        return space
    if isinstance(space, (str, PathLike)):
        return build_space(_without_latency(read_spec(os.fspath(space))["space"]))
    if isinstance(space, Mapping):
        return build_space(_without_latency(dict(space["space"] if "space" in space else space)))
    raise field_error(
        "space", None if space is None else type(space).__name__, "give the search output (its path) the row is from"
    )


def check_block_options(act: str | None, norm: str | None, num_classes: int | None = None) -> None:
    """A space of stages builds its blocks as it defines them: ``act`` and ``norm`` do not apply
    (``num_classes`` does: :func:`with_classes`)."""
    for name, value in (("act", act), ("norm", norm)):
        if value is not None:
            raise field_error(
                name,
                value,
                "applies to chain spaces; a space of stages defines its own BatchNorm and activations",
            )
    check_options(None, None, num_classes)


def with_classes(space: Space, num_classes: int | None) -> Space:
    """A space of stages whose head ends in a linear layer to ``num_classes`` logits: the head's last
    linear block gets that many channels, or a global pool (when the head has none) and a linear layer
    are added. The candidates and their arch_ids are the space's (the head is one fixed choice); the
    params and MACs are then the new head's. None: the space itself."""
    if num_classes is None:
        return space
    check_options(None, None, num_classes)
    settings = json.loads(json.dumps(space.settings))
    head = list(settings.get("head") or [])
    if head and head[-1].get("op") == "linear":
        head[-1] = {**head[-1], "channels": num_classes}
    else:
        if not any(b.get("op") == "global_pool" for b in head):
            head.append({"op": "global_pool"})
        head.append({"op": "linear", "channels": num_classes, "act": "none"})
    settings["head"] = head
    for key in ("max_params", "max_macs", "max_peak_act"):  # the row was selected under them already
        settings[key] = None
    return build_space(settings, for_search=False)


def row_metrics(row: Mapping) -> dict:
    """The row's scalar metrics as plain numbers (what exports carry beside each model)."""
    out = {}
    for key in (*METRICS, "peak_act", "peak_act_bytes"):
        if key in row and row[key] is not None:
            v = row[key]
            v = v.item() if hasattr(v, "item") else v
            out[key] = float(v) if isinstance(v, float) else int(v)
    return out


def candidate_spec(
    space: Space,
    arch_id: int,
    *,
    act: str | None = "relu",
    norm: str | None = "none",
    num_classes: int | None = None,
) -> dict:
    """The network spec of one candidate with the export's layers added; ``name`` is the arch_id as a
    string. Layers are named ``l{position}_{op}`` (``l0_conv``, ``l1_maxpool``).

    For a space of stages: the spec as ``Space.network_spec`` writes it (``act`` and ``norm`` must be None;
    ``num_classes`` sets the head's logits, :func:`with_classes`), with ``feature_layer`` the map before the
    head's global pool.
    """
    if space.has_blocks and num_classes is not None:
        check_block_options(act, norm, num_classes)
        return candidate_spec(with_classes(space, num_classes), arch_id, act=None, norm=None)
    idx = space.decode(arch_id)
    spec = space.network_spec(idx, name=str(int(arch_id)))
    if space.has_blocks:
        check_block_options(act, norm, num_classes)
        feature = feature_layer(space, idx, spec["layers"])
        if feature is not None:
            spec["feature_layer"] = feature
        return spec
    for layer in spec["layers"]:
        layer["name"] = f"{layer['name']}_{layer['op']}"
    return with_layers(spec, act, norm, num_classes)


def feature_layer(space: Space, idx: list[int], layers: list[dict]) -> str | None:
    """The layer a candidate of a space of stages is measured at: the input of its head's global pool
    (the first ``global_pool`` block; an SE's own pool is inside its block). None without one."""
    for p, c in enumerate(idx):
        for b, block in enumerate(space.positions[p][c].blocks):
            if block.op == "global_pool":
                name = f"{space.position_names[p]}.{b}.pool"
                return next(layer["inputs"][0] for layer in layers if layer["name"] == name)
    return None


def arch_id_of(candidate: Any) -> int:
    """The arch_id of an int-like value (int, numpy integer, ``Decimal``: rfsweep.space.ids.as_arch_id), or of a
    row (a dict or pandas Series with ``arch_id``)."""
    return ids.as_arch_id(_as_row(candidate)["arch_id"])


def _as_row(candidate: Any) -> dict:
    if hasattr(candidate, "to_dict") and not isinstance(candidate, Mapping):  # a pandas Series
        candidate = candidate.to_dict()
    if isinstance(candidate, Mapping):
        if "arch_id" not in candidate:
            raise field_error("arch_id", None, "a row needs its arch_id")
        return dict(candidate)
    return {"arch_id": candidate}


def candidate_network(
    candidate: Any, space: Any, *, act: str = "relu", norm: str = "none", num_classes: int | None = None
) -> Network:
    """The validated network of an arch_id or a row of ``space``'s search output (see :func:`candidate_spec`).

    A row's layer list columns, when present, must be the decoding of its arch_id (a row of another file
    is refused rather than silently rebuilt as a different network). For a space of stages the network
    is its blocks' expansion as the space defines it; the options are the chain's and are not used.
    """
    row = _as_row(candidate)
    sp = load_space(space)
    arch_id = arch_id_of(row)
    if sp.has_blocks:  # the options are the chain's: a space of stages takes none
        spec = candidate_spec(sp, arch_id, act=None, norm=None, num_classes=None)
        return parse_network(spec)
    spec = candidate_spec(sp, arch_id, act=act, norm=norm, num_classes=num_classes)
    # the lists layout's columns; the wide layout has a column a layer (op_0, ...) and padding as one value
    present = [c for c in LIST_COLUMNS if c in row and row[c] is not None and not isinstance(row[c], str)]
    if present:
        mine = layer_lists(sp.layers(sp.decode(arch_id)), sp.padding, sp.in_channels)
        for col in present:
            if [_plain(v) for v in row[col]] != mine[col]:
                raise field_error(
                    col, [_plain(v) for v in row[col]], f"is not the decoding of arch_id {arch_id} in this space"
                )
    return parse_network(spec)


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def layer_lists(layers: list[dict], padding: str, in_channels: int) -> dict[str, list]:
    """The search output's list columns (op, kernel, stride, dilation, padding, channels) of a layer list;
    pools have dilation 1 and pass their input channels."""
    out: dict[str, list] = {c: [] for c in LIST_COLUMNS}
    channels = in_channels
    for layer in layers:
        channels = layer.get("channels", channels)
        out["op"].append(layer["op"])
        out["kernel"].append(layer["kernel"])
        out["stride"].append(layer["stride"])
        out["dilation"].append(layer.get("dilation", 1))
        out["padding"].append(padding)
        out["channels"].append(channels)
    return out


def network_with(spec: Any, act: str | None = None, norm: str | None = None, num_classes: int | None = None) -> Network:
    """A validated chain network from a spec dict (options add layers, see :func:`with_layers`) or a Network."""
    if isinstance(spec, Network):
        if (act, norm, num_classes) != (None, None, None):
            raise field_error("act", act, "options add layers to a spec dict, not to a parsed Network")
        return spec
    if not isinstance(spec, Mapping) or "layers" not in spec:
        raise field_error("spec", type(spec).__name__, "expected a network spec (a dict with layers) or an arch_id")
    if (act, norm, num_classes) == (None, None, None):
        return parse_network(dict(spec))
    if not isinstance(spec["layers"], list):
        return parse_network(dict(spec))  # the parser names the problem
    return parse_network(with_layers(dict(spec), act, norm, num_classes))


# ------------------------------------------------------------------ checking a row against its layers


def _feature_index(net: Network) -> int:
    names = [layer.name for layer in net.layers]
    return names.index(net.feature_layer) if net.feature_layer else len(names) - 1


def check_row(row: Mapping, net: Network, results: list[LayerResult], where: str, blocks: bool = False) -> int:
    """Compare the row's metrics with the analyzer's on the candidate's layers; return the model's total
    parameters (the row's plus what the options add). A chain row counts its convs (the options add
    BatchNorm and a head); a row of a space of stages (``blocks``) every layer, BatchNorm and head included."""
    feature = results[_feature_index(net)]
    axis = feature.axes[0]
    counted = results if blocks else [r for r in results if r.layer.op == "conv"]
    mine = {
        "rf": axis.rf,
        "jump": axis.jump,
        "eff_padding": axis.eff_padding,
        "out_size": axis.size,
        "params": sum(r.params for r in counted),
        "macs": sum(r.macs for r in counted),
    }
    for key, value in mine.items():
        if key in row and row[key] != value:
            raise field_error(
                "file",
                where,
                f"arch_id {row['arch_id']}: the row has {key} {row[key]} but its layers give {value} "
                "(written with other settings or by another rfsweep version?)",
            )
    return sum(r.params for r in results)


# ------------------------------------------------------------------ writers


def _metrics_text(row: Mapping) -> str:
    parts = []
    for key in METRICS:
        if key not in row:
            continue
        v = row[key]
        if key in ("params", "macs"):
            parts.append(f"{key} {v:,}")
        elif isinstance(v, float):
            parts.append(f"{key} {v:.6g}")
        else:
            parts.append(f"{key} {v}")
    return ", ".join(parts)


BLOCK_CLASSES_MARKER = "# ---- exported source:"


def block_classes_source() -> str:
    """The classes of rfsweep/nas/torch_blocks.py as text, from its marker line on (no torch import here)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent / "torch_blocks.py").read_text(encoding="utf-8")
    at = text.index(BLOCK_CLASSES_MARKER)
    return text[text.index("\n", at) + 1 :]


class PytorchWriter:
    """Self-contained Python source: one builder a candidate, then ``MODELS`` (arch_id -> builder).

    The builders stream out as rows arrive; the ``MODELS`` entries wait in a temporary file until the
    end, so memory does not grow with the number of candidates.
    """

    def __init__(self, out: TextIO, *, file: str, space: Space, version: str, act: str, norm: str, num_classes):
        self.out = out
        self.entries = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.metrics = tempfile.TemporaryFile("w+", encoding="utf-8")  # METRICS entries, as MODELS'
        if space.has_blocks:
            self._block_header(file, space, version, num_classes)
            return
        extra = []
        if norm == "bn":
            extra.append("2·C per conv of C channels (BatchNorm2d weight and bias; running statistics are buffers)")
        if num_classes is not None:
            extra.append(f"C·{num_classes} + {num_classes} for the head's Linear (C: the last map's channels)")
        params = "each row's params" + ("".join(f" + {e}" for e in extra) if extra else " exactly")
        if space.padding == "tf_same":
            padding = (
                f"Padding: 'tf_same' (TensorFlow SAME) resolved at input {space.input_size}; at other sizes "
                "the modules keep these pads."
            )
        else:
            padding = f"Padding: '{space.padding}' as explicit pads (the same at any input size)."
        head = f", then a head to {num_classes} logits" if num_classes is not None else ""
        paragraphs = [
            f"PyTorch models of rfsweep search candidates from {os.path.basename(file)} (rfsweep {version}, "
            "`rfsweep export --to pytorch`).",
            f"Needs torch only. MODELS[arch_id]() returns an nn.Sequential that takes (N, {space.in_channels}, "
            f"H, W) and returns the last feature map{head}; at H = W = {space.input_size}, the search's input "
            "size, that map is out_size on each side.",
            padding,
            f"Options: act {act} (after every conv), norm {norm}, num_classes {num_classes}. Parameters "
            f"(sum of p.numel()): {params}.",
        ]
        doc = "\n\n".join(textwrap.fill(p, 100, break_on_hyphens=False) for p in paragraphs)
        out.write(
            f'"""{doc}\n"""\n\n'
            "from collections import OrderedDict\n"
            "from collections.abc import Callable\n\n"
            "from torch import nn\n\n"
            f"INPUT_SIZE = {space.input_size}  # the search's input size (H = W)\n"
            f"IN_CHANNELS = {space.in_channels}\n"
            f"# search settings: {json.dumps(space.settings, sort_keys=True)}\n"
        )

    def _block_header(self, file: str, space: Space, version: str, num_classes: int | None = None) -> None:
        params = "each row's params exactly, head included"
        if num_classes is not None:
            params = (
                f"each row's params with the head's last linear layer giving {num_classes} logits (the comment "
                "above each builder says how many)"
            )
        paragraphs = [
            f"PyTorch models of rfsweep search candidates from {os.path.basename(file)} (rfsweep {version}, "
            "`rfsweep export --to pytorch`), a space of stages"
            + (f" ({space.settings.get('name')})" if space.settings.get("name") else "")
            + ".",
            f"Needs torch only. MODELS[arch_id]() returns a BlockNet: .features takes (N, {space.in_channels}, "
            f"H, W) and returns the map before the head's global pool (at H = W = {space.input_size}, the "
            "search's input size, out_size on each side; its rf and jump are the row's); .head is the global "
            "pool and the layers after it; forward() runs both.",
            "One module a block (the classes below): every conv of a block without bias and followed by "
            "BatchNorm2d, squeeze-and-excitation with a hard-sigmoid gate, residual adds where the block keeps "
            "its shape, ResNet projections as 1x1 convs with the stride. Padding: 'same' (k' - 1 pixels, the "
            "odd one after).",
            f"Parameters (sum of p.numel()): {params} (BatchNorm weight and bias count; running statistics "
            "are buffers). METRICS[arch_id]: the row's metrics.",
        ]
        doc = "\n\n".join(textwrap.fill(p, 100, break_on_hyphens=False) for p in paragraphs)
        self.out.write(f'"""{doc}\n"""\n\nfrom collections.abc import Callable\n')
        self.out.write(block_classes_source())
        self.out.write(
            f"\n\nINPUT_SIZE = {space.input_size}  # the search's input size (H = W)\n"
            f"IN_CHANNELS = {space.in_channels}\n"
            f"# search settings: {json.dumps(space.settings, sort_keys=True)}\n"
        )

    def write(self, row: Mapping, net: Network, modules, total_params: int) -> None:
        arch_id = int(row["arch_id"])
        comment = f"# arch_id {arch_id}: {_metrics_text(row)}"
        self.metrics.write(f"    {arch_id}: {json.dumps(row_metrics(row))},\n")
        if isinstance(modules, BlockModel):
            if total_params != row.get("params", total_params):
                comment += f"; with this head {total_params:,} parameters"
            parts = [f"\n\n{comment}\ndef arch_{arch_id}() -> BlockNet:\n"]
            for what, group in (("features", modules.features), ("head", modules.head)):
                lines = "".join(f'        ("{m.name}", {m.source()}),\n' for m in group)
                parts.append(f"    {what} = [\n{lines}    ]\n")
            parts.append("    return BlockNet(features, head)\n")
            self.out.write("".join(parts))
            self.entries.write(f"    {arch_id}: arch_{arch_id},\n")
            return
        if total_params != row.get("params", total_params):
            comment += f"; with these options {total_params:,} parameters"
        lines = [f'        ("{m.name}", {m.source()}),' for m in modules]
        self.out.write(
            f"\n\n{comment}\ndef arch_{arch_id}() -> nn.Sequential:\n    layers = [\n"
            + "\n".join(lines)
            + "\n    ]\n    return nn.Sequential(OrderedDict(layers))\n"
        )
        self.entries.write(f"    {arch_id}: arch_{arch_id},\n")

    def close(self) -> None:
        self.out.write("\n\nMODELS: dict[int, Callable[..., nn.Module]] = {\n")
        self.entries.seek(0)
        shutil.copyfileobj(self.entries, self.out)
        self.out.write("}\n")
        self.entries.close()
        # the rows' metrics beside the models: a NAS loop scores MODELS[a] by METRICS[a], no join needed
        self.out.write("\n\nMETRICS: dict[int, dict[str, float]] = {\n")
        self.metrics.seek(0)
        shutil.copyfileobj(self.metrics, self.out)
        self.out.write("}\n")
        self.metrics.close()


class JsonlWriter:
    """One network spec a line (the format ``rfsweep analyze`` reads); ``name`` is the arch_id as a string."""

    def __init__(self, out: TextIO, *, file: str, version: str, **_):
        self.out, self.file, self.version = out, os.path.basename(file), version

    def write(self, row: Mapping, net: Network, modules, total_params: int) -> None:
        spec = dict(row["_spec"])
        # the arch_id and metrics ride along (the analyzer ignores them): build(line, space=FILE) takes the
        # line of a candidate of a space of stages, and a NAS loop scores a line without the Parquet file
        spec["arch_id"] = int(row["arch_id"])
        spec["metrics"] = row_metrics(row)
        spec["description"] = (
            f"rfsweep {self.version} export of {self.file}, arch_id {row['arch_id']}: {_metrics_text(row)}"
            + (f"; {total_params:,} parameters with the added layers" if total_params != row.get("params") else "")
        )
        self.out.write(json.dumps(spec) + "\n")

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ the export


@dataclass
class ExportResult:
    scanned: int
    written: int
    output: str | None


def export(
    file: str,
    output: str | None = None,
    *,
    to: str = "pytorch",
    selection: Selection | None = None,
    act: str | None = None,
    norm: str | None = None,
    num_classes: int | None = None,
    stdout: TextIO | None = None,
) -> ExportResult:
    """Export the selected rows of a search output as PyTorch source or JSONL network specs.

    ``output`` None or '-' writes to ``stdout`` (default ``sys.stdout``); a path is written under a
    temporary name beside it and renamed when complete (nothing is left on an error), and may not be
    ``file`` itself. ``act`` and ``norm`` default to relu and none for a chain space; a space of stages
    takes none of the options.
    """
    from rfsweep.core.version import __version__

    if to not in FORMATS:
        raise field_error("to", to, f"must be one of {', '.join(FORMATS)}")
    check_options(act, norm, num_classes)
    meta = read_spec(file)
    space = build_space(_without_latency(meta["space"]))
    if space.has_blocks:
        check_block_options(act, norm, num_classes)
    else:
        act = "relu" if act is None else act
        norm = "none" if norm is None else norm
    selection = selection if selection is not None else Selection()
    if selection.sort == "rf_error" and selection.target2 is None:
        selection.target2 = rf_target2(space)
    writer_cls = PytorchWriter if to == "pytorch" else JsonlWriter
    options = dict(file=file, space=space, version=__version__, act=act, norm=norm, num_classes=num_classes)
    rows = select_file(file, selection)

    if output in (None, "-"):
        stream = stdout if stdout is not None else sys.stdout
        written = _write(writer_cls(stream, **options), rows, space, file, act, norm, num_classes)
        return ExportResult(selection.scanned, written, None)

    from rfsweep.core.files import atomic, check_output

    # the output rule every command shares (rfsweep.core.files): a regular file atomically, a symlink's
    # target (the link stays), a device or FIFO written in place and never replaced
    out = check_output(output, "output", inputs=(file,))
    try:
        with atomic(out, f".{to}.tmp") as name, open(name, "w", encoding="utf-8") as stream:
            written = _write(writer_cls(stream, **options), rows, space, file, act, norm, num_classes)
    except OSError as exc:
        raise field_error("output", output, f"write failed ({exc.strerror or type(exc).__name__})") from None
    return ExportResult(selection.scanned, written, output)


def _write(writer, tables: Iterable, space: Space, file: str, act, norm, num_classes) -> int:
    written = 0
    built = with_classes(space, num_classes) if space.has_blocks else space  # a stage space's new head
    for table in tables:
        for row in table.to_pylist():
            try:
                options = (None, None, None) if space.has_blocks else (act, norm, num_classes)
                spec = candidate_spec(space, row["arch_id"], act=options[0], norm=options[1], num_classes=options[2])
            except RFSweepError:
                raise field_error(
                    "arch_id", row["arch_id"], f"is not a candidate of the space stored in {file}"
                ) from None
            net = parse_network(spec)
            results = evaluate(net)
            total = check_row(row, net, results, file, blocks=space.has_blocks)
            if built is not space:  # the row checked as written; the model with its new head
                spec = candidate_spec(built, row["arch_id"], act=None, norm=None, num_classes=None)
                total = sum(r.params for r in evaluate(parse_network(spec)))
            row["_spec"] = spec
            if space.has_blocks:
                modules = block_modules(built, space.decode(row["arch_id"]))
            else:
                modules = chain_modules(net, results)
            writer.write(row, net, modules, total)
            written += 1
    writer.close()
    return written


__all__ = [
    "ACTS",
    "NORMS",
    "FORMATS",
    "export",
    "arch_id_of",
    "block_classes_source",
    "check_block_options",
    "row_metrics",
    "with_classes",
    "candidate_spec",
    "feature_layer",
    "candidate_network",
    "network_with",
    "with_layers",
    "load_space",
    "layer_lists",
    "check_row",
    "ExportResult",
]
