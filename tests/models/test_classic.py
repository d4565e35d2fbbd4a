"""The classic networks (LeNet, AlexNet, ZFNet, VGG, GoogLeNet) against torchvision
(random weights, nothing downloaded) and against the papers' own figures."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convscope.layers import Inception, InceptionNaive
from convscope.models import create_model, import_weights
from convscope.models.googlenet import INCEPTIONS, GoogLeNetOutputs, googlenet_loss

# name -> (exact parameter count of torchvision's builder for 1000 classes, test input side)
TORCHVISION = {
    "alexnet": (61_100_840, 64),
    "vgg11": (132_863_336, 32),
    "vgg13": (133_047_848, 32),
    "vgg16": (138_357_544, 32),
    "vgg19": (143_667_240, 32),
    "vgg11_bn": (132_868_840, 32),
    "vgg13_bn": (133_053_736, 32),
    "vgg16_bn": (138_365_992, 32),
    "vgg19_bn": (143_678_248, 32),
    "googlenet": (13_004_888, 64),  # with the two auxiliary heads, as googlenet(weights=None) builds it
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs(model: nn.Module, size: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass on the meta device (FLOPs / 2)."""
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, *size, device="meta"))
    return counter.get_total_flops() // 2


def torchvision_model(name: str, **kwargs) -> nn.Module:
    with warnings.catch_warnings():  # googlenet's "init_weights will change" FutureWarning
        warnings.simplefilter("ignore", FutureWarning)
        return getattr(torchvision.models, name)(weights=None, **kwargs)


def random_reference(name: str, **kwargs) -> nn.Module:
    """torchvision's model with `randomize`d weights (built on meta first: one init, not two)."""
    with torch.device("meta"):
        ref = torchvision_model(name, **kwargs)
    return randomize(ref.to_empty(device="cpu"))


def randomize(model: nn.Module) -> nn.Module:
    """Random weights that keep the signal alive, and non-trivial BN statistics.

    torchvision's GoogLeNet init (N(0, 0.01) everywhere) shrinks the signal to nothing:
    its output is the fc bias whatever the input, so two nets would agree even with
    misplaced weights. He-init convolutions and linears keep every layer in play, and
    random BN statistics stop a fresh BN (the identity in eval mode) hiding a misfit.
    """
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = (6 / m.weight[0].numel()) ** 0.5  # He uniform: variance 2 / fan_in
            m.weight.data.uniform_(-bound, bound)
            if m.bias is not None:
                m.bias.data.uniform_(-0.1, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def ours_from(name: str, ref: nn.Module, **kwargs) -> nn.Module:
    """Our model with the reference's weights; built on meta so no time goes into our own init."""
    with torch.device("meta"):
        ours = create_model(name, **kwargs)
    return import_weights(ours.to_empty(device="cpu"), ref)


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameter_count_matches_torchvision(name):
    expected, _ = TORCHVISION[name]
    with torch.device("meta"):
        assert n_params(create_model(name)) == n_params(torchvision_model(name)) == expected


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_weights_import_from_torchvision_and_outputs_match(name):
    _, side = TORCHVISION[name]
    ref = random_reference(name).eval()
    ours = ours_from(name, ref).eval()
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
        head = ours.forward_head(ours.forward_features(x))
    assert got.shape == (2, 1000)
    scale = expected.abs().max()
    assert (expected[0] - expected[1]).abs().max() > 0.01 * scale, "the output must depend on the input"
    assert (got - expected).abs().max() < 1e-4
    assert torch.equal(head, got)


def test_googlenet_train_mode_returns_the_aux_outputs_like_torchvision():
    ref = random_reference("googlenet").train()
    ours = ours_from("googlenet", ref).train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(7)  # same dropout masks: both draw them in the order aux1, aux2, main
    expected = ref(x)
    torch.manual_seed(7)
    got = ours(x)
    assert isinstance(got, GoogLeNetOutputs) and got._fields == ("logits", "aux_logits2", "aux_logits1")
    for ours_t, ref_t in zip(got, expected):
        assert ours_t.shape == (2, 1000)
        assert (ours_t - ref_t).abs().max() < 1e-4
    target = torch.tensor([3, 5])
    loss = F.cross_entropy(got.logits, target) + 0.3 * (
        F.cross_entropy(got.aux_logits1, target) + F.cross_entropy(got.aux_logits2, target))
    assert torch.allclose(googlenet_loss(got, target), loss)
    assert torch.allclose(googlenet_loss(got.logits, target), F.cross_entropy(got.logits, target))


def test_googlenet_transform_input_matches_torchvision():
    ref = random_reference("googlenet", transform_input=True).eval()
    ours = ours_from("googlenet", ref, transform_input=True).eval()
    plain = ours_from("googlenet", ref).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max() < 1e-4
        assert (plain(x) - ref(x)).abs().max() > 1e-4  # the transform does change the input
    with pytest.raises(ValueError, match="in_chans=3, got 1"):
        create_model("googlenet", in_chans=1, transform_input=True)


def test_googlenet_without_aux_heads_is_torchvisions_pretrained_size():
    with torch.device("meta"):
        assert n_params(create_model("googlenet", aux_logits=False)) == 6_624_904  # GoogLeNet_Weights meta


def test_import_from_another_architecture_names_the_misfit_tensor():
    with torch.device("meta"):  # the error comes from names and shapes only
        ref, ours = torchvision_model("vgg11"), create_model("vgg13")
    # vgg13's second conv (features.conv1_2 -> features.2) is a pooling layer in vgg11
    with pytest.raises(ValueError, match=r"'features\.conv1_2\.weight' .* no counterpart 'features\.2\.weight'"):
        import_weights(ours, ref)


# --- AlexNet as the 2012 paper draws it ---------------------------------------------------------


def test_alexnet_paper_two_gpu_and_one_tower_counts():
    with torch.device("meta"):
        two_gpu = create_model("alexnet_paper")
        one_tower = create_model("alexnet_paper", groups=1)
        # section 3.5: conv2's kernels are 5x5x48 (half of conv1's 96 maps, one GPU's share)
        assert tuple(two_gpu.features.conv2.weight.shape) == (256, 48, 5, 5)
        assert tuple(two_gpu.features.conv3.weight.shape) == (384, 256, 3, 3)  # conv3 sees both GPUs
        assert tuple(two_gpu.features.conv4.weight.shape) == (384, 192, 3, 3)
        assert n_params(two_gpu) == 60_965_224  # "60 million parameters" (abstract)
        assert n_params(one_tower) == 62_378_344
        assert two_gpu.default_input_size == (3, 227, 227)
        # the lecture's 1.1 billion multiply-adds for the one-tower net at 227x227 (measured: 1.135G)
        assert abs(macs(one_tower.eval(), (3, 227, 227)) / 1.1e9 - 1) < 0.05


def test_alexnet_paper_layer_order_and_shapes():
    """LRN after the ReLU of conv1 and conv2, then overlapping 3x3/2 pooling (sections 3.3, 3.4)."""
    with torch.device("meta"):
        model = create_model("alexnet_paper").eval()
        names = list(model.features._modules)
        assert names[:8] == ["conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2"]
        sizes = {}
        x = torch.empty(1, 3, 227, 227)
        for name, layer in model.features.named_children():
            x = layer(x)
            sizes[name] = tuple(x.shape[1:])
    assert sizes["conv1"] == (96, 55, 55) and sizes["pool1"] == (96, 27, 27)
    assert sizes["pool2"] == (256, 13, 13) and sizes["pool5"] == (256, 6, 6)
    assert isinstance(model.features.pool1, nn.MaxPool2d) and model.features.pool1.kernel_size == 3
    norm = model.features.norm1
    assert (norm.k, norm.size, norm.alpha, norm.beta, norm.convention) == (2.0, 5, 1e-4, 0.75, "paper")


def test_alexnet_paper_grouped_conv_is_two_towers():
    """groups=2 is the two-GPU split: each half of conv4's kernels sees only its GPU's half of conv3's maps."""
    conv4 = create_model("alexnet_paper").features.conv4
    x = torch.randn(1, 384, 13, 13)
    w, b = conv4.weight, conv4.bias
    towers = [F.conv2d(x[:, g * 192:(g + 1) * 192], w[g * 192:(g + 1) * 192], b[g * 192:(g + 1) * 192], padding=1)
              for g in range(2)]
    with torch.no_grad():
        assert torch.allclose(conv4(x), torch.cat(towers, 1), atol=1e-5)


def test_alexnet_paper_rejects_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="groups=5 must divide conv2's 96 input and 256 output"):
        create_model("alexnet_paper", groups=5)


# --- ZFNet --------------------------------------------------------------------------------------


def _count(convs: list[tuple[int, int, int]], fcs: list[tuple[int, int]]) -> int:
    """Parameters from a hand-written layer table: (in, out, kernel) convs and (in, out) fcs, with biases."""
    return sum(i * o * k * k + o for i, o, k in convs) + sum(i * o + o for i, o in fcs)


@pytest.mark.parametrize("widths", [(512, 1024, 512), (384, 384, 256)])
def test_zfnet_counts_and_figure_3_sizes(widths):
    w3, w4, w5 = widths
    expected = _count([(3, 96, 7), (96, 256, 5), (256, w3, 3), (w3, w4, 3), (w4, w5, 3)],
                      [(w5 * 36, 4096), (4096, 4096), (4096, 1000)])
    with torch.device("meta"):
        model = create_model("zfnet", widths=widths).eval()
        sizes = {}
        x = torch.empty(1, 3, 224, 224)
        for name, layer in model.features.named_children():
            x = layer(x)
            sizes[name] = x.shape[-1]
    assert n_params(model) == expected  # 107,627,624 with the lecture's widths
    # Zeiler & Fergus 2013, Figure 3: 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6
    assert [sizes[k] for k in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool5")] == [110, 55, 26, 13, 13, 6]
    assert list(model.features._modules)[2:4] == ["pool1", "norm1"]  # pool, then contrast norm


# --- VGG: Table 2's rounded parameter counts ----------------------------------------------------


@pytest.mark.parametrize("name,millions", [("vgg11", 133), ("vgg13", 133), ("vgg16", 138), ("vgg19", 144)])
def test_vgg_counts_match_table_2(name, millions):
    with torch.device("meta"):
        assert round(n_params(create_model(name)) / 1e6) == millions


def test_vgg_layers_carry_caffe_names():
    with torch.device("meta"):
        model = create_model("vgg16_bn")
    names = list(model.features._modules)
    assert names[:7] == ["conv1_1", "bn1_1", "relu1_1", "conv1_2", "bn1_2", "relu1_2", "pool1"]
    assert names[-1] == "pool5" and "conv5_3" in names and "conv5_4" not in names


# --- Inception modules --------------------------------------------------------------------------


def test_naive_inception_is_the_lectures_854m_module():
    """28x28x256 in; 128 1x1, 192 3x3, 96 5x5 and a 3x3 pool: 672 channels out, 854M multiply-adds."""
    block = InceptionNaive(256, 128, 192, 96)
    x = torch.randn(1, 256, 28, 28)
    assert block(x).shape == (1, 672, 28, 28) and block.out_channels == 672
    expected = 28 * 28 * 256 * (128 * 1 + 192 * 9 + 96 * 25)
    assert macs(block.to("meta"), (256, 28, 28)) == expected
    assert round(expected / 1e6) == 854


def test_bottleneck_inception_cuts_the_cost():
    """Figure 2b with 64-wide reductions: 480 channels out for a third of the naive module's cost."""
    block = Inception(256, 128, 64, 192, 64, 96, 64)
    x = torch.randn(1, 256, 28, 28)
    assert block(x).shape == (1, 480, 28, 28) and block.out_channels == 480
    expected = 28 * 28 * (256 * (128 + 64 + 64 + 64) + 64 * 192 * 9 + 64 * 96 * 25)
    assert macs(block.to("meta"), (256, 28, 28)) == expected
    assert expected < 0.35 * 28 * 28 * 256 * (128 + 192 * 9 + 96 * 25)


# --- GoogLeNet as the paper draws it ------------------------------------------------------------

# Table 1's "ops" column (millions of multiply-adds) at the module's own resolution
TABLE1_OPS = {"inception3a": (28, 128), "inception3b": (28, 304), "inception4a": (14, 73),
              "inception4b": (14, 88), "inception4c": (14, 100), "inception4d": (14, 119),
              "inception4e": (14, 170), "inception5b": (7, 71)}


def test_googlenet_paper_counts():
    with torch.device("meta"):
        model = create_model("googlenet_paper").eval()
        without_aux = create_model("googlenet_paper", aux_logits=False).eval()
        assert 6.8e6 <= n_params(without_aux) <= 7.0e6  # 6,998,552: Table 1's total, with biases
        # section 5's heads: 1x1 conv to 128 (on 512 channels at 4a, 528 at 4d), fc 1024, linear 1000
        aux = [_count([(c, 128, 1)], [(2048, 1024), (1024, 1000)]) for c in (512, 528)]
        assert n_params(model) - n_params(without_aux) == sum(aux)
        for name, (side, millions) in TABLE1_OPS.items():
            block = getattr(model, name)
            in_ch = block.branch1.conv.in_channels
            assert abs(macs(block, (in_ch, side, side)) / 1e6 - millions) < 0.02 * millions, name
        # the paper's "1.5 billion multiply-adds" (measured 1.58G: Table 1 gives conv1 34M, its 7x7x3x64
        # convolution at 112x112 costs 118M)
        assert abs(macs(model, (3, 224, 224)) / 1.5e9 - 1) < 0.06


def test_googlenet_paper_is_the_papers_design():
    model = create_model("googlenet_paper")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert [type(model.norm1).__name__, type(model.norm2).__name__] == ["LRN", "LRN"]
    for name in INCEPTIONS:  # real 5x5 convolutions in the third branch
        assert getattr(model, name).branch3[1].conv.kernel_size == (5, 5)
    assert model.dropout.p == 0.4 and model.aux1.dropout.p == 0.7
    assert isinstance(model.aux1.pool, nn.AvgPool2d) and model.aux1.pool.kernel_size == 5


def test_googlenet_paper_aux_heads_only_in_training():
    model = create_model("googlenet_paper", num_classes=10, small_input=True, in_chans=1)
    x = torch.randn(2, 1, 28, 28)
    out = model.train()(x)
    assert isinstance(out, GoogLeNetOutputs) and all(t.shape == (2, 10) for t in out)
    googlenet_loss(out, torch.tensor([1, 2])).backward()
    assert model.aux1.fc2.weight.grad is not None and model.aux2.fc2.weight.grad is not None
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 10)
    assert create_model("googlenet_paper", aux_logits=False, num_classes=3).train()(
        torch.randn(2, 3, 64, 64)).shape == (2, 3)


# --- LeNet-5 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,widths,count", [("lenet5", (120, 84), 61_706), ("lenet5_harley", (120, 100), 63_802)])
def test_lenet5_layers_shapes_and_count(name, widths, count):
    """LeCun et al. 1998, Fig. 2: C1 6@5x5, S2, C3 16@5x5, S4, C5 120, F6 84, 10 outputs;
    Harley's demo network has 100 units where F6 has 84."""
    model = create_model(name).eval()
    assert [n for n, m in model.named_children() if not isinstance(m, (nn.ReLU, nn.Dropout))] == [
        "conv1", "pool1", "conv2", "pool2", "fc1", "fc2", "output"]
    f5, f6 = widths
    assert n_params(model) == _count([(1, 6, 5), (6, 16, 5)], [(400, f5), (f5, f6), (f6, 10)]) == count
    x = torch.randn(2, 1, 28, 28)
    shapes = [tuple(model.conv1(x).shape[1:])]
    feats = model.forward_features(x)
    assert shapes == [(6, 28, 28)] and feats.shape == (2, 16, 5, 5)
    assert model.fc2.out_features == f6 and model.output.in_features == f6
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(feats))


# --- Functional oracles: every layer written out with torch.nn.functional, weights read by name --


def lrn_paper(x: torch.Tensor, n: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> torch.Tensor:
    """Krizhevsky et al. 2012, section 3.3, one channel at a time: alpha is NOT divided by n."""
    out = torch.empty_like(x)
    channels = x.shape[1]
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        out[:, i] = x[:, i] / (k + alpha * (x[:, lo:hi + 1] ** 2).sum(1)) ** beta
    return out


def _conv(sd: dict, key: str, x: torch.Tensor, **kw) -> torch.Tensor:
    return F.relu(F.conv2d(x, sd[f"{key}.weight"], sd[f"{key}.bias"], **kw))


def lenet_functional(sd: dict, x: torch.Tensor) -> torch.Tensor:
    x = F.max_pool2d(_conv(sd, "conv1", x, padding=2), 2)
    x = F.max_pool2d(_conv(sd, "conv2", x), 2).flatten(1)
    x = F.relu(F.linear(x, sd["fc1.weight"], sd["fc1.bias"]))
    x = F.relu(F.linear(x, sd["fc2.weight"], sd["fc2.bias"]))
    return F.linear(x, sd["output.weight"], sd["output.bias"])


def alexnet_paper_functional(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """Figure 2: conv1 11x11/4 -> LRN -> pool 3x3/2, conv2 5x5 (2 towers) -> LRN -> pool, conv3-5, fc6-8."""
    f = lambda i: f"features.conv{i}"  # noqa: E731
    x = F.max_pool2d(lrn_paper(_conv(sd, f(1), x, stride=4)), 3, 2)
    x = F.max_pool2d(lrn_paper(_conv(sd, f(2), x, padding=2, groups=2)), 3, 2)
    x = _conv(sd, f(4), _conv(sd, f(3), x, padding=1), padding=1, groups=2)
    x = F.max_pool2d(_conv(sd, f(5), x, padding=1, groups=2), 3, 2).flatten(1)  # (N, 9216)
    return _fc678(sd, x)


def zfnet_functional(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """Figure 3: conv1 7x7/2 -> pool 3x3/2 -> contrast norm, conv2 5x5/2 -> pool -> norm, conv3-5, fc6-8."""
    f = lambda i: f"features.conv{i}"  # noqa: E731
    x = lrn_paper(F.max_pool2d(_conv(sd, f(1), x, stride=2, padding=1), 3, 2, ceil_mode=True))
    x = lrn_paper(F.max_pool2d(_conv(sd, f(2), x, stride=2), 3, 2, ceil_mode=True))
    x = _conv(sd, f(5), _conv(sd, f(4), _conv(sd, f(3), x, padding=1), padding=1), padding=1)
    return _fc678(sd, F.max_pool2d(x, 3, 2, ceil_mode=True).flatten(1))


def _fc678(sd: dict, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(F.linear(x, sd["classifier.fc6.weight"], sd["classifier.fc6.bias"]))
    x = F.relu(F.linear(x, sd["classifier.fc7.weight"], sd["classifier.fc7.bias"]))
    return F.linear(x, sd["classifier.fc8.weight"], sd["classifier.fc8.bias"])


def _inception(sd: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """Figure 2b: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3/1 max pool -> 1x1, concatenated."""
    b = lambda i, j=None: f"{name}.branch{i}" + ("" if j is None else f".{j}") + ".conv"  # noqa: E731
    b1 = _conv(sd, b(1), x)
    b2 = _conv(sd, b(2, 1), _conv(sd, b(2, 0), x), padding=1)
    b3 = _conv(sd, b(3, 1), _conv(sd, b(3, 0), x), padding=2)
    b4 = _conv(sd, b(4, 1), F.max_pool2d(x, 3, 1, padding=1, ceil_mode=True))
    return torch.cat([b1, b2, b3, b4], 1)


def googlenet_paper_functional(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """Table 1 at 224x224, LRN as section 3.3 of AlexNet (the paper gives no constants)."""
    x = lrn_paper(F.max_pool2d(_conv(sd, "conv1.conv", x, stride=2, padding=3), 3, 2, ceil_mode=True))
    x = lrn_paper(_conv(sd, "conv3.conv", _conv(sd, "conv2.conv", x), padding=1))
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    for name in INCEPTIONS:
        x = _inception(sd, name, x)
        if name in ("inception3b", "inception4e"):
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = F.avg_pool2d(x, 7).flatten(1)  # (N, 1024)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


FUNCTIONAL = {  # name -> (oracle, input side, input scale)
    "lenet5": (lenet_functional, 28, 1.0),
    "lenet5_harley": (lenet_functional, 28, 1.0),
    # scaled inputs: large activations make alpha * sum comparable to k, so a wrong alpha shows
    "alexnet_paper": (alexnet_paper_functional, 227, 30.0),
    "zfnet": (zfnet_functional, 224, 30.0),
    "googlenet_paper": (googlenet_paper_functional, 224, 30.0),
}


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_forward_matches_a_functional_oracle(name):
    oracle, side, scale = FUNCTIONAL[name]
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).double().eval()
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    x = torch.randn(1, model.default_input_size[0], side, side, dtype=torch.float64) * scale
    with torch.no_grad():
        ours, ref = model(x), oracle(sd, x)
        assert ours.shape == (1, 10)
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9 * ref.abs().max().item())
        norms = [m for m in model.modules() if type(m).__name__ == "LRN"]
        if norms:  # the oracle tells the conventions apart: torch's alpha / n gives another output
            for m in norms:
                m.convention = "torch"
            assert (model(x) - ref).abs().max() > 1e-3 * ref.abs().max()


@pytest.mark.parametrize("name", ["alexnet_paper", "zfnet", "googlenet_paper"])
def test_paper_networks_without_batch_norm_keep_the_signal_at_init(name):
    """He init: a unit-variance image still gives features of order one after the last conv
    (PyTorch's default init leaves alexnet_paper's at ~0.01, which trains far slower)."""
    model = create_model(name, num_classes=10, in_chans=1, small_input=True).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(4, 1, 28, 28))
    assert 0.1 < feats.std() < 10
