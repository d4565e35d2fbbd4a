"""DenseNet-BC (Huang et al. 2017): every layer reads every earlier layer of its block.

    features.conv0  7x7/2, 2k channels -> norm0 -> relu0 -> pool0 3x3/2   (N, 64, 56, 56) at 224
    denseblock1     6 layers, each adds k = 32 maps                       (N, 256, 56, 56)
    transition1     BN-ReLU-1x1 conv halving channels, 2x2 avg pool       (N, 128, 28, 28)
    denseblock2..4  12 / 24 / 16 layers (DenseNet-121), transitions between
    norm5 -> relu -> global average pool -> classifier                    (N, num_classes)

Table 1 of the paper; "BC" = bottleneck 1x1 layers (4k maps) + compression 0.5.
Module names are torchvision's, so its state dicts load as is.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from convscope.layers import DenseBlock, Transition
from convscope.models._base import Classifier
from convscope.models._registry import register_model

# name -> (growth rate k, layers per dense block, stem channels); paper Table 1
cfgs: dict[str, tuple[int, tuple[int, int, int, int], int]] = {
    "densenet121": (32, (6, 12, 24, 16), 64),
    "densenet161": (48, (6, 12, 36, 24), 96),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
}


class DenseNet(Classifier):
    """Stem, dense blocks joined by transitions, final BN, global pooling, linear classifier.

    `small_input=True` uses a 3x3 stride-1 stem without pool0 (as the paper's CIFAR
    networks, section 3 "Implementation Details"), so 28x28 leaves the last block at 3x3.
    """

    def __init__(self, growth_rate: int, block_config: tuple[int, ...], num_init_features: int, *,
                 num_classes: int = 1000, in_chans: int = 3, bn_size: int = 4, drop_rate: float = 0.0,
                 compression: float = 0.5, small_input: bool = False) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.default_input_size = (in_chans, 32, 32) if small_input else (in_chans, 224, 224)
        if small_input:
            stem = [("conv0", nn.Conv2d(in_chans, num_init_features, 3, padding=1, bias=False))]
        else:
            stem = [("conv0", nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False))]
        stem += [("norm0", nn.BatchNorm2d(num_init_features)), ("relu0", nn.ReLU(inplace=True))]
        if not small_input:
            stem.append(("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)))
        self.features = nn.Sequential(OrderedDict(stem))
        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate)
            self.features.add_module(f"denseblock{i}", block)
            channels = block.out_channels
            if i != len(block_config):
                out = int(channels * compression)
                self.features.add_module(f"transition{i}", Transition(channels, out))
                channels = out
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.num_features = channels
        self.classifier = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)                                 # (N, num_features, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # norm5 is pre-activation BN: the ReLU comes here, as torchvision's forward
        x = F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1)     # (N, num_features)
        return x if pre_logits else self.classifier(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes)


def _build(name: str, num_classes: int, in_chans: int, small_input: bool, **kwargs) -> DenseNet:
    growth_rate, block_config, stem = cfgs[name]
    return DenseNet(growth_rate, block_config, stem, num_classes=num_classes, in_chans=in_chans,
                    small_input=small_input, **kwargs)


@register_model
def densenet121(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                **kwargs) -> DenseNet:
    """DenseNet-121 (k = 32), torchvision `densenet121`, 7,978,856 parameters."""
    return _build("densenet121", num_classes, in_chans, small_input, **kwargs)


@register_model
def densenet161(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                **kwargs) -> DenseNet:
    """DenseNet-161 (k = 48, 96-channel stem), torchvision `densenet161`."""
    return _build("densenet161", num_classes, in_chans, small_input, **kwargs)


@register_model
def densenet169(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                **kwargs) -> DenseNet:
    """DenseNet-169 (k = 32), torchvision `densenet169`."""
    return _build("densenet169", num_classes, in_chans, small_input, **kwargs)


@register_model
def densenet201(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                **kwargs) -> DenseNet:
    """DenseNet-201 (k = 32), torchvision `densenet201`."""
    return _build("densenet201", num_classes, in_chans, small_input, **kwargs)
