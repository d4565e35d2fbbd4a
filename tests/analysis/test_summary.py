"""The summary table: the lecture's VGG16 numbers, JSON, golden output, bad input."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torchvision

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


def _vgg16_models():
    with torch.device("meta"):
        yield "torchvision", torchvision.models.vgg16()
    if "vgg16" in list_models():
        yield "convscope", "vgg16"


@pytest.mark.parametrize("source", ["torchvision", "convscope"])
def test_vgg16_lecture_numbers(source):
    models = dict(_vgg16_models())
    if source not in models:
        pytest.skip("vgg16 is not registered yet")
    s = summary(models[source], (3, 224, 224))
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
    assert d["total_params"] == sum(p.numel() for p in create_model("lenet5").parameters()) == 63_802
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


def _golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("CONVSCOPE_UPDATE_GOLDEN"):
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text()


def test_golden_lenet5():
    _golden("lenet5", str(summary("lenet5")))


def test_golden_vgg16():
    if "vgg16" not in list_models():
        pytest.skip("vgg16 is not registered yet")
    _golden("vgg16", str(summary("vgg16")))


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
