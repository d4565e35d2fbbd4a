"""ResNet (He et al. 2016), ResNeXt (Xie et al. 2017) and SE-ResNet (Hu et al. 2018).

One generic `ResNet` class; the variants are data (block type, blocks per stage)
plus block options (groups and width for ResNeXt, the SE reduction ratio r):

    stem    conv1 7x7/2, 64 -> bn1 -> relu -> maxpool 3x3/2      (N, 64, 56, 56) at 224
    layer1  blocks at 56x56, 64 planes                           (N, 64 e, 56, 56)
    layer2  first block stride 2, 128 planes                     (N, 128 e, 28, 28)
    layer3  first block stride 2, 256 planes                     (N, 256 e, 14, 14)
    layer4  first block stride 2, 512 planes                     (N, 512 e, 7, 7)
    head    global average pool -> fc                            (N, num_classes)

with e = 1 (BasicBlock) or 4 (Bottleneck), as in the paper's Table 1. Parameter
and module names are torchvision's (and timm's), so their state dicts load as is.

ResNet-50 "v1.5": torchvision and timm put a bottleneck's stride on its 3x3 conv;
the paper (section 3.3, "downsampling is performed by conv3_1, conv4_1, and conv5_1
with a stride of 2") and the original Caffe model put it on the first 1x1 conv,
which reads only one pixel in four. `stride_in_1x1=True` builds that v1 network
(same parameters, ~0.1 GMACs less, and different outputs).
"""
from __future__ import annotations

import torch
from torch import nn

from convscope.layers import BasicBlock, Bottleneck
from convscope.models._base import Classifier
from convscope.models._registry import register_model

# name -> (block, blocks per stage, groups, base width); Table 1 of each paper
cfgs: dict[str, tuple[type[nn.Module], tuple[int, int, int, int], int, int]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), 1, 64),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 1, 64),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 1, 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 1, 64),
    "resnet152": (Bottleneck, (3, 8, 36, 3), 1, 64),
    "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": (Bottleneck, (3, 4, 23, 3), 32, 8),
    "seresnet50": (Bottleneck, (3, 4, 6, 3), 1, 64),
}


class ResNet(Classifier):
    """Stem, four stages of residual blocks, global average pooling, one linear layer.

    `small_input=True` swaps the stem for a 3x3 stride-1 conv without max pooling
    (the CIFAR variant, section 4.2), so a 28x28 or 32x32 image leaves layer4 at 4x4.
    """

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], *, num_classes: int = 1000,
                 in_chans: int = 3, groups: int = 1, base_width: int = 64, se_reduction: int | None = None,
                 stride_in_1x1: bool = False, small_input: bool = False) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.default_input_size = (in_chans, 32, 32) if small_input else (in_chans, 224, 224)
        self._block_kw = dict(groups=groups, base_width=base_width, se_reduction=se_reduction,
                              stride_in_1x1=stride_in_1x1)
        if small_input:
            self.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self._in_ch = 64
        self.layer1 = self._make_stage(block, 64, layers[0], stride=1)
        self.layer2 = self._make_stage(block, 128, layers[1], stride=2)
        self.layer3 = self._make_stage(block, 256, layers[2], stride=2)
        self.layer4 = self._make_stage(block, 512, layers[3], stride=2)
        self.num_features = 512 * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def _make_stage(self, block: type[nn.Module], planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = []
        for i in range(n):
            blocks.append(block(self._in_ch, planes, stride=stride if i == 0 else 1, **self._block_kw))
            self._in_ch = planes * block.expansion
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        # He et al. 2015 ("Delving deep") initialisation, as the paper's section 3.4
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4)
        x = self.layer1(x)                                    # (N, 64 e, H/4, W/4)
        x = self.layer2(x)                                    # (N, 128 e, H/8, W/8)
        x = self.layer3(x)                                    # (N, 256 e, H/16, W/16)
        return self.layer4(x)                                 # (N, 512 e, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)                 # (N, 512 e)
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)


def _build(name: str, num_classes: int, in_chans: int, small_input: bool, **kwargs) -> ResNet:
    block, layers, groups, base_width = cfgs[name]
    return ResNet(block, layers, num_classes=num_classes, in_chans=in_chans, groups=groups,
                  base_width=base_width, small_input=small_input, **kwargs)


@register_model
def resnet18(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> ResNet:
    """ResNet-18 (torchvision `resnet18`, 11,689,512 parameters)."""
    return _build("resnet18", num_classes, in_chans, small_input, **kwargs)


@register_model
def resnet34(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> ResNet:
    """ResNet-34 (torchvision `resnet34`): the 34-layer net of the paper's Fig. 3 right."""
    return _build("resnet34", num_classes, in_chans, small_input, **kwargs)


@register_model
def resnet50(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> ResNet:
    """ResNet-50 v1.5 (torchvision `resnet50`); `stride_in_1x1=True` for the paper's v1."""
    return _build("resnet50", num_classes, in_chans, small_input, **kwargs)


@register_model
def resnet101(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> ResNet:
    """ResNet-101 v1.5 (torchvision `resnet101`)."""
    return _build("resnet101", num_classes, in_chans, small_input, **kwargs)


@register_model
def resnet152(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> ResNet:
    """ResNet-152 v1.5 (torchvision `resnet152`)."""
    return _build("resnet152", num_classes, in_chans, small_input, **kwargs)


@register_model
def resnext50_32x4d(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                    **kwargs) -> ResNet:
    """ResNeXt-50 (32x4d): cardinality 32, 4 channels per group in layer1 (ResNeXt Table 1)."""
    return _build("resnext50_32x4d", num_classes, in_chans, small_input, **kwargs)


@register_model
def resnext101_32x8d(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                     **kwargs) -> ResNet:
    """ResNeXt-101 (32x8d) (torchvision `resnext101_32x8d`)."""
    return _build("resnext101_32x8d", num_classes, in_chans, small_input, **kwargs)


@register_model
def seresnet50(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
               reduction: int = 16, **kwargs) -> ResNet:
    """SE-ResNet-50 (timm `seresnet50`): SE with reduction ratio r = `reduction` in every
    bottleneck (SENet section 3 and 6.1; r = 16 by default)."""
    if not isinstance(reduction, int) or isinstance(reduction, bool) or not 1 <= reduction <= 256:
        raise ValueError(f"seresnet50: reduction ratio r must be a whole number from 1 to 256 "
                         f"(the narrowest SE sees 256 channels), got {reduction!r}")
    return _build("seresnet50", num_classes, in_chans, small_input, se_reduction=reduction, **kwargs)
