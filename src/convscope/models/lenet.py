"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, section II.B, Fig. 2) and the
explorer's demo network (Adam Harley's 2015 interactive visualisation).

Both are the same chain; only the width of the second fully connected layer differs:

    input   1x28x28  (1x32x32 after padding 2: the paper's input size)
    conv1   6@5x5    -> 6x28x28         C1
    pool1   max 2x2  -> 6x14x14         S2
    conv2   16@5x5   -> 16x10x10        C3
    pool2   max 2x2  -> 16x5x5 (400)    S4
    fc1     120                         C5 (a 5x5 conv on a 5x5 map: a fully connected layer)
    fc2     84   (lenet5)   | 100 (lenet5_harley)     F6
    output  10

`lenet5` keeps the paper's widths (C1 6, C3 16, C5 120, F6 84, 10 outputs:
61,706 parameters for 10 classes, the paper's "about 60,000") and modernises
what the paper did differently: ReLU instead of the scaled tanh
1.7159 tanh(2x/3), max pooling instead of the trainable subsampling (sum x
coefficient + bias, then the squashing function), every C3 map connected to
all six S2 maps (Table I's sparse scheme dropped), and a linear output layer
with softmax cross-entropy instead of the Euclidean RBF units.

`lenet5_harley` is the network of Harley's "An Interactive Node-Link
Visualization of Convolutional Neural Networks" (ISVC 2015), which convscope's
explorer follows: the same convolutions, then 120 -> 100 -> 10 (63,802
parameters). `make demo` and the mnist-fast recipe train it.

The 28x28 digit is padded by 2 to the paper's 32x32 (conv1's padding), so
conv1 sees every pixel at the centre of some window.
"""
from __future__ import annotations

import torch
from torch import nn

from convscope.models._base import Classifier
from convscope.models._registry import register_model


class LeNet5(Classifier):
    """conv1 -> pool1 -> conv2 -> pool2 -> fc1 -> fc2 -> output; `widths` are fc1's and fc2's units."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, *, input_size: int = 28,
                 dropout: float = 0.0, widths: tuple[int, int] = (120, 84)) -> None:
        super().__init__()
        if len(widths) != 2 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be two positive unit counts (fc1, fc2), got {widths!r}")
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
        self.fc1 = nn.Linear(self.num_features, widths[0])   # (N, 120)  C5
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(widths[0], widths[1])           # (N, 84)   F6 (100 in Harley's)
        self.relu4 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(widths[1], num_classes)      # (N, 10)

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
    """LeNet-5 with the paper's widths (C5 120, F6 84): 61,706 parameters for 10 classes.

    ReLU and max pooling replace the scaled tanh and the trainable subsampling
    (see the module docstring). `small_input` is accepted for the zoo's common
    signature; LeNet is small already.
    """
    return LeNet5(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model
def lenet5_harley(*, num_classes: int = 10, in_chans: int = 1, small_input: bool = True,
                  **kwargs) -> LeNet5:
    """The explorer's demo network, Adam Harley's (2015): 120 -> 100 -> 10, 63,802 parameters."""
    kwargs.setdefault("widths", (120, 100))
    return LeNet5(num_classes=num_classes, in_chans=in_chans, **kwargs)
