"""Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke, Alemi 2016, arXiv:1602.07261, section 3.2).

Weight-compatible with timm's `inception_resnet_v2`, the port of Google's
released TF-slim checkpoint, which is what everyone means by "Inception-ResNet-v2":

    input                  3x299x299
    stem                   -> 320x35x35    (TF-slim: an Inception-v3 stem and the Mixed_5b block)
    10 x Block35           -> 320x35x35    Inception-ResNet-A, Figure 16
    Reduction-A            -> 1088x17x17   Figure 7 (k, l, m, n = 256, 256, 384, 384: Table 1)
    20 x Block17           -> 1088x17x17   Inception-ResNet-B, Figure 17
    Reduction-B            -> 2080x8x8     Figure 18
    10 x Block8            -> 2080x8x8     Inception-ResNet-C, Figure 19 (the last without ReLU)
    1x1 conv 1536, average pool, dropout (keep 0.8), linear

Each residual block adds `scale * branch(x)` to x (section 3.3, "Scaling of the
Residuals": 0.17, 0.10, 0.20 in the checkpoint; the paper suggests 0.1 to 0.3),
which kept the very deep residual Inception stable in training.

Where the checkpoint differs from the paper's drawings: the stem is not Figure 3
(TF-slim's conv 3x3/2, 3x3, 3x3, max pool, 1x1 80, 3x3 192, max pool, Mixed_5b
with 320 channels), the block counts are 10/20/10 (Figure 15: 5/10/5) and the widths
are 320/1088/2080 (Figures 16, 17, 19 print 384/1154/2048). See docs/models.md.

`small_input=True`: the first convolution has stride 1 and every valid padding
becomes same, so 28x28 -> 14 -> 7 -> 4 -> 2; no parameter changes.
"""
from __future__ import annotations

import torch
from torch import nn

from convscope.layers import FourBranchInception, conv_bn
from convscope.models._base import InceptionHead
from convscope.models._registry import register_model


# --------------------------------------------------------------------------- stem

class Mixed5b(FourBranchInception):
    """The last piece of TF-slim's stem: an Inception-v3 style block, 192 -> 320 channels:
    1x1 96 || 1x1 48 -> 5x5 64 || 1x1 64 -> 3x3 96 -> 3x3 96 || avg pool -> 1x1 64."""

    def __init__(self) -> None:
        super().__init__(192, 96, 48, 64, 64, 96, 64, mid_kernel=5)


class InceptionResNetV2Stem(nn.Sequential):
    """TF-slim's stem of Inception-ResNet-v2 (the released checkpoint; the paper draws Figure 3):
    299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35, then Mixed_5b: 320x35x35."""

    def __init__(self, in_chans: int = 3, *, small_input: bool = False) -> None:
        pad = 1 if small_input else 0
        super().__init__()
        self.conv2d_1a = conv_bn(in_chans, 32, 3, stride=1 if small_input else 2, padding=pad)  # (N, 32, 149, 149)
        self.conv2d_2a = conv_bn(32, 32, 3, padding=pad)                  # (N, 32, 147, 147)
        self.conv2d_2b = conv_bn(32, 64, 3, padding=1)                    # (N, 64, 147, 147)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2, padding=pad)          # (N, 64, 73, 73)
        self.conv2d_3b = conv_bn(64, 80, 1)                               # (N, 80, 73, 73)
        self.conv2d_4a = conv_bn(80, 192, 3, padding=pad)                 # (N, 192, 71, 71)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2, padding=pad)          # (N, 192, 35, 35)
        self.mixed_5b = Mixed5b()                                         # (N, 320, 35, 35)


# --------------------------------------------------------------------------- residual Inception blocks

class ScaledResidual(nn.Module):
    """x -> act(x + scale * up(concat(branches(x)))), the pattern of Figures 16, 17 and 19.

    `up` is a 1x1 convolution *without* batch norm or ReLU ("1x1 Conv (Linear)")
    that brings the concatenated branches back to the width of x so they can be added.
    """

    scale: float

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(self.forward_branches(x)) * self.scale + x
        return self.act(out)


class Block35(ScaledResidual):
    """Inception-ResNet-A (Figure 16) on the 35x35 grid, 320 channels:
    1x1 32 || 1x1 32 -> 3x3 32 || 1x1 32 -> 3x3 48 -> 3x3 64, then 1x1 (linear) 128 -> 320."""

    def __init__(self, scale: float = 0.17) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = conv_bn(320, 32, 1)
        self.branch1 = nn.Sequential(conv_bn(320, 32, 1), conv_bn(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(conv_bn(320, 32, 1), conv_bn(32, 48, 3, padding=1),
                                     conv_bn(48, 64, 3, padding=1))
        self.conv2d = nn.Conv2d(128, 320, 1)
        self.act = nn.ReLU()

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)  # (N, 128, 35, 35)


class Block17(ScaledResidual):
    """Inception-ResNet-B (Figure 17) on the 17x17 grid, 1088 channels:
    1x1 192 || 1x1 128 -> 1x7 160 -> 7x1 192, then 1x1 (linear) 384 -> 1088."""

    def __init__(self, scale: float = 0.10) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = conv_bn(1088, 192, 1)
        self.branch1 = nn.Sequential(conv_bn(1088, 128, 1), conv_bn(128, 160, (1, 7), padding=(0, 3)),
                                     conv_bn(160, 192, (7, 1), padding=(3, 0)))
        self.conv2d = nn.Conv2d(384, 1088, 1)
        self.act = nn.ReLU()

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x)], 1)  # (N, 384, 17, 17)


class Block8(ScaledResidual):
    """Inception-ResNet-C (Figure 19) on the 8x8 grid, 2080 channels:
    1x1 192 || 1x1 192 -> 1x3 224 -> 3x1 256, then 1x1 (linear) 448 -> 2080.
    `relu=False` for the network's last block (TF-slim), whose output goes to a 1x1 conv."""

    def __init__(self, scale: float = 0.20, *, relu: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = conv_bn(2080, 192, 1)
        self.branch1 = nn.Sequential(conv_bn(2080, 192, 1), conv_bn(192, 224, (1, 3), padding=(0, 1)),
                                     conv_bn(224, 256, (3, 1), padding=(1, 0)))
        self.conv2d = nn.Conv2d(448, 2080, 1)
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward_branches(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x)], 1)  # (N, 448, 8, 8)


# --------------------------------------------------------------------------- reductions

class Mixed6a(nn.Module):
    """Reduction-A (Figure 7) with Table 1's Inception-ResNet-v2 filters k=256, l=256, m=384, n=384:
    3x3 384 (stride 2, V) || 1x1 256 -> 3x3 256 -> 3x3 384 (stride 2, V) || max pool. 320x35x35 -> 1088x17x17."""

    def __init__(self, padding: int = 0) -> None:
        super().__init__()
        self.branch0 = conv_bn(320, 384, 3, stride=2, padding=padding)
        self.branch1 = nn.Sequential(conv_bn(320, 256, 1), conv_bn(256, 256, 3, padding=1),
                                     conv_bn(256, 384, 3, stride=2, padding=padding))
        self.branch2 = nn.MaxPool2d(3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class Mixed7a(nn.Module):
    """Reduction-B of Inception-ResNet-v2 (Figure 18), 1088x17x17 -> 2080x8x8:
    1x1 256 -> 3x3 384 (s2, V) || 1x1 256 -> 3x3 288 (s2, V) || 1x1 256 -> 3x3 288 -> 3x3 320 (s2, V) || max pool."""

    def __init__(self, padding: int = 0) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(conv_bn(1088, 256, 1), conv_bn(256, 384, 3, stride=2, padding=padding))
        self.branch1 = nn.Sequential(conv_bn(1088, 256, 1), conv_bn(256, 288, 3, stride=2, padding=padding))
        self.branch2 = nn.Sequential(conv_bn(1088, 256, 1), conv_bn(256, 288, 3, padding=1),
                                     conv_bn(288, 320, 3, stride=2, padding=padding))
        self.branch3 = nn.MaxPool2d(3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


# --------------------------------------------------------------------------- the network

class InceptionResNetV2(InceptionHead):
    """Inception-ResNet-v2 as released (Figure 15's schema with TF-slim's counts and widths)."""

    # our module path -> timm's (the stem's children keep timm's names, one level up)
    _REFERENCE_NAMES = {"inception_resnet_a": "repeat", "reduction_a": "mixed_6a",
                        "inception_resnet_b": "repeat_1", "reduction_b": "mixed_7a",
                        "inception_resnet_c": "repeat_2", "last_linear": "classif"}

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, *, small_input: bool = False,
                 drop_rate: float = 0.2) -> None:
        super().__init__()
        pad = 1 if small_input else 0
        self.in_chans = in_chans
        self.num_features = 1536
        self.default_input_size = (in_chans, 32, 32) if small_input else (in_chans, 299, 299)
        self.stem = InceptionResNetV2Stem(in_chans, small_input=small_input)             # (N, 320, 35, 35)
        self.inception_resnet_a = nn.Sequential(*[Block35(0.17) for _ in range(10)])      # (N, 320, 35, 35)
        self.reduction_a = Mixed6a(padding=pad)                                           # (N, 1088, 17, 17)
        self.inception_resnet_b = nn.Sequential(*[Block17(0.10) for _ in range(20)])      # (N, 1088, 17, 17)
        self.reduction_b = Mixed7a(padding=pad)                                           # (N, 2080, 8, 8)
        self.inception_resnet_c = nn.Sequential(*[Block8(0.20) for _ in range(9)])        # (N, 2080, 8, 8)
        self.block8 = Block8(1.0, relu=False)
        self.conv2d_7b = conv_bn(2080, self.num_features, 1)                              # (N, 1536, 8, 8)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)  # Figure 15: "Dropout (keep 0.8)"
        self.last_linear = nn.Linear(self.num_features, num_classes)
        self._reference_names = dict(self._REFERENCE_NAMES)
        self._reference_names.update({f"stem.{name}": name for name, _ in self.stem.named_children()})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.reduction_a(self.inception_resnet_a(x))
        x = self.reduction_b(self.inception_resnet_b(x))
        x = self.block8(self.inception_resnet_c(x))
        return self.conv2d_7b(x)  # (N, 1536, 8, 8)


@register_model
def inception_resnet_v2(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                        **kwargs) -> InceptionResNetV2:
    """Inception-ResNet-v2, 55,843,464 parameters for 1000 classes (timm `inception_resnet_v2`); 3x299x299."""
    return InceptionResNetV2(num_classes=num_classes, in_chans=in_chans, small_input=small_input, **kwargs)
