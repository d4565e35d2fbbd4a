"""The one layer graph: receptive fields (size, jump, start) against a gradient measurement on
every zoo model, the per-layer facts the explorer sends, and one engine for summary/units/explorer.

The oracle is `convscope.analysis.rf_measure`: on a copy with positive weights, linear
activations and max pooling run as average pooling, the input pixels with a non-zero gradient
of a unit are the pixels it sees. Each sampled unit's measured span of rows and of columns must
equal the span its field (r, j, s) predicts, cut to the input; the corner units, the unit after
the first and the centre unit together pin down size, jump and start wherever the input is big
enough to show an edge of the field.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.analysis import graph as graphs
from convscope.analysis import summary
from convscope.analysis.layer_facts import ACTIVATIONS
from convscope.analysis.receptive import Field
from convscope.analysis.rf_measure import Span, measure, measure_receptive_field, predicted
from convscope.models import create_model, list_models

SMALL = 20        # a model with at most this many spatial layers is checked at every one
CAP = 64          # measure at min(native, CAP) pixels (but never below what the model accepts)
# Inputs the zoo models need: a fixed-size classifier head takes its native size only.
NATIVE_ONLY = {"lenet5", "lenet5_harley", "convnet_small", "convnet_wide"}


def _size(name: str) -> tuple[int, int, int]:
    from convscope.analysis.summary import _smallest_input

    with torch.device("meta"):
        model = create_model(name)
    c, h, w = model.default_input_size
    if name in NATIVE_ONLY:
        return (c, h, w)
    side = max(_smallest_input(model, (c, h, w)) or h, min(h, CAP))
    return (c, side, side)


def _sample(g: graphs.LayerGraph) -> list[graphs.GraphNode]:
    """Every spatial node of a small graph; else the first, middle and last, the first, middle and
    last join (add/concat), and the first node of each padding rule (TF-same, explicit pad)."""
    # a unary elementwise node (activation, batch norm, dropout) has its input's field: skip it
    spatial = [n for n in g.nodes.values() if n.kind not in ("input", "bn", "layout", *ACTIVATIONS)
               and len(n.shape) == 3 and not n.field.whole]
    if len(spatial) <= SMALL:
        return spatial
    joins = [n for n in spatial if n.kind in ("add", "concat", "mul")]
    special = [next((n for n in spatial if pred(n)), None) for pred in (
        lambda n: n.facts.get("padding_mode") == "same_tf", lambda n: n.kind == "pad",
        lambda n: n.facts.get("adaptive"), lambda n: n.facts.get("ceil_mode"))]
    picks = [spatial[0], spatial[len(spatial) // 2], spatial[-1]] + special
    if joins:
        picks += [joins[0], joins[len(joins) // 2]]
    return list({n.name: n for n in picks if n is not None}.values())


def _units(node: graphs.GraphNode) -> list[tuple[str, int, int]]:
    h, w = node.shape[1:]
    cells = {(0, 0), (min(1, h - 1), min(1, w - 1)), (h // 2, w // 2), (h - 1, w - 1)}
    return [(node.name, y, x) for y, x in sorted(cells)]


def _expected(g: graphs.LayerGraph, name: str, y: int, x: int, size) -> tuple[Span, Span] | None:
    """What the field predicts for unit (y, x) of node `name`; a unit an explicit pad added (a row
    of zeros, nasnet's shifted path) reads no pixel at all."""
    node = g.nodes[name]
    if node.kind == "pad":
        left, _, top, _ = node.facts["pad"]
        src = g.nodes[node.inputs[0]].shape[1:]
        if not (0 <= y - top < src[0] and 0 <= x - left < src[1]):
            return None
    return predicted(node.field, y, x, size[1:], node.reach)


# The biggest members of a family: the same blocks as a smaller member (densenet121, inception_v4,
# nasnet_a_mobile, resnet50, resnext50_32x4d), and VGG with batch norm (the geometry of VGG without
# it), at several times the cost; still run by `make test` (marked slow, never skipped).
HEAVY = {"densenet161", "densenet169", "densenet201", "inception_resnet_v2", "nasnet_a_large", "resnet101",
         "resnet152", "resnext101_32x8d", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in list_models()])
def test_fields_equal_the_gradient_measurement_on_every_zoo_model(name):
    size = _size(name)
    torch.manual_seed(0)
    model = create_model(name).eval()
    g = graphs.build(model, size)
    nodes = _sample(g)
    assert nodes, f"{name}: no spatial node at {size}"
    units = [u for n in nodes for u in _units(n)]
    got = measure(model, size, units)
    want = [_expected(g, node, y, x, size) for node, y, x in units]
    wrong = [(u, m, p, g.field(u[0])) for u, m, p in zip(units, got, want) if m != p]
    assert not wrong, f"{name} at {size}: {len(wrong)} of {len(units)} units differ, e.g. {wrong[:2]}"
    # the measurement is not blind: the first node's units see less than the whole input, and
    # a unit sees nothing only where its window lies in the padding
    whole = (Span(0, size[1] - 1), Span(0, size[2] - 1))
    assert any(m != whole for m in got[:4]), f"{name}: every measured unit sees the whole input"
    assert sum(m is None for m in got) <= len(got) // 4


class Offset(nn.Module):
    """Two branches of one size whose windows do not share a centre: a 3x3 conv padded 1 on
    each side, and a 3x3 conv after a pad of 2 at the bottom/right only (one pixel later)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.a = nn.Conv2d(2, 2, 3, padding=1)
        self.pad = nn.ZeroPad2d((0, 2, 0, 2))
        self.b = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        x = self.stem(x)
        return self.a(x) + self.b(self.pad(x))


def test_the_join_of_offset_branches_is_the_hull_of_their_windows():
    g = graphs.build(Offset(), (1, 32, 32))
    add = next(n for n in g.nodes.values() if n.kind == "add")
    # stem: r 3, j 2, s 0. a: r 7, s 0 (pad 1 before). b: r 7, s 2 (no pad before: one stem unit later)
    # hull of [-3, 3] and [-1, 5]: [-3, 5], 9 pixels, centre 1
    assert g.field(add.inputs[0]) == Field((7, 7), (2, 2), (0.0, 0.0))
    assert g.field(add.inputs[1]) == Field((7, 7), (2, 2), (2.0, 2.0))
    assert g.field(add.name) == Field((9, 9), (2, 2), (1.0, 1.0))
    got = measure_receptive_field(Offset(), add.name, (1, 32, 32))
    assert got == {"size": (9, 9), "jump": (2, 2), "start": (1.0, 1.0)}


class SamePad(nn.Module):
    """A TF-"SAME" strided conv (the nasnet protocol: `same_padding(hw)`) on an even input:
    the odd pixel of padding goes after, so the field's start moves by half a pixel."""

    def __init__(self) -> None:
        super().__init__()
        from convscope.models.nasnet import Conv2dSame

        self.conv = Conv2dSame(1, 2, 4, stride=2, bias=False)
        self.conv2 = Conv2dSame(2, 2, 3, stride=2, bias=False)

    def forward(self, x):
        return self.conv2(self.conv(x))


def test_tf_same_padding_is_read_from_the_module_and_matches_gradients():
    g = graphs.build(SamePad(), (1, 20, 20))
    conv = next(n for n in g.nodes.values() if n.module == "conv")
    # n 20, k 4, s 2: out 10, total (10 - 1) 2 + 4 - 20 = 2: one before, one after
    assert conv.facts["padding"] == [1, 1, 1, 1] and conv.facts["padding_mode"] == "same_tf"
    conv2 = next(n for n in g.nodes.values() if n.module == "conv2")
    # n 10, k 3, s 2: out 5, total (5 - 1) 2 + 3 - 10 = 1: none before, one after
    assert conv2.facts["padding"] == [0, 1, 0, 1] and conv2.facts["pad_before"] == [0, 0]
    x = torch.randn(1, 1, 20, 20)
    m = SamePad()
    want = F.conv2d(F.pad(F.conv2d(F.pad(x, (1, 1, 1, 1)), m.conv.weight, stride=2), (0, 1, 0, 1)),
                    m.conv2.weight, stride=2)
    torch.testing.assert_close(m(x), want)
    # conv: r 4, j 2, s 1.5 - 1 = 0.5; conv2: r 4 + 2 * 2 = 8, j 4, s 0.5 + 1 * 2 = 2.5
    assert g.field(conv2.name) == Field((8, 8), (4, 4), (2.5, 2.5))
    assert measure_receptive_field(m, "conv2", (1, 20, 20)) == {"size": (8, 8), "jump": (4, 4),
                                                                "start": (2.5, 2.5)}


def test_a_max_pool_is_measured_as_its_whole_window():
    # with real max pooling the gradient reaches one pixel per window; the oracle runs it as an
    # average of the same geometry, so the unit's 3 x 3 window (r 3 + 2 = 5 after the conv) shows
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True))
    got = measure_receptive_field(model, "1", (1, 21, 21))
    assert got == {"size": (5, 5), "jump": (2, 2), "start": (0.0, 0.0)}
    assert graphs.build(model, (1, 21, 21)).nodes["_1"].field == Field((5, 5), (2, 2), (0.0, 0.0))


def test_summary_units_and_explorer_read_the_same_fields():
    from convscope.units.target import layer_geometry
    from convscope.web.graph import Graph

    model = create_model("nasnet_a_mobile").eval()
    size = (3, 96, 96)
    g = graphs.build(model, size)
    by_module = {n.module: n.field for n in g.nodes.values() if n.module}
    rows = {r.name: r for r in summary(model, size).rows}
    fields, _ = layer_geometry(model, size)
    checked = 0
    for name, field in fields.items():
        assert field == by_module[name], name
        row = rows[name]
        assert (row.receptive_field, row.jump) == (max(field.r), max(field.j)), name
        checked += 1
    assert checked > 100
    explorer = Graph(model)
    from convscope.capture import capture_graph

    _, values = capture_graph(explorer.gm, torch.zeros(1, *size))
    for layer in explorer.build(values, size):
        node = g.nodes[explorer.shown[layer["name"]]]
        if not layer["whole_input"]:
            assert (layer["rf"], layer["jump"], layer["start"]) == (
                [float(v) for v in node.field.r], [float(v) for v in node.field.j], [float(v) for v in node.field.s])


def test_summary_keeps_its_pinned_numbers():
    # Araujo et al.'s values: AlexNet pool5 195, VGG16 pool5 212, ResNet-50 427, jumps 32 / 32 / 32
    for name, layer, rf, jump in [("alexnet", "features.pool5", 195, 32), ("vgg16", "features.pool5", 212, 32),
                                  ("resnet50", "layer4.2.add", 427, 32)]:
        row = summary(name).row(layer)
        assert (row.receptive_field, row.jump) == (rf, jump), name


class Facts(nn.Module):
    """One of each fact the page needs: a folded LeakyReLU(0.2), a ceil-mode max pool, an
    average pool that leaves its padding out with a divisor override, an adaptive pool that is
    not global, an activation with two readers (not folded), a TF-same strided conv."""

    def __init__(self) -> None:
        super().__init__()
        from convscope.models.nasnet import Conv2dSame

        self.conv = nn.Conv2d(1, 4, 3, padding=1, dilation=1, groups=1)
        self.act = nn.LeakyReLU(0.2)
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False, divisor_override=None)
        self.avg2 = nn.AvgPool2d(2, divisor_override=3)
        self.same = Conv2dSame(4, 4, 3, stride=2, groups=4, bias=False)
        self.gate = nn.Sigmoid()
        self.adapt = nn.AdaptiveAvgPool2d(2)

    def forward(self, x):
        x = self.avg(self.pool(self.act(self.conv(x))))
        s = self.same(self.avg2(x))
        return self.adapt(self.gate(s) * s)  # `same` has two readers: the sigmoid stays a node


def test_every_layer_dict_carries_the_facts_the_page_needs():
    from convscope.capture import capture_graph
    from convscope.web.graph import Graph

    model = Facts().eval()
    explorer = Graph(model)
    _, values = capture_graph(explorer.gm, torch.zeros(1, 1, 23, 23))
    layers = {layer["name"]: layer for layer in explorer.build(values, (1, 23, 23))}
    conv = layers["conv"]
    assert (conv["activation"], conv["negative_slope"]) == ("leakyrelu", 0.2)
    assert (conv["padding"], conv["dilation"], conv["groups"], conv["padding_mode"]) == ([1, 1], [1, 1], 1, "zeros")
    assert layers["pool"]["ceil_mode"] is True and layers["pool"]["shape"] == [4, 11, 11]
    assert (layers["avg"]["count_include_pad"], layers["avg"]["divisor_override"]) == (False, None)
    assert layers["avg2"]["divisor_override"] == 3 and layers["avg2"]["count_include_pad"] is True
    same = layers["same"]
    # input 5 x 5, k 3, s 2: 3 outputs, (3 - 1) 2 + 3 - 5 = 2 pixels of padding: one before, one after
    assert (same["padding_mode"], same["padding"], same["pad_before"]) == ("same_tf", [1, 1, 1, 1], [1, 1])
    assert same["depthwise"] is True and same["groups"] == 4
    assert layers["gate"]["kind"] == "sigmoid" and layers["gate"]["activation"] is None  # two readers
    adapt = layers["adapt"]
    assert (adapt["adaptive"], adapt["kernel"], adapt["stride"], adapt["global"]) == (True, [2, 2], [1.5, 1.5], False)
    for layer in layers.values():  # every key the page reads today
        assert {"name", "kind", "inputs", "shape", "activation", "folded", "kernel", "stride", "padding",
                "dilation", "groups", "rf", "jump", "start", "whole_input", "op", "module"} <= set(layer) or \
            layer["name"] == "input"
