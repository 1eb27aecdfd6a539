"""Write the built-in model zoo: one JSON network spec per model, next to this script.

Run ``python data/models/generate.py`` from anywhere; it rewrites every ``<name>.json`` here and prints the
names. The specs are written out layer by layer from the original framework code, named as that code names
them, so a row of ``rfsweep.analyze(name)`` can be matched to the source:

* TF-Slim (tensorflow/models, research/slim/nets): alexnet_v2, vgg_16, mobilenet_v1, mobilenet_v1_075,
  resnet_v1_50/101/152/200. TF 'SAME' padding is written as ``"tf_same"`` (it depends on the input size),
  'VALID' as ``"valid"``; ``resnet_utils.conv2d_same`` with stride > 1 pads explicitly ``(k'-1)//2`` before
  and the rest after, then convolves VALID: written as ``[[pb, pe], [pb, pe]]``.
* torchvision (pytorch/vision, torchvision/models): alexnet, vgg11/13/16/19, resnet18/34/50/101.

Every spec names the layer its published receptive field is measured at under ``"feature_layer"``.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

SLIM = "tensorflow/models research/slim/nets/"
TV = "pytorch/vision torchvision/models/"


class Net:
    """Collects layers in order; a layer's input defaults to the previous layer."""

    def __init__(self, name: str, source: str, size: int = 224, channels: int = 3):
        self.name = name
        self.source = source
        self.size = size
        self.channels = channels
        self.layers: list[dict] = []
        self.names: set[str] = set()
        self.feature_layer: str | None = None

    @property
    def last(self) -> str:
        return self.layers[-1]["name"] if self.layers else "input"

    def add(self, name: str, op: str, inputs: list[str] | None = None, **fields) -> str:
        if name in self.names:
            raise ValueError(f"{self.name}: duplicate layer name {name!r}")
        layer = {"name": name, "op": op}
        # Defaults (stride 1, dilation 1, padding 0, groups 1, bias true, ceil_mode false) are left out.
        defaults = {"stride": 1, "dilation": 1, "padding": 0, "groups": 1, "bias": True, "ceil_mode": False}
        for key in ("kernel", "stride", "dilation", "padding", "channels", "groups", "bias", "ceil_mode", "output"):
            if key in fields:
                value = fields.pop(key)
                if key in defaults and value == defaults[key] and type(value) is type(defaults[key]):
                    continue
                layer[key] = value
        if fields:
            raise TypeError(f"unknown layer fields {sorted(fields)}")
        if inputs is not None and inputs != [self.last]:
            layer["inputs"] = inputs
        self.layers.append(layer)
        self.names.add(name)
        return name

    def to_dict(self) -> dict:
        if self.feature_layer not in self.names:
            raise ValueError(f"{self.name}: feature_layer {self.feature_layer!r} is not a layer")
        return {
            "name": self.name,
            "source": self.source,
            "input": {"size": self.size, "channels": self.channels},
            "feature_layer": self.feature_layer,
            "layers": self.layers,
        }


# --------------------------------------------------------------------------------------------- TF-Slim


def slim_alexnet_v2() -> Net:
    # alexnet_v2_arg_scope: conv2d padding SAME, max_pool2d padding VALID; conv2d has biases and ReLU.
    net = Net("alexnet_v2", SLIM + "alexnet.py alexnet_v2 (with alexnet_v2_arg_scope)")
    net.add("conv1", "conv", kernel=11, stride=4, padding="valid", channels=64)
    net.add("conv1/Relu", "relu")
    net.add("pool1", "maxpool", kernel=3, stride=2, padding="valid")
    net.add("conv2", "conv", kernel=5, padding="tf_same", channels=192)
    net.add("conv2/Relu", "relu")
    net.add("pool2", "maxpool", kernel=3, stride=2, padding="valid")
    for name, ch in (("conv3", 384), ("conv4", 384), ("conv5", 256)):
        net.add(name, "conv", kernel=3, padding="tf_same", channels=ch)
        net.add(name + "/Relu", "relu")
    net.feature_layer = net.add("pool5", "maxpool", kernel=3, stride=2, padding="valid")
    return _slim_fc_head(net, fc6_kernel=5)  # fully connected layers written as convolutions


def _slim_fc_head(net: Net, fc6_kernel: int) -> Net:
    """TF-Slim's fully connected head as convolutions: fc6 (VALID), fc7 and fc8 (1x1), with ReLU and dropout."""
    net.add("fc6", "conv", kernel=fc6_kernel, padding="valid", channels=4096)
    net.add("fc6/Relu", "relu")
    net.add("dropout6", "dropout")
    net.add("fc7", "conv", kernel=1, padding="tf_same", channels=4096)
    net.add("fc7/Relu", "relu")
    net.add("dropout7", "dropout")
    net.add("fc8", "conv", kernel=1, padding="tf_same", channels=1000)
    return net


def slim_vgg_16() -> Net:
    # vgg_arg_scope: conv2d padding SAME with biases and ReLU; max_pool2d keeps slim's defaults
    # (stride 2, padding VALID).
    net = Net("vgg_16", SLIM + "vgg.py vgg_16 (with vgg_arg_scope)")
    for block, (repeat, ch) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), start=1):
        for i in range(1, repeat + 1):
            name = f"conv{block}/conv{block}_{i}"
            net.add(name, "conv", kernel=3, padding="tf_same", channels=ch)
            net.add(name + "/Relu", "relu")
        net.add(f"pool{block}", "maxpool", kernel=2, stride=2, padding="valid")
    net.feature_layer = "pool5"
    return _slim_fc_head(net, fc6_kernel=7)  # fc_conv_padding='VALID'


# mobilenet_v1._CONV_DEFS: (kind, stride, depth); every kernel is 3x3.
_MOBILENET_V1_DEFS = [("conv", 2, 32)] + [
    ("sep", s, d)
    for s, d in (
        (1, 64),
        (2, 128),
        (1, 128),
        (2, 256),
        (1, 256),
        (2, 512),
        (1, 512),
        (1, 512),
        (1, 512),
        (1, 512),
        (1, 512),
        (2, 1024),
        (1, 1024),
    )
]


def slim_mobilenet_v1(name: str, depth_multiplier: float) -> Net:
    # mobilenet_v1_base: conv2d and separable_conv2d padding SAME, each followed by batch_norm (so no
    # biases) and ReLU6. min_depth=8.
    suffix = "" if depth_multiplier == 1.0 else f", depth_multiplier={depth_multiplier}"
    net = Net(name, SLIM + f"mobilenet_v1.py mobilenet_v1{suffix}")

    def depth(d: int) -> int:
        return max(int(d * depth_multiplier), 8)

    channels = 3
    for i, (kind, stride, d) in enumerate(_MOBILENET_V1_DEFS):
        if kind == "conv":
            scopes = [(f"Conv2d_{i}", dict(kernel=3, stride=stride, channels=depth(d)))]
            channels = depth(d)
        else:
            # separable_conv2d(num_outputs=None, depth_multiplier=1): a depthwise conv alone.
            scopes = [
                (f"Conv2d_{i}_depthwise", dict(kernel=3, stride=stride, channels=channels, groups=channels)),
                (f"Conv2d_{i}_pointwise", dict(kernel=1, stride=1, channels=depth(d))),
            ]
            channels = depth(d)
        for scope, conv in scopes:
            net.add(scope, "conv", padding="tf_same", bias=False, **conv)
            net.add(scope + "/BatchNorm", "bn")
            net.add(scope + "/Relu6", "relu")
    net.feature_layer = "Conv2d_13_pointwise"
    # Logits: _reduced_kernel_size_for_small_input gives 7x7 at 224.
    net.add("Logits/AvgPool_1a", "avgpool", kernel=7, padding="valid")
    net.add("Logits/Dropout_1b", "dropout")
    net.add("Logits/Conv2d_1c_1x1", "conv", kernel=1, padding="tf_same", channels=1000)
    return net


# resnet_v1_<depth>: units per block; base depths 64/128/256/512, block strides 2/2/2/1.
_RESNET_V1_UNITS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}


def slim_resnet_v1(num_layers: int) -> Net:
    # resnet_arg_scope: conv2d -> batch_norm (scale=True, so no biases) -> ReLU; max_pool2d padding SAME.
    name = f"resnet_v1_{num_layers}"
    net = Net(name, SLIM + f"resnet_v1.py {name} (with resnet_utils.resnet_arg_scope)")

    def conv_bn(scope: str, inputs: str, kernel: int, stride: int, channels: int, relu: bool) -> str:
        if stride == 1:
            padding = "tf_same"
        else:  # resnet_utils.conv2d_same: explicit pad then VALID
            pad_total = kernel - 1
            pb = pad_total // 2
            padding = [[pb, pad_total - pb], [pb, pad_total - pb]]
        net.add(
            scope, "conv", inputs=[inputs], kernel=kernel, stride=stride, padding=padding, channels=channels, bias=False
        )
        out = net.add(scope + "/BatchNorm", "bn")
        if relu:
            out = net.add(scope + "/Relu", "relu")
        return out

    x = conv_bn("conv1", "input", 7, 2, 64, relu=True)  # conv2d_same(net, 64, 7, stride=2)
    x = net.add("pool1", "maxpool", kernel=3, stride=2, padding="tf_same")
    depth_in = 64
    for b, (units, base, block_stride) in enumerate(
        zip(_RESNET_V1_UNITS[num_layers], (64, 128, 256, 512), (2, 2, 2, 1)), start=1
    ):
        for u in range(1, units + 1):
            stride = block_stride if u == units else 1  # resnet_v1_block: stride in the last unit
            depth = base * 4
            scope = f"block{b}/unit_{u}/bottleneck_v1"
            unit_in = x
            if depth == depth_in:
                if stride == 1:
                    shortcut = unit_in  # resnet_utils.subsample with factor 1 returns its input
                else:
                    shortcut = net.add(
                        scope + "/shortcut", "maxpool", inputs=[unit_in], kernel=1, stride=stride, padding="tf_same"
                    )
            else:
                shortcut = conv_bn(scope + "/shortcut", unit_in, 1, stride, depth, relu=False)
            r = conv_bn(scope + "/conv1", unit_in, 1, 1, base, relu=True)
            r = conv_bn(scope + "/conv2", r, 3, stride, base, relu=True)
            r = conv_bn(scope + "/conv3", r, 1, 1, depth, relu=False)
            x = net.add(scope + "/add", "add", inputs=[shortcut, r])
            net.add(scope + "/Relu", "relu")
            last_add = x
            x = scope + "/Relu"
            depth_in = depth
    net.feature_layer = last_add
    net.add("pool5", "global_pool")  # tf.reduce_mean over [1, 2] (global_pool=True)
    net.add("logits", "conv", kernel=1, padding="tf_same", channels=1000)
    return net


# ----------------------------------------------------------------------------------------- torchvision


def tv_alexnet() -> Net:
    net = Net("alexnet", TV + "alexnet.py alexnet")
    convs = {0: (64, 11, 4, 2), 3: (192, 5, 1, 2), 6: (384, 3, 1, 1), 8: (256, 3, 1, 1), 10: (256, 3, 1, 1)}
    pools = {2, 5, 12}
    for i in range(13):
        if i in convs:
            ch, k, s, p = convs[i]
            net.add(f"features.{i}", "conv", kernel=k, stride=s, padding=p, channels=ch)
        elif i in pools:
            net.add(f"features.{i}", "maxpool", kernel=3, stride=2)
        else:
            net.add(f"features.{i}", "relu")
    net.feature_layer = "features.12"
    net.add("avgpool", "adaptive_avgpool", output=6)  # AdaptiveAvgPool2d((6, 6)): the identity at 224 only
    net.add("classifier.0", "dropout")
    net.add("classifier.1", "linear", channels=4096)
    net.add("classifier.2", "relu")
    net.add("classifier.3", "dropout")
    net.add("classifier.4", "linear", channels=4096)
    net.add("classifier.5", "relu")
    net.add("classifier.6", "linear", channels=1000)
    return net


_VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def tv_vgg(name: str) -> Net:
    net = Net(name, TV + f"vgg.py {name} (make_layers, batch_norm=False)")
    i = 0
    for v in _VGG_CFGS[name]:
        if v == "M":
            net.add(f"features.{i}", "maxpool", kernel=2, stride=2)
            i += 1
        else:
            net.add(f"features.{i}", "conv", kernel=3, padding=1, channels=v)
            net.add(f"features.{i + 1}", "relu")
            i += 2
    net.feature_layer = net.last
    net.add("avgpool", "adaptive_avgpool", output=7)  # AdaptiveAvgPool2d((7, 7)): the identity at 224 only
    net.add("classifier.0", "linear", channels=4096)
    net.add("classifier.1", "relu")
    net.add("classifier.2", "dropout")
    net.add("classifier.3", "linear", channels=4096)
    net.add("classifier.4", "relu")
    net.add("classifier.5", "dropout")
    net.add("classifier.6", "linear", channels=1000)
    return net


_TV_RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def tv_resnet(name: str) -> Net:
    # BasicBlock: stride in conv1 (3x3); Bottleneck (v1.5): stride in conv2 (3x3). Convs have no bias.
    # The one nn.ReLU module a block calls two or three times is written as relu, relu_1, relu_2
    # (torch.fx's naming), so names stay unique.
    block, units = _TV_RESNETS[name]
    expansion = 1 if block == "basic" else 4
    cls = "BasicBlock" if block == "basic" else "Bottleneck"
    net = Net(name, TV + f"resnet.py {name} ({cls})")
    net.add("conv1", "conv", kernel=7, stride=2, padding=3, channels=64, bias=False)
    net.add("bn1", "bn")
    net.add("relu", "relu")
    x = net.add("maxpool", "maxpool", kernel=3, stride=2, padding=1)
    inplanes = 64
    for li, (n_blocks, planes) in enumerate(zip(units, (64, 128, 256, 512)), start=1):
        for bi in range(n_blocks):
            stride = 2 if (bi == 0 and li > 1) else 1
            p = f"layer{li}.{bi}."
            block_in = x
            if block == "basic":
                net.add(
                    p + "conv1",
                    "conv",
                    inputs=[block_in],
                    kernel=3,
                    stride=stride,
                    padding=1,
                    channels=planes,
                    bias=False,
                )
                net.add(p + "bn1", "bn")
                net.add(p + "relu", "relu")
                net.add(p + "conv2", "conv", kernel=3, padding=1, channels=planes, bias=False)
                r = net.add(p + "bn2", "bn")
            else:
                width = planes
                net.add(p + "conv1", "conv", inputs=[block_in], kernel=1, channels=width, bias=False)
                net.add(p + "bn1", "bn")
                net.add(p + "relu", "relu")
                net.add(p + "conv2", "conv", kernel=3, stride=stride, padding=1, channels=width, bias=False)
                net.add(p + "bn2", "bn")
                net.add(p + "relu_1", "relu")
                net.add(p + "conv3", "conv", kernel=1, channels=planes * expansion, bias=False)
                r = net.add(p + "bn3", "bn")
            if stride != 1 or inplanes != planes * expansion:
                net.add(
                    p + "downsample.0",
                    "conv",
                    inputs=[block_in],
                    kernel=1,
                    stride=stride,
                    channels=planes * expansion,
                    bias=False,
                )
                shortcut = net.add(p + "downsample.1", "bn")
            else:
                shortcut = block_in
            net.add(p + "add", "add", inputs=[r, shortcut])  # out += identity
            x = net.add(p + ("relu_1" if block == "basic" else "relu_2"), "relu")
            inplanes = planes * expansion
    net.feature_layer = x
    net.add("avgpool", "global_pool")  # AdaptiveAvgPool2d((1, 1))
    net.add("fc", "linear", channels=1000)  # nn.Linear(512 * expansion, num_classes)
    return net


def build_all() -> list[Net]:
    return [
        slim_alexnet_v2(),
        slim_vgg_16(),
        slim_mobilenet_v1("mobilenet_v1", 1.0),
        slim_mobilenet_v1("mobilenet_v1_075", 0.75),
        *(slim_resnet_v1(n) for n in (50, 101, 152, 200)),
        tv_alexnet(),
        *(tv_vgg(n) for n in ("vgg11", "vgg13", "vgg16", "vgg19")),
        *(tv_resnet(n) for n in ("resnet18", "resnet34", "resnet50", "resnet101")),
    ]


def dumps(spec: dict) -> str:
    """JSON with one layer a line, so diffs and reviews read layer by layer."""
    head = {k: v for k, v in spec.items() if k != "layers"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v)},")
    lines.append('  "layers": [')
    body = [f"    {json.dumps(layer)}" for layer in spec["layers"]]
    lines.append(",\n".join(body))
    lines.append("  ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == spec
    return text


def main() -> None:
    for net in build_all():
        path = HERE / f"{net.name}.json"
        path.write_text(dumps(net.to_dict()), encoding="utf-8")
        print(f"{path.name}: {len(net.layers)} layers, feature_layer {net.feature_layer}")


if __name__ == "__main__":
    main()
