"""The summary table: the lecture's VGG16 numbers, JSON, golden output, bad input."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from convscope.analysis import summary
from convscope.models import create_model, list_models

GOLDEN = Path(__file__).parent / "golden"

# The lecture's VGG16 table, row by row (H x W x C): the input, 13 convolutions, 5 poolings, 3 fc.
LECTURE_VGG16 = [224 * 224 * 3,
                 224 * 224 * 64, 224 * 224 * 64, 112 * 112 * 64,
                 112 * 112 * 128, 112 * 112 * 128, 56 * 56 * 128,
                 56 * 56 * 256, 56 * 56 * 256, 56 * 56 * 256, 28 * 28 * 256,
                 28 * 28 * 512, 28 * 28 * 512, 28 * 28 * 512, 14 * 14 * 512,
                 14 * 14 * 512, 14 * 14 * 512, 14 * 14 * 512, 7 * 7 * 512,
                 4096, 4096, 1000]


def _vgg16(source: str):
    if source == "torchvision":
        with torch.device("meta"):
            return torchvision.models.vgg16()
    assert "vgg16" in list_models()  # a missing model is a failure, never a skip
    return "vgg16"


@pytest.mark.parametrize("source", ["torchvision", "convscope"])
def test_vgg16_lecture_numbers(source):
    s = summary(_vgg16(source), (3, 224, 224))
    assert sum(LECTURE_VGG16) == 15_237_608
    assert s.total_params == 138_357_544
    assert s.total_macs == 15_470_264_320  # torchvision's published 15.47 GFLOPs (their "ops" are MACs)
    assert s.total_activations == 15_237_608
    assert s.activation_bytes == 60_950_432  # ~61 MB in fp32, not the slide's ~96 MB
    stored = [r.activations for r in s.rows if r.stored]
    assert stored == LECTURE_VGG16
    convs = [r for r in s.rows if r.kind == "Conv2d"]
    assert [c.activations for c in convs[:2]] == [3_211_264, 3_211_264]
    assert (convs[0].params_no_bias, convs[0].params) == (3 * 3 * 3 * 64, 1_792)
    assert (convs[1].params_no_bias, convs[1].params) == (3 * 3 * 64 * 64, 36_928)
    text = str(s)
    assert "(3x3x3)x64 = 1,728" in text and "FLOPs = 2 x MACs" in text
    assert "138,357,544" in text and "15.47 G" in text


def test_summary_of_real_weights_matches_meta_and_leaves_model_alone():
    model = create_model("lenet5").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    real = summary(model).to_dict()
    meta = summary("lenet5").to_dict()
    assert real == meta
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_to_dict_keys_and_json():
    d = summary("lenet5").to_dict()
    json.dumps(d)
    assert {"model", "input_size", "rows", "total_params", "total_macs", "total_activations",
            "activation_bytes"} <= set(d)
    for row in d["rows"]:
        assert {"name", "kind", "output_shape", "activations", "params", "macs", "receptive_field", "jump"} <= set(row)
    model = create_model("lenet5")
    by_shape = sum(math.prod(m.weight.shape) + m.bias.numel() for m in model.modules()
                   if isinstance(m, (nn.Conv2d, nn.Linear)))  # no other layer of lenet5 has weights
    assert d["total_params"] == by_shape
    assert d["input_size"] == [1, 28, 28]
    assert d["rows"][0]["name"] == "input" and d["rows"][-1]["output_shape"] == [1, 10]


def test_rows_follow_torch_shapes():
    # each row's output shape is the shape the real module produces (forward hooks on real tensors)
    model = torchvision.models.resnet18().eval()
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, o, n=n: seen.append((n, list(o.shape))))
             for n, m in model.named_modules() if next(m.children(), None) is None]
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    rows = [(r.name.split(" (")[0], r.output_shape) for r in summary(model, (3, 64, 64)).rows
            if r.kind not in ("add_", "Input")]
    assert rows == seen


class LeNet5Harley(nn.Module):
    """LeNet-5 as the explorer's lenet5 first was (fc 120-100-10), fixed here so the golden
    table does not move when the zoo's lenet5 does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1, self.pool1 = nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)
        self.conv2, self.relu2, self.pool2 = nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)
        self.fc1, self.relu3 = nn.Linear(400, 120), nn.ReLU()
        self.fc2, self.relu4, self.dropout = nn.Linear(120, 100), nn.ReLU(), nn.Dropout(0.5)
        self.output = nn.Linear(100, 10)

    def forward(self, x):
        x = self.pool2(self.relu2(self.conv2(self.pool1(self.relu1(self.conv1(x))))))
        return self.output(self.dropout(self.relu4(self.fc2(self.relu3(self.fc1(x.flatten(1)))))))


def _num(token: str) -> int:
    return 0 if token == "-" else int(token.strip("()").replace(",", ""))


def _table_rows(text: str) -> list[dict]:
    """The layer rows of a printed table: name, kind, output, activations, params, MACs
    (read from the right: Params, MACs, Other ops, RF, Jump end each row)."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    rows = []
    for line in lines[rules[1] + 1:rules[2]]:
        t = line.split()
        rows.append({"name": t[0], "kind": t[1], "output": t[2], "activations": _num(t[3]),
                     "params": _num(t[-5]), "macs": _num(t[-4])})
    return rows


def check_against_torchinfo(text: str, model: nn.Module, input_size: tuple[int, ...]) -> None:
    """Every layer row and the totals of a printed table against torchinfo's own counts.

    torchinfo counts a bias addition as a multiply-add; the table does not (MACs of
    the products only), so torchinfo's figure less one per biased output is the oracle."""
    import torchinfo

    info = torchinfo.summary(model, (1, *input_size), verbose=0, depth=20, device="meta")
    leaves = [layer for layer in info.summary_list if layer.is_leaf_layer]
    rows = _table_rows(text)
    assert rows[0]["name"] == "input" and rows[0]["activations"] == math.prod(input_size)
    assert len(rows) - 1 == len(leaves)
    bias_adds = 0
    for row, leaf in zip(rows[1:], leaves):
        assert row["kind"] == leaf.class_name, (row, leaf)
        assert row["output"] == "x".join(map(str, leaf.output_size[1:])), (row, leaf.output_size)
        assert row["params"] == leaf.num_params, row
        bias = getattr(leaf.module, "bias", None)
        adds = math.prod(leaf.output_size[1:]) if isinstance(bias, torch.Tensor) else 0
        bias_adds += adds
        assert row["macs"] == leaf.macs - adds, (row, leaf.macs)
    assert f"Parameters: {info.total_params:,} " in text
    assert f"MACs: {info.total_mult_adds - bias_adds:,} " in text


def _golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("CONVSCOPE_UPDATE_GOLDEN"):
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text()


def test_golden_lenet5_harley():
    text = str(summary(LeNet5Harley(), (1, 28, 28)))
    check_against_torchinfo(text, LeNet5Harley(), (1, 28, 28))
    assert "Parameters: 63,802 " in text and "MACs: 418,600 " in text  # by hand: the docs' figures
    _golden("lenet5_harley", text)


def test_golden_vgg16():
    assert "vgg16" in list_models()
    text = str(summary("vgg16"))
    with torch.device("meta"):
        check_against_torchinfo(text, create_model("vgg16"), (3, 224, 224))
    _golden("vgg16", text)


def test_zoo_lenet5_table_against_torchinfo():
    check_against_torchinfo(str(summary("lenet5")), create_model("lenet5"), (1, 28, 28))


def test_input_too_small_names_layer_and_smallest_input():
    with pytest.raises(ValueError) as err:
        summary("lenet5", "1x8x8")
    msg = str(err.value)
    assert "conv2" in msg and "1x12x12" in msg
    with pytest.raises(ValueError, match="1x12x12"):  # too narrow only: the search still starts low
        summary("lenet5", "1x28x8")
    summary(create_model("lenet5", input_size=12))  # 12 really is enough (and 11 is not):
    with pytest.raises(ValueError, match="too small"):
        summary(create_model("lenet5", input_size=12), "1x11x11")


def test_input_too_small_torchvision_alexnet():
    with torch.device("meta"):
        model = torchvision.models.alexnet()
    with pytest.raises(ValueError, match=r"features\.12 \(MaxPool2d\).*3x63x63"):
        summary(model, (3, 32, 32))
    summary(model, (3, 63, 63))
    with pytest.raises(ValueError):
        summary(model, (3, 62, 62))


def test_bad_input():
    with pytest.raises(ValueError, match="unknown model 'vgg17'"):
        summary("vgg17")
    with pytest.raises(ValueError, match="3x224x224"):
        summary("lenet5", "axb")
    with pytest.raises(ValueError, match="designed for 1x28x28"):
        summary("lenet5", "1x32x32")  # fc1 was built for 28x28
