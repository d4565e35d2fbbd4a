"""Small batch-norm CNNs for 28x28 and 32x32 images, built to train fast on a CPU.

A VGG-style stack (Simonyan & Zisserman 2014, section 2.1: 3x3 convolutions,
2x2 max pooling, width doubling after each pooling) with batch norm after
every convolution (Ioffe & Szegedy 2015), then the last map averaged down to
4x4 (adaptive average pooling: 7x7 -> 4x4 from 28x28 inputs, 8x8 -> 4x4 from
32x32) and one linear classifier. They are the zoo's answer to "LeNet-5 is
too weak, ResNet-18 too slow" for fashion-mnist on two CPU cores: recipes
`fashion-fast` (convnet_small) and `fashion-best` (convnet_wide),
docs/training.md.

The variants are data in `cfgs` (a number is a ConvBNAct's width, "M" a 2x2
max pooling). For a 1x28x28 input and 10 classes (MACs = multiply-accumulates;
`convscope summary` reports them at the default 32x32):

    convnet_small  [16, M, 32, M, 64]        33,658 params   1.93 M MACs (LeNet-5: 0.42 M)
    convnet_wide   [32, M, 64, M, 128, 128]  261,098 params  14.70 M MACs

Why this shape for a CPU: the only full-resolution layer is narrow (16 or 32 channels), every
layer after a pooling works on a quarter of the pixels, and a 4x4 map keeps
the garment's layout for the classifier (a global 1x1 average reached ~1 point
less after 3-4 epochs). Training speed here (quiet machine, SGD step, 1 / 2 threads):
convnet_small 3,500 / 6,200 img/s (batch 128), convnet_wide 1,050 / 1,870 (batch 256);
wider first stages cost more than they gained in time-to-accuracy.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from convscope.layers import ConvBNAct
from convscope.models._base import Classifier
from convscope.models._registry import register_model

cfgs: dict[str, list[int | str]] = {
    "convnet_small": [16, "M", 32, "M", 64],
    "convnet_wide": [32, "M", 64, "M", 128, 128],
}


def make_layers(cfg: list[int | str], in_chans: int) -> nn.Sequential:
    """The body, named convS_J (ConvBNAct: conv, bn, act) and poolS (S = stage, J = layer)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    ch, stage, j = in_chans, 1, 1
    for v in cfg:
        if v == "M":
            layers[f"pool{stage}"] = nn.MaxPool2d(kernel_size=2, stride=2)
            stage, j = stage + 1, 1
            continue
        layers[f"conv{stage}_{j}"] = ConvBNAct(ch, int(v), 3)  # same padding, no conv bias (BN has one)
        ch, j = int(v), j + 1
    return nn.Sequential(layers)


class SmallCNN(Classifier):
    """conv stages -> average pooling to head_pool x head_pool -> dropout -> linear."""

    def __init__(self, cfg: list[int | str], *, num_classes: int = 10, in_chans: int = 1,
                 dropout: float = 0.0, input_size: int = 32, head_pool: int = 4) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.default_input_size = (in_chans, input_size, input_size)
        self.features = make_layers(cfg, in_chans)
        width = int([v for v in cfg if v != "M"][-1])
        self.num_features = width * head_pool * head_pool
        self.global_pool = nn.AdaptiveAvgPool2d(head_pool)   # (N, C, k, k) whatever H x W
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        # NHWC weights: the convolutions then run channels-last, 1.3x (1 thread) to 1.7x
        # (2 threads) faster to train on this machine's CPU; the numbers are the same
        self.to(memory_format=torch.channels_last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)                      # (N, C, H / 2^pools, W / 2^pools)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.global_pool(x), 1)    # (N, C k k)
        x = self.dropout(x)
        return x if pre_logits else self.fc(x)       # (N, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


def _small_cnn(arch: str, num_classes: int, in_chans: int, **kwargs) -> SmallCNN:
    return SmallCNN(cfgs[arch], num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model
def convnet_small(*, num_classes: int = 10, in_chans: int = 1, small_input: bool = True, **kwargs) -> SmallCNN:
    """Three 3x3 conv-BN-ReLU layers (16, 32, 64) with two poolings: `fashion-fast`'s model.
    `small_input` is accepted for the zoo's common signature (it is made for small images)."""
    return _small_cnn("convnet_small", num_classes, in_chans, **kwargs)


@register_model
def convnet_wide(*, num_classes: int = 10, in_chans: int = 1, small_input: bool = True, **kwargs) -> SmallCNN:
    """Four 3x3 conv-BN-ReLU layers (32, 64, 128, 128) with two poolings: `fashion-best`'s model."""
    return _small_cnn("convnet_wide", num_classes, in_chans, **kwargs)
