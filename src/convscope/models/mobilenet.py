"""MobileNet-V1 (Howard et al. 2017): a 3x3 conv, then 13 depthwise-separable blocks.

The body reads as the paper's Table 1 (widths for alpha = 1, input 224):

    stem      conv 3x3/2, 32                      (N, 32, 112, 112)
    ds1       dw 3x3/1 + pw 64                    (N, 64, 112, 112)
    ds2, ds3  dw /2 + pw 128, dw /1 + pw 128      (N, 128, 56, 56)
    ds4, ds5  dw /2 + pw 256, dw /1 + pw 256      (N, 256, 28, 28)
    ds6..ds11 dw /2 + pw 512, 5 x (dw /1 + pw 512) (N, 512, 14, 14)
    ds12,ds13 dw /2 + pw 1024, dw /1 + pw 1024    (N, 1024, 7, 7)
    head      global average pool -> fc           (N, num_classes)

Table 1 prints the last depthwise conv as "s2", but its output stays 7x7: the stride
is 1 (as in every implementation, timm's included).

The width multiplier alpha (section 3.3) thins every layer to alpha x its channels.
timm's `mobilenetv1_100` is the same network with ReLU6 instead of the paper's ReLU
(the default here is ReLU6 so its weights give the same outputs; `act="relu"` is the
paper's). `reference_key` maps our names onto timm's EfficientNet-builder names.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import torch
from torch import nn

from convscope.layers import ConvBNAct, DepthwiseSeparable
from convscope.models._base import Classifier
from convscope.models._registry import register_model

STEM_WIDTH = 32
# (pointwise output channels, depthwise stride) of ds1..ds13, paper Table 1
BLOCKS: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1),
    (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
]
ALPHAS = (0.25, 0.5, 0.75, 1.0)
_ACTS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6}


def _stage_positions() -> list[tuple[int, int]]:
    """timm groups the blocks into stages that start at each stride-2 block:
    ds1 -> blocks.0.0, ds2 -> blocks.1.0, ds3 -> blocks.1.1, ..., ds13 -> blocks.4.1."""
    positions, stage, index = [], 0, 0
    for i, (_, stride) in enumerate(BLOCKS):
        if i > 0 and stride == 2:
            stage, index = stage + 1, 0
        positions.append((stage, index))
        index += 1
    return positions


_TIMM_POS = _stage_positions()
_TIMM_PART = {"dw.conv": "conv_dw", "dw.bn": "bn1", "pw.conv": "conv_pw", "pw.bn": "bn2"}


class MobileNetV1(Classifier):
    """Stem conv + 13 DepthwiseSeparable blocks + global average pooling + fc.

    `small_input=True` makes the stem stride 1 (28x28 -> 2x2 at ds13, 32x32 -> 2x2).
    """

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, width_multiplier: float = 1.0,
                 act: str = "relu6", drop_rate: float = 0.0, small_input: bool = False) -> None:
        super().__init__()
        if act not in _ACTS:
            raise ValueError(f"mobilenet_v1: act must be one of {sorted(_ACTS)}, got {act!r}")
        if not 0 < width_multiplier <= 4:
            raise ValueError(f"mobilenet_v1: width_multiplier (alpha) must be in (0, 4], got {width_multiplier!r}; "
                             f"the paper uses {ALPHAS}")
        act_layer = _ACTS[act]
        self.in_chans = in_chans
        self.width_multiplier = width_multiplier
        self.default_input_size = (in_chans, 32, 32) if small_input else (in_chans, 224, 224)
        width = _scaled(STEM_WIDTH, width_multiplier)
        self.stem = ConvBNAct(in_chans, width, 3, stride=1 if small_input else 2, act=act_layer)
        blocks = []
        for i, (out_ch, stride) in enumerate(BLOCKS, start=1):
            out = _scaled(out_ch, width_multiplier)
            blocks.append((f"ds{i}", DepthwiseSeparable(width, out, stride=stride, act=act_layer)))
            width = out
        self.blocks = nn.Sequential(OrderedDict(blocks))
        self.num_features = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))                 # (N, 1024 alpha, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(torch.flatten(self.pool(x), 1))    # (N, 1024 alpha)
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)

    @staticmethod
    def reference_key(our_key: str) -> str:
        """Our state-dict key -> timm `mobilenetv1_*` key, e.g.
        `blocks.ds13.pw.bn.weight` -> `blocks.4.1.bn2.weight`, `stem.conv.weight` -> `conv_stem.weight`."""
        m = re.fullmatch(r"blocks\.ds(\d+)\.(dw|pw)\.(conv|bn)\.(.+)", our_key)
        if m:
            stage, index = _TIMM_POS[int(m.group(1)) - 1]
            return f"blocks.{stage}.{index}.{_TIMM_PART[m.group(2) + '.' + m.group(3)]}.{m.group(4)}"
        for ours, theirs in (("stem.conv.", "conv_stem."), ("stem.bn.", "bn1."), ("fc.", "classifier.")):
            if our_key.startswith(ours):
                return theirs + our_key[len(ours):]
        return our_key


def _scaled(channels: int, alpha: float) -> int:
    """alpha x channels (section 3.3), at least 1; whole for the paper's alphas."""
    return max(1, int(round(channels * alpha)))


@register_model
def mobilenet_v1(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                 width_multiplier: float = 1.0, **kwargs) -> MobileNetV1:
    """MobileNet-V1 (timm `mobilenetv1_100` at alpha = 1): 4,231,976 parameters, ~569M MACs.

    `width_multiplier` is the paper's alpha (0.25, 0.5, 0.75, 1.0 in Table 6);
    `act="relu"` gives the paper's activation instead of timm's ReLU6.
    """
    return MobileNetV1(num_classes=num_classes, in_chans=in_chans, width_multiplier=width_multiplier,
                       small_input=small_input, **kwargs)
