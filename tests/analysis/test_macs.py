"""Multiply-adds against two independent counters: torch.utils.flop_counter and fvcore."""
from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from convscope.analysis import summary
from convscope.models import create_model, list_models

# torchvision's zoo as a second set of architectures (meta device: free).
TORCHVISION = ["alexnet", "vgg16", "resnet50", "googlenet", "inception_v3", "densenet121", "mobilenet_v2",
               "mobilenet_v3_small", "shufflenet_v2_x1_0", "squeezenet1_0", "efficientnet_b0", "resnext50_32x4d"]


def _flop_counter_macs(model: torch.nn.Module, size) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.empty(1, *size, device="meta"))
    total = counter.get_total_flops()
    assert total % 2 == 0  # FLOPs = 2 x MACs
    return total // 2


def _tv_meta(name: str) -> torch.nn.Module:
    kw = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    with torch.device("meta"):
        return torchvision.models.get_model(name, **kw).eval()


@pytest.mark.parametrize("name", list_models())
def test_registered_model_macs_match_flop_counter(name):
    s = summary(name)
    with torch.device("meta"):
        model = create_model(name).eval()
    assert s.total_macs == _flop_counter_macs(model, s.input_size)
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert s.total_macs == sum(r.macs for r in s.rows)


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_macs_match_flop_counter(name):
    model = _tv_meta(name)
    size = (3, 299, 299) if name == "inception_v3" else (3, 224, 224)
    s = summary(model, size)
    assert s.total_macs == _flop_counter_macs(model, size)
    # batch norm, pooling and activations never leak into the MAC column
    for row in s.rows:
        if row.kind in ("BatchNorm2d", "ReLU", "MaxPool2d", "AdaptiveAvgPool2d", "ReLU6", "Hardswish"):
            assert row.macs == 0 and row.other_ops > 0, row


@pytest.mark.parametrize("name,side", [("resnet18", 64), ("mobilenet_v2", 64), ("alexnet", 96)])
def test_macs_match_fvcore(name, side):
    from fvcore.nn import FlopCountAnalysis

    model = torchvision.models.get_model(name).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa = FlopCountAnalysis(model, torch.zeros(1, 3, side, side))
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        ops = fa.by_operator()  # fvcore counts one "flop" per multiply-add
    fv = sum(v for k, v in ops.items() if k in ("conv", "linear", "addmm", "matmul", "bmm"))
    assert summary(model, (3, side, side)).total_macs == fv


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v1", "googlenet"])
def test_our_models_macs_match_fvcore(name):
    from fvcore.nn import FlopCountAnalysis

    assert name in list_models()
    model = create_model(name).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa = FlopCountAnalysis(model, torch.zeros(1, 3, 64, 64))
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        ops = fa.by_operator()
    fv = sum(v for k, v in ops.items() if k in ("conv", "linear", "addmm", "matmul", "bmm"))
    assert summary(model, (3, 64, 64)).total_macs == fv


def test_lenet5_macs_match_fvcore():
    from fvcore.nn import FlopCountAnalysis

    model = create_model("lenet5").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa = FlopCountAnalysis(model, torch.zeros(1, 1, 28, 28))
        fa.unsupported_ops_warnings(False)
        ops = fa.by_operator()
    assert summary(model).total_macs == ops["conv"] + ops["linear"]
