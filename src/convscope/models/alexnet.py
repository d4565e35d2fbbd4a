"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) and ZFNet (Zeiler & Fergus 2013).

Three networks, one class, the variants as data (`cfgs`):

    alexnet        torchvision's AlexNet: the one-GPU network of Krizhevsky's
                   "One weird trick" (2014): 64/192/384/256/256 kernels, no LRN,
                   61,100,840 parameters. Weight-compatible with
                   torchvision.models.alexnet.
    alexnet_paper  the 2012 paper's two-GPU network (section 3.5, Figure 2):
                   96/256/384/384/256 kernels, conv2, conv4, conv5 grouped
                   (groups=2: each GPU's kernels see only that GPU's maps), LRN
                   after conv1 and conv2 (section 3.3's formula exactly:
                   k + alpha * sum with alpha = 1e-4, layers.LRN), overlapping 3x3/2 max
                   pooling (section 3.4), dropout 0.5 (section 4.2), 227x227
                   input: 60,965,224 parameters. groups=1 is the single-tower
                   network the lecture quotes: 62,378,344 parameters,
                   about 1.1 billion multiply-adds at 227x227.
    zfnet          ZFNet (Zeiler & Fergus 2013, Figure 3): a 7x7 stride-2 first
                   layer instead of 11x11 stride 4 (section 4.1: the big stride
                   aliased the layer-2 features), dense connections (one GPU),
                   and the wider middle layers of Table 3
                   ("layers 3,4,5: 512, 1024, 512 maps"), as the lecture states.

The shape walk of alexnet_paper at 227x227 (conv -> ReLU [-> LRN] [-> pool]):

    conv1  96@11x11/4       -> 96x55x55,  LRN, pool 3x3/2 -> 96x27x27
    conv2  256@5x5 pad 2    -> 256x27x27, LRN, pool       -> 256x13x13
    conv3  384@3x3 pad 1    -> 384x13x13
    conv4  384@3x3 pad 1    -> 384x13x13
    conv5  256@3x3 pad 1    -> 256x13x13,      pool       -> 256x6x6 (9216)
    fc6 4096, fc7 4096 (dropout 0.5 before each), fc8 num_classes

Layers are named as the paper numbers them (conv1..conv5, norm1, pool1, fc6..fc8);
`reference_key` maps them to torchvision's positional names (features.0, ...).
With `small_input=True` conv1 becomes a 3x3 stride-1 convolution and the first
max pooling goes, so 28x28 and 32x32 images keep a spatial extent to the end.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from torch import nn

from convscope.layers import LRN
from convscope.models._base import ConvFCNet
from convscope.models._registry import register_model


class ConvSpec(NamedTuple):
    """One convolution layer and what follows its ReLU ("norm" = LRN, "pool" = 3x3/2 max pool)."""

    out: int
    kernel: int
    stride: int
    padding: int
    groups: int = 1
    after: tuple[str, ...] = ()


cfgs: dict[str, list[ConvSpec]] = {
    "alexnet": [
        ConvSpec(64, 11, 4, 2, after=("pool",)),
        ConvSpec(192, 5, 1, 2, after=("pool",)),
        ConvSpec(384, 3, 1, 1),
        ConvSpec(256, 3, 1, 1),
        ConvSpec(256, 3, 1, 1, after=("pool",)),
    ],
    # groups=2 marks the layers that were split across the two GPUs (section 3.5)
    "alexnet_paper": [
        ConvSpec(96, 11, 4, 0, after=("norm", "pool")),
        ConvSpec(256, 5, 1, 2, groups=2, after=("norm", "pool")),
        ConvSpec(384, 3, 1, 1),
        ConvSpec(384, 3, 1, 1, groups=2),
        ConvSpec(256, 3, 1, 1, groups=2, after=("pool",)),
    ],
    # Figure 3: pooling comes before the contrast normalisation; 224 -> 110 -> 55 -> 26 -> 13 -> 6
    "zfnet": [
        ConvSpec(96, 7, 2, 1, after=("pool", "norm")),
        ConvSpec(256, 5, 2, 0, after=("pool", "norm")),
        ConvSpec(512, 3, 1, 1),
        ConvSpec(1024, 3, 1, 1),
        ConvSpec(512, 3, 1, 1, after=("pool",)),
    ],
}


def _features(specs: list[ConvSpec], in_chans: int, *, ceil_mode: bool, small_input: bool) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    ch = in_chans
    for i, spec in enumerate(specs, 1):
        if small_input and i == 1:  # CIFAR-style stem: 3x3 stride 1, no first pooling
            spec = spec._replace(kernel=3, stride=1, padding=1, after=tuple(a for a in spec.after if a != "pool"))
        if ch % spec.groups or spec.out % spec.groups:
            raise ValueError(f"groups={spec.groups} must divide conv{i}'s {ch} input and {spec.out} output "
                             f"channels; use groups=1 or 2")
        layers[f"conv{i}"] = nn.Conv2d(ch, spec.out, spec.kernel, stride=spec.stride, padding=spec.padding,
                                       groups=spec.groups)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
        for op in spec.after:
            # LRN as section 3.3 writes it: k=2, n=5, alpha=1e-4 (not divided by n, unlike
            # torch's nn.LocalResponseNorm and Caffe), beta=0.75; ZFNet's "contrast normalisation
            # across feature maps" (section 3) is the same layer
            layers[f"{op}{i}"] = LRN() if op == "norm" else nn.MaxPool2d(3, stride=2, ceil_mode=ceil_mode)
        ch = spec.out
    return nn.Sequential(layers)


def _classifier(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    # dropout before fc6 and fc7 (section 4.2), in torchvision's order
    return nn.Sequential(OrderedDict([
        ("drop6", nn.Dropout(dropout)), ("fc6", nn.Linear(in_features, 4096)), ("relu6", nn.ReLU(inplace=True)),
        ("drop7", nn.Dropout(dropout)), ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU(inplace=True)),
        ("fc8", nn.Linear(4096, num_classes)),
    ]))


class AlexNet(ConvFCNet):
    """Five convolutions and three fully connected layers; `specs` picks the variant."""

    def __init__(self, specs: list[ConvSpec], *, num_classes: int = 1000, in_chans: int = 3,
                 dropout: float = 0.5, ceil_mode: bool = False, small_input: bool = False,
                 input_size: int = 224, he_init: bool = False) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.default_input_size = (in_chans, 32, 32) if small_input else (in_chans, input_size, input_size)
        self.features = _features(specs, in_chans, ceil_mode=ceil_mode, small_input=small_input)
        self.num_features = specs[-1].out
        self.head_hidden_size = 4096
        # 6x6 is what pool5 gives at the native size (a no-op there); other sizes are pooled to it
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = _classifier(self.num_features * 6 * 6, num_classes, dropout)
        if he_init:
            self._he_init()

    def _he_init(self) -> None:
        """He et al. 2015 initialisation: without batch norm, PyTorch's default init shrinks
        the signal about 100x by fc8 and the paper's N(0, 0.01) (section 5) needs its
        long schedule; N(0, 2/fan_in) keeps every layer's output at the input's scale."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier.fc8.weight, 0, 0.01)


@register_model
def alexnet(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> AlexNet:
    """torchvision's AlexNet ("One weird trick" one-GPU variant): 61,100,840 parameters."""
    return AlexNet(cfgs["alexnet"], num_classes=num_classes, in_chans=in_chans, small_input=small_input, **kwargs)


@register_model
def alexnet_paper(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, groups: int = 2,
                  **kwargs) -> AlexNet:
    """The 2012 paper's network at 227x227: groups=2 (the two GPUs, 60,965,224
    parameters) or groups=1 (one tower, 62,378,344 parameters, ~1.1G MACs)."""
    specs = [s._replace(groups=groups) if s.groups != 1 else s for s in cfgs["alexnet_paper"]]
    kwargs.setdefault("he_init", True)
    return AlexNet(specs, num_classes=num_classes, in_chans=in_chans, small_input=small_input,
                   input_size=227, **kwargs)


@register_model
def zfnet(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
          widths: tuple[int, int, int] = (512, 1024, 512), **kwargs) -> AlexNet:
    """ZFNet at 224x224. `widths` are conv3-5's kernels: (512, 1024, 512) as the
    lecture and Table 3 have it, (384, 384, 256) for the network of Figure 3."""
    if len(widths) != 3 or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be three positive kernel counts for conv3, conv4, conv5, got {widths!r}")
    specs = list(cfgs["zfnet"])
    for i, width in enumerate(widths, 2):
        specs[i] = specs[i]._replace(out=width)
    # Figure 3's sizes (110 -> 55, 26 -> 13) need ceil-mode pooling, as in Caffe
    kwargs.setdefault("he_init", True)
    return AlexNet(specs, num_classes=num_classes, in_chans=in_chans, small_input=small_input,
                   ceil_mode=True, **kwargs)
