"""LeNet-5 (LeCun et al. 1998), the explorer's demo network, with ReLU and max pooling.

The 28x28 digit is padded by 2 to the paper's 32x32 (conv1's padding), so
conv1 sees every pixel at the centre of some window:

    input   1x28x28  (1x32x32 after padding 2)
    conv1   6@5x5    -> 6x28x28
    pool1   max 2x2  -> 6x14x14
    conv2   16@5x5   -> 16x10x10
    pool2   max 2x2  -> 16x5x5   (400 features)
    fc1     120, fc2 100, output 10
"""
from __future__ import annotations

import torch
from torch import nn

from convscope.models._base import Classifier
from convscope.models._registry import register_model


class LeNet5(Classifier):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, *, input_size: int = 28,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.default_input_size = (in_chans, input_size, input_size)
        self.conv1 = nn.Conv2d(in_chans, 6, 5, padding=2)  # (N, 6, 28, 28)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)                         # (N, 6, 14, 14)
        self.conv2 = nn.Conv2d(6, 16, 5)                     # (N, 16, 10, 10)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)                         # (N, 16, 5, 5)
        side = ((input_size + 4 - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"lenet5 needs an input of at least 12x12, got {input_size}x{input_size}")
        self.num_features = 16 * side * side
        self.fc1 = nn.Linear(self.num_features, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 100)
        self.relu4 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(100, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = self.relu3(self.fc1(x))
        x = self.dropout(self.relu4(self.fc2(x)))
        return x if pre_logits else self.output(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.output = nn.Linear(self.output.in_features, num_classes)


@register_model
def lenet5(*, num_classes: int = 10, in_chans: int = 1, small_input: bool = True, **kwargs) -> LeNet5:
    """The demo network of the explorer (63,802 parameters for 10 classes).

    `small_input` is accepted for the zoo's common signature; LeNet is small already.
    """
    return LeNet5(num_classes=num_classes, in_chans=in_chans, **kwargs)
