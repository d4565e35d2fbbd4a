"""NASNet-A: the large network against timm's `nasnetalarge`, the mobile one against the paper."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import timm  # noqa: E402  (a [dev] dependency: missing is a failure, not a skip)

from convscope.models import create_model, import_weights  # noqa: E402
from convscope.models.nasnet import (  # noqa: E402
    NASNET_A_NORMAL, NASNET_A_REDUCTION, NASNetCell, PoolSame, conv_same,
)

NASNET_A_LARGE_PARAMS = 88_753_150  # timm nasnetalarge, 1000 classes


def count_macs(model: nn.Module, size: int) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.empty(1, 3, size, size, device="meta"))
    return counter.get_total_flops() // 2  # FLOPs = 2 x multiply-adds


def test_nasnet_a_large_imports_timm_weights_and_outputs_match(calibrate_batch_norm):
    ref = timm.create_model("nasnetalarge", pretrained=False)
    calibrate_batch_norm(ref, torch.randn(2, 3, 96, 96))
    ours = import_weights(create_model("nasnet_a_large"), ref).eval()
    assert sum(p.numel() for p in ours.parameters()) == NASNET_A_LARGE_PARAMS
    assert sum(p.numel() for p in ref.parameters()) == NASNET_A_LARGE_PARAMS
    # 96: 47 -> 24 -> 12 -> 6 -> 3 (even sizes: one-sided SAME padding); 99: 49 -> 25 -> 13 -> 7 -> 4 (odd)
    for size, grid in ((96, 3), (99, 4)):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            ours_feat, ref_feat = ours.forward_features(x), ref.forward_features(x)
            ours_out, ref_out = ours.forward_head(ours_feat), ref.forward_head(ref_feat)
            other = ref.forward_features(torch.randn(1, 3, size, size))
        assert ours_feat.shape == ref_feat.shape == (1, 4032, grid, grid)
        assert (other - ref_feat).abs().max() > 0.1  # the oracle depends on its input
        assert (ours_feat - ref_feat).abs().max() < 1e-4
        assert (ours_out - ref_out).abs().max() < 1e-4


def test_nasnet_a_large_counts_match_timm_and_the_paper():
    """Zoph et al. 2018, section 4.1 (Table 2): NASNet-A (6 @ 4032) at 331x331, 88.9M, 23.8B mult-adds."""
    with torch.device("meta"):
        ours = create_model("nasnet_a_large").eval()
        ref = timm.create_model("nasnetalarge", pretrained=False).eval()
    assert ours.default_input_size == (3, 331, 331)
    macs = count_macs(ours, 331)
    assert macs == count_macs(ref, 331)
    assert abs(macs / 23.8e9 - 1) < 0.03
    assert abs(sum(p.numel() for p in ours.parameters()) / 88.9e6 - 1) < 0.03


def test_nasnet_a_mobile_matches_the_papers_mobile_setting():
    """NASNet-A (4 @ 1056) at 224x224: 5.3M parameters, 564M multiply-adds (section 4.1), within 3%."""
    with torch.device("meta"):
        model = create_model("nasnet_a_mobile").eval()
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, 224)
    assert abs(params / 5.3e6 - 1) < 0.03, params
    assert abs(macs / 564e6 - 1) < 0.03, macs
    assert model.default_input_size == (3, 224, 224) and model.num_features == 1056
    normal = [n for n in model.cell_names if n.startswith("cell_") and not n.startswith("cell_stem")]
    assert len(normal) == 12 and model.cell_names.count("reduction_cell_0") == 1  # N = 4 per stage


@pytest.mark.parametrize("size", [5, 6, 7, 8, 11, 12])
@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_same_padding_matches_timms_tensorflow_same(size, kernel_size):
    """Our TF-"SAME" stride-2 convolution and pools against timm's Conv2dSame / MaxPool2dSame /
    AvgPool2dSame, which reproduce TensorFlow's padding."""
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame

    x = torch.randn(1, 4, size, size)
    ours = conv_same(4, 4, kernel_size, stride=2, groups=4)
    ref = Conv2dSame(4, 4, kernel_size, stride=2, groups=4, bias=False)
    ref.weight.data.copy_(ours.weight.data)
    assert ours(x).shape[-1] == -(-size // 2)  # ceil(n / 2)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    if kernel_size == 3:
        assert torch.equal(PoolSame("max", 3, 2)(x), MaxPool2dSame(3, 2)(x))
        assert torch.allclose(PoolSame("avg", 3, 2)(x), AvgPool2dSame(3, 2, count_include_pad=False)(x))
        assert torch.allclose(PoolSame("avg", 3, 1)(x),
                              nn.AvgPool2d(3, 1, padding=1, count_include_pad=False)(x))


def test_cells_follow_figure_4_widths():
    """A normal cell concatenates h_{i-1} and its five blocks (6C); a reduction cell four blocks (4C)
    at half the size; a first cell after a reduction halves h_{i-1} by factorised reduction."""
    normal = NASNetCell(NASNET_A_NORMAL, 8, cur_in=24, prev_in=12, prev_mode="reduce")
    out = normal(torch.randn(2, 24, 6, 6), torch.randn(2, 12, 12, 12))
    assert out.shape == (2, 48, 6, 6)
    reduction = NASNetCell(NASNET_A_REDUCTION, 8, cur_in=48, prev_in=48, prev_mode="conv")
    assert reduction(out, out).shape == (2, 32, 3, 3)
    with pytest.raises(ValueError, match="prev_mode"):
        NASNetCell(NASNET_A_NORMAL, 8, cur_in=24, prev_in=12, prev_mode="pool")


@pytest.mark.parametrize("name, in_chans", [("nasnet_a_mobile", 1), ("nasnet_a_mobile", 3), ("nasnet_a_large", 1)])
def test_small_input_28x28_forward_and_backward(name, in_chans):
    model = create_model(name, num_classes=10, in_chans=in_chans, small_input=True)
    assert model.default_input_size == (in_chans, 32, 32)
    features = model.forward_features(torch.randn(2, in_chans, 28, 28))
    assert features.shape == (2, model.num_features, 2, 2)  # 28 -> 14 -> 7 -> 4 -> 2
    out = model.forward_head(features)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing[:3]}"
    assert model(torch.randn(1, in_chans, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", ["nasnet_a_mobile", "nasnet_a_large"])
def test_reset_classifier_replaces_the_head_only(name):
    with torch.device("meta"):
        model = create_model(name)
        body = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("last_linear")}
        model.reset_classifier(5)
        after = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("last_linear")}
    assert after == body
    assert model.last_linear.out_features == 5 and model.last_linear.in_features == model.num_features


def test_wrong_channel_count_is_a_clear_error():
    model = create_model("nasnet_a_mobile", in_chans=3, num_classes=10, small_input=True)
    with pytest.raises(ValueError, match=r"3 input channel.*has 1"):
        model(torch.randn(1, 1, 28, 28))
