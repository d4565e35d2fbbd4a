"""Receptive fields: the one layer graph against a gradient measurement and published values.

The oracle (`convscope.analysis.rf_measure`): give every weight a positive constant (so nothing
cancels), make activations linear, run max pooling as average pooling of the same geometry (max
pooling passes a gradient to one pixel per window only), and see which input pixels get a
nonzero gradient from one central output unit and the unit after it: size, jump and start.
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from convscope.analysis import graph as graphs
from convscope.analysis import summary
from convscope.analysis.receptive import Field, chain, merge
from convscope.analysis.rf_measure import measure, measure_receptive_field
from convscope.models import create_model, list_models


def measured_rf(model: nn.Module, layer: str, size: tuple[int, int, int]) -> tuple[int, int]:
    """Height and width of the input region that can change the central unit of `layer`'s output."""
    g = graphs.build(model, size)
    node = g.node_of(layer)
    h, w = g.nodes[node].shape[1:]
    (rows, cols), = measure(model, size, [(node, h // 2, w // 2)])
    return rows.last - rows.first + 1, cols.last - cols.first + 1


def tracked_rf(model: nn.Module, layer: str, size) -> tuple[int, int]:
    row = summary(model, size).row(layer)
    return tuple(row.receptive_field_hw)


def _vgg16_narrow() -> nn.Module:
    # VGG16's geometry (configuration D) with 4 channels everywhere: same receptive fields, cheap.
    cfg = [4, 4, "M", 4, 4, "M", 4, 4, 4, "M", 4, 4, 4, "M", 4, 4, 4, "M"]
    model = torchvision.models.VGG(torchvision.models.vgg.make_layers(cfg), num_classes=10, init_weights=False)
    model.classifier = nn.Linear(4 * 7 * 7, 10)
    return model


class Branchy(nn.Module):
    """Inception-style branches (1x7 then 7x1 against 5x5 dilated) joined by cat, then a residual."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.a = nn.Sequential(nn.Conv2d(4, 4, (1, 7), padding=(0, 3)), nn.Conv2d(4, 4, (7, 1), padding=(3, 0)))
        self.b = nn.Conv2d(4, 4, 5, padding=4, dilation=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        x = self.stem(x)
        x = self.pool(torch.cat([self.a(x), self.b(x)], 1))
        return x + self.res(x)


class Wrapped(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


CASES = [
    ("lenet5", lambda: create_model("lenet5"), "pool2", (1, 28, 28)),
    ("vgg16-geometry pool5", _vgg16_narrow, "features.30", (3, 224, 224)),
    ("vgg16-geometry conv5_3", _vgg16_narrow, "features.28", (3, 224, 224)),
    ("alexnet pool5", lambda: torchvision.models.alexnet(), "features.12", (3, 227, 227)),
    ("resnet18 layer2", lambda: torchvision.models.resnet18(), "layer2", (3, 160, 160)),
    ("branchy", lambda: Wrapped(Branchy()), "inner", (1, 64, 64)),
]


@pytest.mark.parametrize("label,build,layer,size", CASES, ids=[c[0] for c in CASES])
def test_tracked_receptive_field_matches_gradients(label, build, layer, size):
    """Size, jump and start of the graph's field, and the summary's size and jump, all measured."""
    model = build()
    g = graphs.build(model, size)
    f = g.field(g.node_of(layer))
    got = measure_receptive_field(model, layer, size)
    assert got == {"size": tuple(f.r), "jump": tuple(f.j), "start": tuple(f.s)}
    row = summary(model, size).row(layer)
    assert (tuple(row.receptive_field_hw), row.jump) == (got["size"], max(got["jump"]))


def test_branch_union_is_taken_per_axis():
    # 1x7 then 7x1 sees 7x7 in the stride-2 map; the dilated 5x5 sees 9x9: the cat sees 9x9 both ways.
    rf = tracked_rf(Wrapped(Branchy()), "inner", (1, 64, 64))
    a = Field().window((3, 3), (2, 2), (1, 1)).window((1, 7), (1, 1), (0, 3)).window((7, 1), (1, 1), (3, 0))
    b = Field().window((3, 3), (2, 2), (1, 1)).window((5, 5), (1, 1), (4, 4), (2, 2))
    joined = merge([a, b]).window((3, 3), (2, 2), (1, 1)).window((3, 3), (1, 1), (1, 1))
    assert rf == joined.r == (3 + 8 * 2 + 2 * 2 + 2 * 4,) * 2


@pytest.mark.parametrize("build,layer,expected", [
    (lambda: torchvision.models.alexnet(), "features.12", 195),
    (lambda: torchvision.models.vgg16(), "features.28", 196),
    (lambda: torchvision.models.vgg16(), "features.30", 212),
    (lambda: torchvision.models.resnet50(), "layer4", 427),
], ids=["alexnet-pool5", "vgg16-conv5_3", "vgg16-pool5", "resnet50-layer4"])
def test_published_receptive_fields_torchvision(build, layer, expected):
    with torch.device("meta"):
        model = build()
    rows = [r for r in summary(model, (3, 224, 224)).rows if r.name.startswith(layer)]
    assert rows[-1].receptive_field == expected


def _last_spatial_rf(name: str) -> int:
    return [r for r in summary(name).rows if not r.whole_input][-1].receptive_field


@pytest.mark.parametrize("name,expected", [("alexnet", 195), ("vgg16", 212), ("resnet50", 427),
                                           ("mobilenet_v1", 315)])
def test_published_receptive_fields_ours(name, expected):
    assert name in list_models()
    assert _last_spatial_rf(name) == expected


def _mobilenet_v1_chain() -> list[tuple[int, int, int, int]]:
    # Howard et al. 2017, Table 1: a 3x3/2 convolution, then 13 depthwise 3x3 (+ pointwise 1x1) blocks.
    strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    steps = [(3, 2, 1, 1)]
    for s in strides:
        steps += [(3, s, 1, 1), (1, 1, 0, 1)]
    return steps


def test_mobilenet_v1_chain_is_315():
    assert chain(_mobilenet_v1_chain())[-1].r == (315, 315)


def test_chain_agrees_with_geometry_module():
    from convscope import geometry

    ours = chain(_mobilenet_v1_chain())
    theirs = geometry.receptive_field(_mobilenet_v1_chain())
    assert [(f.r[0], f.j[0], f.s[0]) for f in ours] == [(t.receptive_field, t.jump, t.start) for t in theirs]


def test_se_gate_does_not_make_the_field_global():
    # the squeeze-and-excitation gate is broadcast from 1x1: the convention keeps the conv field
    assert "seresnet50" in list_models()
    assert _last_spatial_rf("seresnet50") == 427


def test_adaptive_pooling_field_matches_gradients():
    # AlexNet's avgpool (to 6x6) is an identity at 224; at 320 it pools 9x9 -> 6x6: windows of 2,
    # a fractional stride of 1.5
    model = torchvision.models.alexnet()
    assert tracked_rf(model, "avgpool", (3, 320, 320)) == measured_rf(model, "avgpool", (3, 320, 320)) == (227, 227)
    assert summary(model, (3, 320, 320)).row("avgpool").jump == 48
    # at 416 it pools 12x12 -> 6x6: plain 2x2 windows at stride 2
    with torch.device("meta"):
        meta = torchvision.models.alexnet()
    row = summary(meta, (3, 416, 416)).row("avgpool")
    assert (row.receptive_field, row.jump) == (195 + 32, 64)
