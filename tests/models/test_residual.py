"""ResNet, ResNeXt, SE-ResNet and DenseNet against torchvision and timm (random weights only)."""
from __future__ import annotations

import functools

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from timm.layers import SEModule
from torch.utils.flop_counter import FlopCounterMode

from convscope.layers import Bottleneck, SqueezeExcite
from convscope.models import create_model, import_weights

# our name -> (reference builder, exact parameter count at 1000 classes)
TORCHVISION = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
}
SE_CHANNELS = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3  # output widths of SE-ResNet-50's 16 blocks


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm non-trivial affine and running statistics, so that a swapped
    or misplaced BN tensor changes the output (the defaults 1/0/0/1 would hide it)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
            m.running_mean = 0.1 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)
    return model


def assert_same_outputs(ours: torch.nn.Module, ref: torch.nn.Module, size: int = 64) -> None:
    import_weights(ours, randomize_norms(ref))
    ours.eval()
    ref.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        a, b = ours(x), ref(x)
    assert a.shape == b.shape == (2, 1000)
    assert b.std() > 1e-3  # the comparison is not between two constant outputs
    assert (a - b).abs().max().item() < 1e-4


def macs_on_meta(name: str, size: int = 224, **kwargs) -> int:
    with torch.device("meta"):
        model = create_model(name, **kwargs).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, 3, size, size))
    return counter.get_total_flops() // 2  # FLOPs / 2 = multiply-accumulates


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_matches_torchvision(name):
    ours = create_model(name)
    ref = getattr(torchvision.models, name)(weights=None)
    assert n_params(ours) == n_params(ref) == TORCHVISION[name]
    assert_same_outputs(ours, ref)


@pytest.mark.parametrize("reduction", [4, 8, 16, 32])
def test_seresnet50_matches_timm_for_every_reduction(reduction):
    ours = create_model("seresnet50", reduction=reduction)
    # timm's seresnet50 with its SE module at ratio 1/r (rd_divisor 8 keeps C/r exact here)
    se = functools.partial(SEModule, rd_ratio=1.0 / reduction)
    ref = timm.create_model("seresnet50", pretrained=False, block_args=dict(attn_layer=se))
    assert n_params(ours) == n_params(ref)
    if reduction == 16:
        assert n_params(ours) == 28_088_024  # timm's seresnet50 as published
    assert_same_outputs(ours, ref)


@pytest.mark.parametrize("reduction", [4, 8, 16, 32])
def test_seresnet50_parameters_follow_the_se_formula(reduction):
    # SENet section 3.3 / 4: each SE block adds W1 (C/r x C) + W2 (C x C/r) and the biases,
    # i.e. 2 C^2 / r + C / r + C on top of ResNet-50's parameters
    extra = sum(2 * c * c // reduction + c // reduction + c for c in SE_CHANNELS)
    with torch.device("meta"):
        assert n_params(create_model("seresnet50", reduction=reduction)) == 25_557_032 + extra
    if reduction == 16:
        assert extra == 2_530_992  # the paper's "~2.5 million additional parameters"


def test_squeeze_excite_is_the_papers_formula():
    se = SqueezeExcite(32, reduction=8)
    for p in se.parameters():
        torch.nn.init.normal_(p)
    u = torch.randn(2, 32, 5, 7)
    z = u.mean(dim=(2, 3))                                        # squeeze: (N, C)
    w1, b1 = se.fc1.weight.flatten(1), se.fc1.bias                # (C/r, C)
    w2, b2 = se.fc2.weight.flatten(1), se.fc2.bias                # (C, C/r)
    s = torch.sigmoid(F.linear(F.relu(F.linear(z, w1, b1)), w2, b2))  # excitation
    expected = u * s[:, :, None, None]
    torch.testing.assert_close(se(u), expected)
    assert se.fc1.out_channels == 4


def test_resnet50_v15_puts_the_stride_on_the_3x3_conv():
    ours = create_model("resnet50")
    first = ours.layer2[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)
    # v1.5 is what torchvision ships: equal outputs (test_matches_torchvision) prove the
    # placement; the paper's v1 (stride on the first 1x1) has the same weights but other outputs
    v1 = create_model("resnet50", stride_in_1x1=True)
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    ref = randomize_norms(torchvision.models.resnet50(weights=None)).eval()
    import_weights(v1, ref).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (v1(x) - ref(x)).abs().max().item() > 1e-3


def test_resnet_macs_match_the_papers_table_1():
    # He et al. 2016, Table 1: 1.8, 3.6, 3.8, 7.6, 11.3 x 10^9 FLOPs (multiply-adds) at 224.
    # The paper's figures are for v1 (stride in the 1x1); v1.5 costs ~6% more at 50+ layers.
    assert macs_on_meta("resnet18") == pytest.approx(1.8e9, rel=0.03)
    assert macs_on_meta("resnet34") == pytest.approx(3.6e9, rel=0.03)
    assert macs_on_meta("resnet50", stride_in_1x1=True) == pytest.approx(3.8e9, rel=0.03)
    assert macs_on_meta("resnet101", stride_in_1x1=True) == pytest.approx(7.6e9, rel=0.03)
    assert macs_on_meta("resnet152", stride_in_1x1=True) == pytest.approx(11.3e9, rel=0.03)
    assert macs_on_meta("resnet50") == pytest.approx(4.09e9, rel=0.01)


def test_resnext50_matches_the_papers_table_1():
    # Xie et al. 2017, Table 1: ResNeXt-50 (32x4d) 25.0M parameters, 4.2 x 10^9 FLOPs
    with torch.device("meta"):
        assert n_params(create_model("resnext50_32x4d")) == pytest.approx(25.0e6, rel=0.01)
    assert macs_on_meta("resnext50_32x4d") == pytest.approx(4.2e9, rel=0.03)
    block = Bottleneck(256, 128, groups=32, base_width=4)
    assert block.conv2.groups == 32 and block.conv2.in_channels == 256  # 32 groups of 8 in stage 2


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d", "seresnet50", "densenet121"])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_small_input_trains(name, in_chans):
    model = create_model(name, num_classes=10, in_chans=in_chans, small_input=True)
    assert model.default_input_size == (in_chans, 32, 32)
    x = torch.randn(2, in_chans, 28, 28)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", ["resnet101", "resnet152", "resnet34", "densenet201"])
def test_small_input_keeps_a_spatial_map(name):
    with torch.device("meta"):
        model = create_model(name, in_chans=1, num_classes=10, small_input=True)
        feats = model.forward_features(torch.empty(1, 1, 28, 28))
        assert feats.shape[1] == model.num_features and min(feats.shape[2:]) >= 1
        assert model.forward_head(feats).shape == (1, 10)


@pytest.mark.parametrize("name,head", [("resnet18", "fc"), ("densenet121", "classifier")])
def test_reset_classifier_replaces_the_head_only(name, head):
    model = create_model(name, num_classes=10, in_chans=1, small_input=True)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(head + ".")}
    model.reset_classifier(7)
    assert getattr(model, head).out_features == 7
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 7)
    assert model.forward_head(model.forward_features(torch.randn(1, 1, 28, 28)), pre_logits=True).shape == (
        1, model.num_features)


def test_bad_input_messages():
    with pytest.raises(ValueError, match="reduction ratio r"):
        create_model("seresnet50", reduction=0)
    with pytest.raises(ValueError, match="reduction ratio r"):
        create_model("seresnet50", reduction=512)
    with pytest.raises(ValueError, match="expects 3 input channel.*has 1"):
        create_model("resnet18")(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="layer1.0.conv1.weight"):
        import_weights(create_model("resnet50"), torchvision.models.resnet34(weights=None))
    with pytest.raises(ValueError, match="did you mean.*resnet50"):
        create_model("resnet05")
