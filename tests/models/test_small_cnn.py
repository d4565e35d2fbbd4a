"""convnet_small / convnet_wide: parameter and MAC counts by formula, shapes, and the
same numbers as a plain torch.nn.Sequential written out by hand (the oracle)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convscope.models import create_model
from convscope.models.small_cnn import cfgs


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


def reference(name: str, in_chans: int, num_classes: int) -> nn.Sequential:
    """The same network from torch.nn parts only."""
    layers, c_in = [], in_chans
    for v in cfgs[name]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(c_in, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
        c_in = v
    layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(c_in * 16, num_classes)]
    return nn.Sequential(*layers)


NAMES = sorted(cfgs)


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
