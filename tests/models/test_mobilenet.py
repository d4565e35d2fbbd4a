"""MobileNet-V1 against timm's mobilenetv1_100 (random weights) and the paper's Tables 1 and 6."""
from __future__ import annotations

import pytest
import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convscope.layers import DepthwiseSeparable
from convscope.models import create_model, import_weights


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, so a dw/pw or bn1/bn2 mix-up in the key mapping shows."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
            m.running_mean = 0.1 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)
    return model


def outputs_after_import(ours: nn.Module, ref: nn.Module, size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    import_weights(ours, randomize_norms(ref))
    x = 3 * torch.randn(2, 3, size, size)  # large enough that some activations pass 6 (ReLU6 vs ReLU)
    with torch.no_grad():
        return ours.eval()(x), ref.eval()(x)


def macs_on_meta(**kwargs) -> int:
    with torch.device("meta"):
        model = create_model("mobilenet_v1", **kwargs).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, 3, 224, 224))
    return counter.get_total_flops() // 2  # FLOPs / 2 = multiply-accumulates


def test_matches_timm_mobilenetv1_100():
    ours = create_model("mobilenet_v1")
    ref = timm.create_model("mobilenetv1_100", pretrained=False)
    assert n_params(ours) == n_params(ref) == 4_231_976
    a, b = outputs_after_import(ours, ref)
    assert b.std() > 1e-3
    assert (a - b).abs().max().item() < 1e-4


def test_paper_relu_matches_timm_built_with_relu_and_differs_from_relu6():
    ours = create_model("mobilenet_v1", act="relu")
    ref = timm.create_model("mobilenetv1_100", pretrained=False, act_layer=nn.ReLU)
    a, b = outputs_after_import(ours, ref)
    assert (a - b).abs().max().item() < 1e-4
    relu6 = create_model("mobilenet_v1")  # timm's default activation, the same weights
    relu6.load_state_dict(ours.state_dict())
    torch.manual_seed(0)
    x = 3 * torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert (relu6.eval()(x) - ours(x)).abs().max().item() > 1e-3


def test_reference_key_mapping():
    key = create_model("mobilenet_v1").reference_key
    assert key("stem.conv.weight") == "conv_stem.weight"
    assert key("stem.bn.running_var") == "bn1.running_var"
    assert key("blocks.ds1.dw.conv.weight") == "blocks.0.0.conv_dw.weight"
    assert key("blocks.ds1.pw.bn.bias") == "blocks.0.0.bn2.bias"
    assert key("blocks.ds3.dw.bn.weight") == "blocks.1.1.bn1.weight"
    assert key("blocks.ds11.pw.conv.weight") == "blocks.3.5.conv_pw.weight"
    assert key("blocks.ds13.pw.bn.num_batches_tracked") == "blocks.4.1.bn2.num_batches_tracked"
    assert key("fc.bias") == "classifier.bias"


def test_body_reads_as_table_1():
    model = create_model("mobilenet_v1")
    assert model.stem.conv.kernel_size == (3, 3) and model.stem.conv.stride == (2, 2)
    blocks = list(model.blocks.children())
    assert len(blocks) == 13 and all(isinstance(b, DepthwiseSeparable) for b in blocks)
    strides = [b.dw.conv.stride[0] for b in blocks]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert all(b.dw.conv.groups == b.dw.conv.in_channels for b in blocks)  # depthwise
    assert [b.pw.conv.out_channels for b in blocks][-1] == 1024 == model.num_features
    with torch.device("meta"):
        assert model.to("meta").forward_features(torch.empty(1, 3, 224, 224)).shape == (1, 1024, 7, 7)


# Howard et al. 2017, Table 6 (width multiplier): million parameters, million multiply-adds at 224
TABLE_6 = {1.0: (4.2, 569), 0.75: (2.6, 325), 0.5: (1.3, 149), 0.25: (0.5, 41)}


@pytest.mark.parametrize("alpha", sorted(TABLE_6))
def test_width_multiplier_matches_table_6(alpha):
    params_m, macs_m = TABLE_6[alpha]
    with torch.device("meta"):
        model = create_model("mobilenet_v1", width_multiplier=alpha)
    assert n_params(model) / 1e6 == pytest.approx(params_m, abs=0.05)  # the table rounds to 0.1M
    assert macs_on_meta(width_multiplier=alpha) / 1e6 == pytest.approx(macs_m, rel=0.01)
    assert model.num_features == int(1024 * alpha)


def test_width_multiplier_125_matches_timm_mobilenetv1_125():
    with torch.device("meta"):
        ours = create_model("mobilenet_v1", width_multiplier=1.25)
        ref = timm.create_model("mobilenetv1_125", pretrained=False)
    assert n_params(ours) == n_params(ref)


@pytest.mark.parametrize("alpha", [0.25, 1.0])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_small_input_trains(alpha, in_chans):
    model = create_model("mobilenet_v1", num_classes=10, in_chans=in_chans, small_input=True,
                         width_multiplier=alpha)
    assert model.default_input_size == (in_chans, 32, 32)
    out = model(torch.randn(2, in_chans, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_reset_classifier_replaces_the_head_only():
    model = create_model("mobilenet_v1", num_classes=10, in_chans=1, small_input=True)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    model.reset_classifier(3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 3)


def test_bad_input_messages():
    with pytest.raises(ValueError, match="act must be one of"):
        create_model("mobilenet_v1", act="gelu")
    with pytest.raises(ValueError, match="width_multiplier"):
        create_model("mobilenet_v1", width_multiplier=0)
    with pytest.raises(ValueError, match="conv_stem.weight"):
        import_weights(create_model("mobilenet_v1", width_multiplier=0.5),
                       timm.create_model("mobilenetv1_100", pretrained=False))
