"""The blocks of rfsweep's NAS spaces as torch.nn modules: what ``rfsweep.torch.build`` instantiates for a
space of stages, and what ``rfsweep export --to pytorch`` copies into its source (from the marker line on).

Imported by :func:`rfsweep.torch.build` only (it needs torch); the exporter reads this file as text, so the
exported source and the built modules are the same classes. The layers follow rfsweep.space.blocks.expand (the
conventions of kernels/costs.py): every conv of a block is bias-free and followed by BatchNorm2d; an MBConv
is a 1x1 expansion (absent when ``mid`` is None), a depthwise k x k conv with the stride, an optional
squeeze-and-excitation (average pool, 1x1 conv with bias, ReLU, 1x1 conv with bias, hard sigmoid, times the
map), a 1x1 projection without activation, and the input added back when ``residual``; ResNet blocks use
ReLU, the stride in their k x k conv (v1.5) and a 1x1 projection shortcut with the stride when
``projection``. Every channel count arrives as an argument (rfsweep.nas.torch_modules computes them with
kernels.costs), so nothing here rounds channels a second time.

Padding is rfsweep's 'same': k' - 1 pixels in all (k' = dilation x (kernel - 1) + 1), (k' - 1) // 2
before and the rest after; an odd k' pads both sides alike inside the conv, an even one gets a ZeroPad2d.
"""

# ---- exported source: everything below this line is copied into `rfsweep export --to pytorch` output ----
from collections import OrderedDict

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "silu": nn.SiLU, "none": nn.Identity}


def same_padding(kernel_size, dilation=1):
    """rfsweep's 'same' padding as (left, right, top, bottom): (k' - 1) // 2 before, the rest after."""
    total = dilation * (kernel_size - 1)
    return (total // 2, total - total // 2, total // 2, total - total // 2)


class ConvBNAct(nn.Sequential):
    """A conv with 'same' padding, then BatchNorm2d (``bn``) and an activation (``act``: relu, relu6,
    hardswish, silu or none)."""

    def __init__(self, cin, cout, kernel_size=1, stride=1, dilation=1, groups=1, bias=False, bn=True, act="relu"):
        left, right, _, _ = same_padding(kernel_size, dilation)
        layers = []
        if left != right:
            layers.append(("pad", nn.ZeroPad2d(same_padding(kernel_size, dilation))))
        padding = left if left == right else 0
        conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=bias)
        layers.append(("conv", conv))
        if bn:
            layers.append(("bn", nn.BatchNorm2d(cout)))
        if act != "none":
            layers.append(("act", ACTIVATIONS[act]()))
        super().__init__(OrderedDict(layers))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: the map times a per-channel gate computed from its average."""

    def __init__(self, channels, mid):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(mid, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """MobileNetV2/V3 inverted residual: 1x1 expansion to ``mid`` channels (None: none, the depthwise conv
    works on the input), depthwise conv with the stride, squeeze-and-excitation on ``se`` channels (0: none),
    1x1 projection; the input is added back when ``residual``."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, dilation=1, mid=None, se=0, act="relu", residual=False):
        super().__init__()
        width = cin if mid is None else mid
        self.expand = nn.Identity() if mid is None else ConvBNAct(cin, mid, 1, act=act)
        self.depthwise = ConvBNAct(width, width, kernel_size, stride, dilation, groups=width, act=act)
        self.se = SqueezeExcite(width, se) if se else nn.Identity()
        self.project = ConvBNAct(width, cout, 1, act="none")
        self.residual = residual

    def forward(self, x):
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class Basic(nn.Module):
    """ResNet basic block: two k x k convs (the first with the stride), the input (or its 1x1 projection
    with the stride, when ``projection``) added back, then ReLU."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, dilation=1, projection=False):
        super().__init__()
        self.conv1 = ConvBNAct(cin, cout, kernel_size, stride, dilation)
        self.conv2 = ConvBNAct(cout, cout, kernel_size, 1, dilation, act="none")
        self.shortcut = ConvBNAct(cin, cout, 1, stride, act="none") if projection else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 to ``mid``, k x k with the stride, 1x1 to ``cout``, the input (or its 1x1
    projection with the stride, when ``projection``) added back, then ReLU."""

    def __init__(self, cin, cout, mid, kernel_size=3, stride=1, dilation=1, projection=False):
        super().__init__()
        self.conv1 = ConvBNAct(cin, mid, 1)
        self.conv2 = ConvBNAct(mid, mid, kernel_size, stride, dilation)
        self.conv3 = ConvBNAct(mid, cout, 1, act="none")
        self.shortcut = ConvBNAct(cin, cout, 1, stride, act="none") if projection else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class BlockNet(nn.Module):
    """A candidate of a space of stages. ``features``: the stem, the stages and the head's blocks up to its
    global pool (at the search's input size this map is the row's out_size; its rf and jump are the row's);
    ``head``: the global pool and the layers after it. ``forward`` runs both."""

    def __init__(self, features, head=()):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(features))
        self.head = nn.Sequential(OrderedDict(head))

    def forward(self, x):
        return self.head(self.features(x))
