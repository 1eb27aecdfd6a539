"""rfsweep.from_torch and rfsweep.analyze(nn.Module): through torch.onnx.export(dynamo=True) and the ONNX importer.

torch is the user's own install, never a dependency: every test here skips without torch, torchvision,
onnx and onnxscript (CI installs none of torch). The import of every torchvision classifier is marked slow
(5.5 minutes on 2 cores), as are the other full-size models: ``pytest -m torch`` runs them all.
"""

from __future__ import annotations

import pytest

import rfsweep

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from torch import nn  # noqa: E402

TRANSFORMERS = ("vit_", "swin_", "maxvit_")


def torch_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def spec_params(spec) -> int:
    return int(rfsweep.analyze(spec)["params"].sum())


@pytest.mark.slow
def test_resnet18_from_torch_is_the_zoo_spec_layer_for_layer():
    """Module names from the exporter's scopes (a ReLU module called twice: relu, relu_1), BN kept."""
    model = torchvision.models.resnet18()
    spec = rfsweep.from_torch(model)
    imported, zoo = rfsweep.analyze(spec), rfsweep.analyze("resnet18")
    assert list(imported["name"]) == list(zoo["name"])
    assert imported.drop(columns="flags").equals(zoo.drop(columns="flags"))
    assert int(imported["params"].sum()) == torch_params(model) == 11_689_512
    assert spec["name"] == "ResNet" and spec["source"].startswith("PyTorch torchvision.models.resnet.ResNet")


class Small(nn.Module):
    """Squeeze-excitation, SiLU and Hardswish, a channel split and shuffle, pixel (un)shuffle, an adaptive
    pool whose windows differ, a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.SiLU())
        self.se = torchvision.ops.SqueezeExcitation(16, 4, scale_activation=nn.Hardsigmoid)
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardswish())
        self.down = nn.PixelUnshuffle(2)
        self.mix = nn.Conv2d(64, 64, 1)
        self.up = nn.PixelShuffle(2)
        self.pool = nn.AdaptiveAvgPool2d((5, 3))
        self.fc = nn.Linear(16 * 15, 10)

    def forward(self, x):
        x = self.se(self.stem(x))
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, self.branch(b)], dim=1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # ShuffleNet's channel shuffle
        x = self.up(self.mix(self.down(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_a_small_module_with_the_new_ops():
    model = Small()
    spec = rfsweep.from_torch(model, input_size=36)
    ops = {layer["name"]: layer["op"] for layer in spec["layers"]}
    assert ops["stem.2"] == "silu" and ops["se.mul"] == "gate" and ops["se.scale_activation"] == "hardsigmoid"
    assert ops["branch.1"] == "hardswish" and ops["down"] == "space_to_depth" and ops["up"] == "depth_to_space"
    assert sorted(op for op in ops.values() if op == "slice") == ["slice", "slice"]
    assert ops["pool"] == "adaptive_avgpool" and ops["fc"] == "conv"  # Linear on the 5x3 map: a 5x3 conv
    table = rfsweep.analyze(spec)
    assert int(table["params"].sum()) == torch_params(model)
    pool = table[table["name"] == "pool"].iloc[0]
    assert pool["out_size"] == (5, 3) and pool["channels"] == 16
    assert table[table["name"] == "se.mul"].iloc[0]["flags"] == "gated"


def test_analyze_takes_a_module_and_leaves_it_as_it_was():
    model = Small().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = rfsweep.analyze(model, input_size=20)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert table.iloc[0]["out_size"] == (10, 10)


@pytest.mark.slow
def test_alexnet_at_193_keeps_its_adaptive_pool():
    """torch's own translation would be the identity at 224 and a gather that ONNX shape inference rejects at 193."""
    model = torchvision.models.alexnet()
    table = rfsweep.analyze(model, input_size=193)
    zoo = rfsweep.analyze("alexnet", input_size=193)
    row = table[table["name"] == "avgpool"].iloc[0]
    ref = zoo[zoo["name"] == "avgpool"].iloc[0]
    assert row["op"] == "adaptive_avgpool" and row["out_size"] == (6, 6)
    for col in ("jump", "rf", "center", "erf_sigma"):
        assert row[col] == ref[col]
    assert int(table["params"].sum()) == torch_params(model) == 61_100_840


def test_a_module_the_exporter_cannot_trace_is_one_line(capfd):
    class DataDependent(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(rfsweep.RFSweepError) as err:
        rfsweep.from_torch(DataDependent(), input_size=8)
    assert str(err.value).startswith(
        "field 'model': value \"DataDependent\": torch.onnx.export(dynamo=True) failed at 8x8"
    )
    assert "\n" not in str(err.value)


def classifiers() -> list[str]:
    return [n for n in torchvision.models.list_models(module=torchvision.models) if not n.startswith(TRANSFORMERS)]


@pytest.mark.slow
@pytest.mark.parametrize("name", classifiers())
def test_every_torchvision_classifier_imports_with_torchs_parameters(name):
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    size = 299 if name == "inception_v3" else 224
    assert spec_params(rfsweep.from_torch(model, input_size=size)) == torch_params(model)


@pytest.mark.slow
def test_detection_backbones():
    """Faster R-CNN's ResNet-50 body and SSD's VGG (with its L2 normalisation) import with torch's parameters;
    the FPN on top is refused: its top-down add of a nearest x2 upsample is 8 px off the lateral map."""
    from torchvision.models import detection

    faster = detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    body = faster.backbone.body
    assert spec_params(rfsweep.from_torch(body, input_size=320)) == torch_params(body)
    with pytest.raises(rfsweep.RFSweepError) as err:
        rfsweep.from_torch(faster.backbone, input_size=320)
    assert "branches are not aligned: centre (h)" in str(err.value) and "is -8" in str(err.value)
    ssd = detection.ssd300_vgg16(weights=None, weights_backbone=None).backbone
    spec = rfsweep.from_torch(ssd, input_size=300)
    assert spec_params(spec) == torch_params(ssd) == 22_943_936
    assert any(layer.get("fn") == "Div by a statistic over channels" for layer in spec["layers"])
