"""convnet_small / convnet_wide: parameter and MAC counts by formula, shapes, the same
numbers as a plain torch.nn.Sequential written out by hand, and a functional oracle
(torch.nn.functional only, the weights copied by hand, layer by layer).

The architectures are written out here from the module's docstring (the spec), not
read from the code's own `cfgs`, so a changed width or a lost pooling shows."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import torch.nn.functional as F

from convscope.models import create_model, list_models

# convnet_small [16, M, 32, M, 64]; convnet_wide [32, M, 64, M, 128, 128] (3x3 conv-BN-ReLU, M = 2x2 max pool)
cfgs: dict[str, list] = {
    "convnet_small": [16, "M", 32, "M", 64],
    "convnet_wide": [32, "M", 64, "M", 128, 128],
}


def widths(name: str) -> list[int]:
    return [v for v in cfgs[name] if v != "M"]


def expected_params(name: str, in_chans: int, num_classes: int, head_pool: int = 4) -> int:
    """3x3 convs without bias (9 C_in C_out) + BN (2 C_out) + fc (C k^2 * classes + classes)."""
    total, c_in = 0, in_chans
    for c in widths(name):
        total += 9 * c_in * c + 2 * c
        c_in = c
    return total + c_in * head_pool**2 * num_classes + num_classes


def expected_macs(name: str, in_chans: int, side: int, num_classes: int) -> int:
    """Convolutions: H W 9 C_in C_out at each stage's resolution; fc: C 16 * classes."""
    total, c_in = 0, in_chans
    for v in cfgs[name]:
        if v == "M":
            side //= 2
            continue
        total += side * side * 9 * c_in * v
        c_in = v
    return total + c_in * 16 * num_classes


def _cbr(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def reference(name: str, in_chans: int, num_classes: int) -> nn.Sequential:
    """The same network from torch.nn parts only, each layer written out."""
    if name == "convnet_small":
        body = [*_cbr(in_chans, 16), nn.MaxPool2d(2), *_cbr(16, 32), nn.MaxPool2d(2), *_cbr(32, 64)]
        width = 64
    else:
        body = [*_cbr(in_chans, 32), nn.MaxPool2d(2), *_cbr(32, 64), nn.MaxPool2d(2),
                *_cbr(64, 128), *_cbr(128, 128)]
        width = 128
    return nn.Sequential(*body, nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(width * 16, num_classes))


NAMES = sorted(cfgs)


def test_both_are_registered():
    assert set(NAMES) <= set(list_models())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_chans,num_classes", [(1, 10), (3, 100)])
def test_param_count_by_formula(name, in_chans, num_classes):
    model = create_model(name, in_chans=in_chans, num_classes=num_classes)
    assert sum(p.numel() for p in model.parameters()) == expected_params(name, in_chans, num_classes)


def test_documented_counts():
    # the figures in the module docstring and docs/models.md
    assert expected_params("convnet_small", 1, 10) == 33_658
    assert expected_macs("convnet_small", 1, 28, 10) == 1_929_472


@pytest.mark.parametrize("name", NAMES)
def test_macs_match_torch_flop_counter(name):
    model = create_model(name).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 28, 28))
    # FlopCounterMode counts convolutions and linear layers, 2 FLOPs per multiply-add
    assert counter.get_total_flops() == 2 * expected_macs(name, 1, 28, 10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_chans,side", [(1, 28), (3, 32), (1, 20)])
def test_shapes(name, in_chans, side):
    model = create_model(name, in_chans=in_chans, num_classes=7).eval()
    x = torch.randn(3, in_chans, side, side)
    feats = model.forward_features(x)
    pools = cfgs[name].count("M")
    assert feats.shape == (3, widths(name)[-1], side >> pools, side >> pools)
    assert model.forward_head(feats, pre_logits=True).shape == (3, model.num_features)
    assert model(x).shape == (3, 7)
    assert model.default_input_size == (in_chans, 32, 32)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [False, True])
def test_matches_plain_torch(name, train):
    torch.manual_seed(0)
    ours, ref = create_model(name, in_chans=3), reference(name, 3, 10)
    with torch.no_grad():  # the same weights in the same order (BN statistics moved off 0/1)
        for p in ours.parameters():
            p.uniform_(-0.3, 0.3)
        for m in ours.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        theirs = list(ref.state_dict().values())
        for dst, src in zip(theirs, ours.state_dict().values(), strict=True):
            dst.copy_(src)
    ours.train(train), ref.train(train)
    x = torch.randn(4, 3, 28, 28)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


def test_dropout_is_in_the_head_only():
    model = create_model("convnet_small", dropout=0.5).train()
    x = torch.randn(8, 1, 28, 28)
    feats = model.forward_features(x)
    a, b = model.forward_head(feats, pre_logits=True), model.forward_head(feats, pre_logits=True)
    assert not torch.equal(a, b) and (a == 0).float().mean() > 0.3
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_head_pool_1_is_a_global_average():
    model = create_model("convnet_wide", head_pool=1).eval()
    assert model.num_features == 128
    assert sum(p.numel() for p in model.parameters()) == expected_params("convnet_wide", 1, 10, head_pool=1)
    x = torch.randn(2, 1, 28, 28)
    feats = model.forward_features(x)
    torch.testing.assert_close(model.forward_head(feats, pre_logits=True), feats.mean((2, 3)))


def _functional(model: nn.Module, x: torch.Tensor, stages: list, *, train: bool) -> torch.Tensor:
    """The forward pass in torch.nn.functional calls; weights picked out of the model's
    state_dict by name (convS_J.conv.weight, convS_J.bn.*, fc.*)."""
    sd = model.state_dict()
    for key in stages:
        if key == "M":
            x = F.max_pool2d(x, 2, 2)
            continue
        w = sd[f"features.{key}.conv.weight"]
        x = F.conv2d(x, w, None, stride=1, padding=1)
        bn = {n: sd[f"features.{key}.bn.{n}"].clone() for n in ("weight", "bias", "running_mean", "running_var")}
        x = F.batch_norm(x, bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"],
                         training=train, momentum=0.0, eps=1e-5)
        x = F.relu(x)
    x = F.adaptive_avg_pool2d(x, 4).flatten(1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


STAGES = {"convnet_small": ["conv1_1", "M", "conv2_1", "M", "conv3_1"],
          "convnet_wide": ["conv1_1", "M", "conv2_1", "M", "conv3_1", "conv3_2"]}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("side", [28, 32])
def test_functional_oracle(name, train, side):
    torch.manual_seed(1)
    model = create_model(name, in_chans=3, num_classes=7)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.3, 0.3)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.train(train)
    x = torch.randn(3, 3, side, side)
    want = _functional(model, x, STAGES[name], train=train)
    with torch.no_grad():
        got = model(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert sorted(k for k in model.state_dict() if k.endswith("conv.weight")) == \
        sorted(f"features.{k}.conv.weight" for k in STAGES[name] if k != "M")  # no layer left out
