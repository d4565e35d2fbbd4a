"""GoogLeNet / Inception-v1 (Szegedy et al. 2014, "Going deeper with convolutions").

Two builders, one class:

    googlenet        torchvision's GoogLeNet, weight-compatible with
                     torchvision.models.googlenet(weights=None): batch norm after
                     every convolution (eps 1e-3), a 3x3 convolution in the "5x5"
                     branch (a quirk of the port, kept), a 2x2 maxpool4, no LRN,
                     dropout 0.2; 13,004,888 parameters with the two auxiliary
                     heads, 6,624,904 without (aux_logits=False).
    googlenet_paper  the paper's network (Table 1, Figure 3): real 5x5 branches,
                     LRN after the first max pooling and after conv3 (the 3x3;
                     AlexNet's section 3.3 formula and constants, layers.LRN),
                     no batch norm (biased convolutions), 3x3/2 max pooling
                     everywhere, dropout 0.4 before the classifier, and the
                     auxiliary heads of section 5 (5x5/3 average pooling, 1x1 conv
                     with 128 filters, fc 1024, dropout 0.7, linear).

Shapes at 224x224 (Table 1):

    conv1 7x7/2 -> 64x112x112, maxpool 3x3/2 -> 56x56 [LRN]
    conv2 1x1 -> 64, conv3 3x3 -> 192x56x56 [LRN], maxpool -> 192x28x28
    inception3a -> 256, 3b -> 480 (28x28), maxpool -> 14x14
    inception4a -> 512 [aux1], 4b 512, 4c 512, 4d 528 [aux2], 4e 832, maxpool -> 7x7
    inception5a -> 832, 5b -> 1024 (7x7), average pool -> 1024, dropout, fc

Auxiliary classifiers (section 5). They exist only to help training: in
train mode, with `aux_logits=True` (the default, as torchvision's), `forward`
returns a `GoogLeNetOutputs(logits, aux_logits2, aux_logits1)` named tuple, the
same as torchvision's; in eval mode it returns the logits tensor alone and the
auxiliary heads are skipped. A training loop combines them as the paper does,
"their loss gets added to the total loss of the network with a discount weight
(the losses of the auxiliary classifiers were weighted by 0.3)":

    out = model(x)
    if isinstance(out, tuple):          # train mode with aux heads
        logits, *aux = out
        loss = F.cross_entropy(logits, y) + 0.3 * sum(F.cross_entropy(a, y) for a in aux)

which is `googlenet_loss(out, y)`. `forward_features` and `forward_head` never
involve the auxiliary heads.

transform_input (googlenet only, default False as torchvision's weights=None
builder): torchvision's pretrained GoogLeNet weights were ported from a network
fed with (x - 0.5) / 0.5 pixels; transform_input=True turns an ImageNet-
normalised input into that. Set it when you load those weights, nowhere else.
"""
from __future__ import annotations

from collections import namedtuple

import torch
import torch.nn.functional as F
from torch import nn

from convscope.layers import LRN, ConvBNAct, Inception
from convscope.models._base import Classifier, check_input
from convscope.models._registry import register_model

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

AUX_WEIGHT = 0.3  # section 5: the auxiliary losses' discount weight

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); each input is the previous output
INCEPTIONS: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


def googlenet_loss(output: torch.Tensor | tuple, target: torch.Tensor, *, aux_weight: float = AUX_WEIGHT,
                   criterion=F.cross_entropy) -> torch.Tensor:
    """Loss of a GoogLeNet output: plain `criterion` on a tensor; on a
    `GoogLeNetOutputs` the main loss plus `aux_weight` times each auxiliary loss."""
    if not isinstance(output, tuple):
        return criterion(output, target)
    logits, *aux = output
    return criterion(logits, target) + aux_weight * sum(criterion(a, target) for a in aux if a is not None)


class InceptionAux(nn.Module):
    """An auxiliary classifier (section 5), attached to inception4a and 4d:
    average pooling to 4x4, 1x1 conv with 128 filters + ReLU, fc 1024 + ReLU,
    dropout 0.7, linear to the classes. 2048 = 128 x 4 x 4 features reach fc1."""

    def __init__(self, in_ch: int, num_classes: int, *, pool: nn.Module, bn: bool, dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = pool
        self.conv = ConvBNAct(in_ch, 128, 1, bn=bn, bn_eps=1e-3)
        self.fc1 = nn.Linear(2048, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)  # (N, 2048)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


def _aux_pool(paper: bool, small_input: bool) -> nn.Module:
    """The paper's 5x5/3 average pooling turns 4a's and 4d's 14x14 into 4x4 (section 5);
    torchvision, and any input smaller than 224, pools to 4x4 adaptively."""
    return nn.AvgPool2d(5, stride=3) if paper and not small_input else nn.AdaptiveAvgPool2d((4, 4))


class GoogLeNet(Classifier):
    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, paper: bool = False,
                 aux_logits: bool = True, transform_input: bool = False, small_input: bool = False,
                 dropout: float | None = None, dropout_aux: float = 0.7) -> None:
        super().__init__()
        if transform_input and in_chans != 3:
            raise ValueError(f"transform_input re-normalises RGB images; it needs in_chans=3, got {in_chans}")
        self.in_chans, self.num_features = in_chans, 1024
        self.default_input_size = (in_chans, 32, 32) if small_input else (in_chans, 224, 224)
        self.aux_logits, self.transform_input = aux_logits, transform_input
        bn = not paper
        conv = dict(bn=bn, bn_eps=1e-3)
        if small_input:  # CIFAR-style stem: 3x3 stride 1 and no first pooling
            self.conv1, self.maxpool1 = ConvBNAct(in_chans, 64, 3, **conv), nn.Identity()
        else:
            self.conv1 = ConvBNAct(in_chans, 64, 7, stride=2, padding=3, **conv)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # The paper draws "LocalRespNorm" (Figure 3) but gives no constants: AlexNet's section 3.3
        # formula and constants (k=2, n=5, alpha=1e-4, beta=0.75, alpha not divided by n). Caffe's
        # bvlc_googlenet computes LRN(k=1.0, convention="torch"), i.e. k=1 and alpha 1e-4/5.
        self.norm1 = LRN() if paper else nn.Identity()
        self.conv2 = ConvBNAct(64, 64, 1, **conv)
        self.conv3 = ConvBNAct(64, 192, 3, **conv)
        self.norm2 = LRN() if paper else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._add_inceptions(paper)
        if aux_logits:
            aux = dict(bn=bn, dropout=dropout_aux)
            self.aux1 = InceptionAux(512, num_classes, pool=_aux_pool(paper, small_input), **aux)
            self.aux2 = InceptionAux(528, num_classes, pool=_aux_pool(paper, small_input), **aux)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # the paper's 7x7/1 average pooling at 224
        self.dropout = nn.Dropout(dropout if dropout is not None else (0.4 if paper else 0.2))
        self.fc = nn.Linear(1024, num_classes)
        self._init_weights(paper)

    def _add_inceptions(self, paper: bool) -> None:
        ch = 192
        for name, widths in INCEPTIONS.items():
            block = Inception(ch, *widths, kernel5=5 if paper else 3, bn=not paper)
            self.add_module(name, block)
            ch = block.out_channels
            if name == "inception3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "inception4e":  # Table 1 has 3x3/2; torchvision 2x2/2 (same 7x7 at 224)
                self.maxpool4 = nn.MaxPool2d(3 if paper else 2, stride=2, ceil_mode=True)

    def _init_weights(self, paper: bool) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if paper and isinstance(m, nn.Conv2d):  # no batch norm: He init keeps the forward scale
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                else:  # torchvision's choice
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.transform_input:
            return x
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return (x * std + mean - 0.5) / 0.5  # ImageNet-normalised -> (pixel - 0.5) / 0.5

    def _body(self, x: torch.Tensor, aux: list[torch.Tensor] | None) -> torch.Tensor:
        x = self.norm1(self.maxpool1(self.conv1(self._transform_input(x))))  # (N, 64, 56, 56)
        x = self.maxpool2(self.norm2(self.conv3(self.conv2(x))))             # (N, 192, 28, 28)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))             # (N, 480, 14, 14)
        x = self.inception4a(x)                                              # (N, 512, 14, 14)
        if aux is not None:
            aux.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))          # (N, 528, 14, 14)
        if aux is not None:
            aux.append(self.aux2(x))
        x = self.maxpool4(self.inception4e(x))                               # (N, 832, 7, 7)
        return self.inception5b(self.inception5a(x))                         # (N, 1024, 7, 7)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._body(x, None)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))  # (N, 1024)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        check_input(x, self.in_chans)
        aux: list[torch.Tensor] | None = [] if self.training and self.aux_logits else None
        logits = self.forward_head(self._body(x, aux))
        return logits if aux is None else GoogLeNetOutputs(logits, aux[1], aux[0])

    def reset_classifier(self, num_classes: int) -> None:
        """A new `fc`, and new last layers for the auxiliary heads (they predict the same classes)."""
        self.fc = nn.Linear(1024, num_classes)
        if self.aux_logits:
            self.aux1.fc2 = nn.Linear(1024, num_classes)
            self.aux2.fc2 = nn.Linear(1024, num_classes)


@register_model
def googlenet(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, aux_logits: bool = True,
              transform_input: bool = False, **kwargs) -> GoogLeNet:
    """torchvision's GoogLeNet (batch norm, 3x3 "5x5" branches): 13,004,888
    parameters with the auxiliary heads, 6,624,904 without."""
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, small_input=small_input, aux_logits=aux_logits,
                     transform_input=transform_input, **kwargs)


@register_model
def googlenet_paper(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                    aux_logits: bool = True, **kwargs) -> GoogLeNet:
    """Inception-v1 as the paper draws it (5x5 branches, LRN, no batch norm, aux heads for training)."""
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, small_input=small_input, aux_logits=aux_logits,
                     paper=True, **kwargs)
