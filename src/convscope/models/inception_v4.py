"""Inception-v4 (Szegedy, Ioffe, Vanhoucke, Alemi 2016: "Inception-v4, Inception-ResNet
and the Impact of Residual Connections on Learning", arXiv:1602.07261, section 3.1).

Weight-compatible with timm's `inception_v4` (the port of Google's TF-slim checkpoint):

    input            3x299x299
    stem             Figure 3   -> 384x35x35
    4 x Inception-A  Figure 4   -> 384x35x35
    Reduction-A      Figure 7   -> 1024x17x17   (k, l, m, n = 192, 224, 256, 384: Table 1)
    7 x Inception-B  Figure 5   -> 1024x17x17
    Reduction-B      Figure 8   -> 1536x8x8
    3 x Inception-C  Figure 6   -> 1536x8x8
    average pool, dropout (keep 0.8), linear: Figure 9

Every convolution is conv (no bias) -> batch norm (eps 1e-3, as the TF checkpoint)
-> ReLU. The figures mark "V" the convolutions and pools with *valid* padding
(none); the others keep the size ("same"). Where TF-slim's released network
orders a factorised pair differently from the figures (1x7 before 7x1), we
follow the checkpoint, so that its weights fit.

`small_input=True` (for 28x28 and 32x32 images): the first convolution has
stride 1, and every "V" becomes "same" (padding 1), so a 28x28 image goes
28 -> 14 -> 7 -> 4 -> 2 instead of vanishing; no parameter changes.
"""
from __future__ import annotations

import torch
from torch import nn

from convscope.layers import FourBranchInception, avg_pool_branch, conv_bn
from convscope.models._base import InceptionHead
from convscope.models._registry import register_model


# --------------------------------------------------------------------------- stem (Figure 3)

class Mixed3a(nn.Module):
    """Stem, first filter concat (Figure 3): 3x3 max pool (stride 2, V) || 3x3 conv 96 (stride 2, V)."""

    def __init__(self, padding: int = 0) -> None:
        super().__init__()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=padding)
        self.conv = conv_bn(64, 96, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.maxpool(x), self.conv(x)], 1)  # (N, 160, 73, 73)


class Mixed4a(nn.Module):
    """Stem, second filter concat (Figure 3): 1x1 64 -> 3x3 96 (V) || 1x1 64 -> 1x7 64 -> 7x1 64 -> 3x3 96 (V).

    The 7x1 + 1x7 pair is a factorised 7x7 (Inception-v3's idea): two cheap
    one-dimensional convolutions see the same 7x7 window."""

    def __init__(self, padding: int = 0) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(conv_bn(160, 64, 1), conv_bn(64, 96, 3, padding=padding))
        self.branch1 = nn.Sequential(
            conv_bn(160, 64, 1),
            conv_bn(64, 64, (1, 7), padding=(0, 3)),
            conv_bn(64, 64, (7, 1), padding=(3, 0)),
            conv_bn(64, 96, 3, padding=padding),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x)], 1)  # (N, 192, 71, 71)


class Mixed5a(nn.Module):
    """Stem, third filter concat (Figure 3): 3x3 conv 192 (stride 2, V) || max pool (stride 2, V)."""

    def __init__(self, padding: int = 0) -> None:
        super().__init__()
        self.conv = conv_bn(192, 192, 3, stride=2, padding=padding)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.maxpool(x)], 1)  # (N, 384, 35, 35)


class InceptionV4Stem(nn.Sequential):
    """The stem of Inception-v4 and Inception-ResNet-v1/v2 in the paper (Figure 3):
    three 3x3 convolutions, then three filter concats that halve the size twice.

    299x299 -> 149 -> 147 -> 147 -> 73 -> 71 -> 35, 384 channels out.
    With `small_input`, conv1 has stride 1 and the valid paddings become same.
    """

    def __init__(self, in_chans: int = 3, *, small_input: bool = False) -> None:
        pad = 1 if small_input else 0
        super().__init__()
        self.conv1 = conv_bn(in_chans, 32, 3, stride=1 if small_input else 2, padding=pad)  # (N, 32, 149, 149)
        self.conv2 = conv_bn(32, 32, 3, padding=pad)                                        # (N, 32, 147, 147)
        self.conv3 = conv_bn(32, 64, 3, padding=1)                                          # (N, 64, 147, 147)
        self.mixed_3a = Mixed3a(pad)
        self.mixed_4a = Mixed4a(pad)
        self.mixed_5a = Mixed5a(pad)


# --------------------------------------------------------------------------- Inception and reduction blocks

class InceptionA(FourBranchInception):
    """Inception-A (Figure 4), 35x35 grid, 384 -> 384 channels:
    1x1 96 || 1x1 64 -> 3x3 96 || 1x1 64 -> 3x3 96 -> 3x3 96 || avg pool -> 1x1 96."""

    def __init__(self) -> None:
        super().__init__(384, 96, 64, 96, 64, 96, 96, mid_kernel=3)


class ReductionA(nn.Module):
    """Reduction-A (Figure 7) with Table 1's Inception-v4 filters k=192, l=224, m=256, n=384:
    3x3 n (stride 2, V) || 1x1 k -> 3x3 l -> 3x3 m (stride 2, V) || 3x3 max pool (stride 2, V).
    384x35x35 -> 1024x17x17."""

    def __init__(self, in_ch: int = 384, k: int = 192, l: int = 224, m: int = 256, n: int = 384,
                 padding: int = 0) -> None:
        super().__init__()
        self.branch0 = conv_bn(in_ch, n, 3, stride=2, padding=padding)
        self.branch1 = nn.Sequential(conv_bn(in_ch, k, 1), conv_bn(k, l, 3, padding=1),
                                     conv_bn(l, m, 3, stride=2, padding=padding))
        self.branch2 = nn.MaxPool2d(3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class InceptionB(nn.Module):
    """Inception-B (Figure 5), 17x17 grid, 1024 -> 1024 channels, 7x7 factorised into 1x7 and 7x1:
    1x1 384 || 1x1 192 -> 1x7 224 -> 7x1 256 || 1x1 192 -> 7x1 192 -> 1x7 224 -> 7x1 224 -> 1x7 256
    || avg pool -> 1x1 128. (The figure draws the third branch 1x7-first; the checkpoint is 7x1-first.)"""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = conv_bn(1024, 384, 1)
        self.branch1 = nn.Sequential(
            conv_bn(1024, 192, 1),
            conv_bn(192, 224, (1, 7), padding=(0, 3)),
            conv_bn(224, 256, (7, 1), padding=(3, 0)),
        )
        self.branch2 = nn.Sequential(
            conv_bn(1024, 192, 1),
            conv_bn(192, 192, (7, 1), padding=(3, 0)),
            conv_bn(192, 224, (1, 7), padding=(0, 3)),
            conv_bn(224, 224, (7, 1), padding=(3, 0)),
            conv_bn(224, 256, (1, 7), padding=(0, 3)),
        )
        self.branch3 = avg_pool_branch(1024, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ReductionB(nn.Module):
    """Reduction-B (Figure 8), 1024x17x17 -> 1536x8x8:
    1x1 192 -> 3x3 192 (stride 2, V) || 1x1 256 -> 1x7 256 -> 7x1 320 -> 3x3 320 (stride 2, V)
    || 3x3 max pool (stride 2, V)."""

    def __init__(self, padding: int = 0) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(conv_bn(1024, 192, 1), conv_bn(192, 192, 3, stride=2, padding=padding))
        self.branch1 = nn.Sequential(
            conv_bn(1024, 256, 1),
            conv_bn(256, 256, (1, 7), padding=(0, 3)),
            conv_bn(256, 320, (7, 1), padding=(3, 0)),
            conv_bn(320, 320, 3, stride=2, padding=padding),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class InceptionC(nn.Module):
    """Inception-C (Figure 6), 8x8 grid, 1536 -> 1536 channels; the 3x3s are split into
    1x3 and 3x1 side by side ("expanded filter bank", to widen the coarsest grid):
    1x1 256 || 1x1 384 -> (1x3 256 | 3x1 256) || 1x1 384 -> 3x1 448 -> 1x3 512 -> (1x3 256 | 3x1 256)
    || avg pool -> 1x1 256. (The figure draws 1x3 448 -> 3x1 512; the checkpoint is 3x1-first.)"""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = conv_bn(1536, 256, 1)
        self.branch1_0 = conv_bn(1536, 384, 1)
        self.branch1_1a = conv_bn(384, 256, (1, 3), padding=(0, 1))
        self.branch1_1b = conv_bn(384, 256, (3, 1), padding=(1, 0))
        self.branch2_0 = conv_bn(1536, 384, 1)
        self.branch2_1 = conv_bn(384, 448, (3, 1), padding=(1, 0))
        self.branch2_2 = conv_bn(448, 512, (1, 3), padding=(0, 1))
        self.branch2_3a = conv_bn(512, 256, (1, 3), padding=(0, 1))
        self.branch2_3b = conv_bn(512, 256, (3, 1), padding=(1, 0))
        self.branch3 = avg_pool_branch(1536, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.branch1_0(x)
        x2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return torch.cat([
            self.branch0(x),                                       # (N, 256, 8, 8)
            self.branch1_1a(x1), self.branch1_1b(x1),              # (N, 512, 8, 8)
            self.branch2_3a(x2), self.branch2_3b(x2),              # (N, 512, 8, 8)
            self.branch3(x),                                       # (N, 256, 8, 8)
        ], 1)


# --------------------------------------------------------------------------- the network (Figure 9)

class InceptionV4(InceptionHead):
    """Inception-v4 (Figure 9): stem, 4 x A, Reduction-A, 7 x B, Reduction-B, 3 x C, pool, dropout, linear."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, *, small_input: bool = False,
                 drop_rate: float = 0.2) -> None:
        super().__init__()
        pad = 1 if small_input else 0
        self.in_chans = in_chans
        self.num_features = 1536
        self.default_input_size = (in_chans, 32, 32) if small_input else (in_chans, 299, 299)
        self.stem = InceptionV4Stem(in_chans, small_input=small_input)       # (N, 384, 35, 35)
        self.inception_a = nn.Sequential(*[InceptionA() for _ in range(4)])   # (N, 384, 35, 35)
        self.reduction_a = ReductionA(padding=pad)                            # (N, 1024, 17, 17)
        self.inception_b = nn.Sequential(*[InceptionB() for _ in range(7)])   # (N, 1024, 17, 17)
        self.reduction_b = ReductionB(padding=pad)                            # (N, 1536, 8, 8)
        self.inception_c = nn.Sequential(*[InceptionC() for _ in range(3)])   # (N, 1536, 8, 8)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)  # Figure 9: "Dropout (keep 0.8)"
        self.last_linear = nn.Linear(self.num_features, num_classes)
        # timm keeps the body in one nn.Sequential `features.0` ... `features.21`
        body = [f"stem.{name}" for name, _ in self.stem.named_children()]
        for stage in ("inception_a", "reduction_a", "inception_b", "reduction_b", "inception_c"):
            module = getattr(self, stage)
            body += [f"{stage}.{i}" for i in range(len(module))] if isinstance(module, nn.Sequential) else [stage]
        self._reference_names = {ours: f"features.{i}" for i, ours in enumerate(body)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.reduction_a(self.inception_a(x))
        x = self.reduction_b(self.inception_b(x))
        return self.inception_c(x)  # (N, 1536, 8, 8)


@register_model
def inception_v4(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                 **kwargs) -> InceptionV4:
    """Inception-v4, 42,679,816 parameters for 1000 classes (timm `inception_v4`); 3x299x299 input."""
    return InceptionV4(num_classes=num_classes, in_chans=in_chans, small_input=small_input, **kwargs)
