"""VGG (Simonyan & Zisserman 2014, "Very deep convolutional networks").

Only 3x3 convolutions (stride 1, padding 1) and 2x2/2 max pooling: a stack of
two 3x3 layers sees 5x5, three see 7x7, with fewer weights (3 * 3^2 C^2 = 27 C^2
instead of 49 C^2) and more non-linearities (section 2.3). Table 1's columns are
the variants, as data in `cfgs` (numbers are conv widths, "M" a max pooling):

    vgg11 = A (133M), vgg13 = B (133M), vgg16 = D (138M), vgg19 = E (144M)

then fc6 4096, fc7 4096 (dropout 0.5 after each, section 3.1), fc8 num_classes.
The `_bn` variants add batch norm after every convolution (torchvision's, not
in the paper). All eight are weight-compatible with torchvision's builders of
the same name: layers carry Caffe's names (conv3_2 = block 3, conv 2; pool1..5;
fc6..fc8) and `reference_key` maps them to torchvision's positions.

With `small_input=True` the first max pooling goes (the stem is already 3x3
stride 1), so 28x28 -> 28, 14, 7, 3, 1 and 32x32 -> 32, 16, 8, 4, 2 through the
four remaining poolings; the features are then averaged to 1x1 (not 7x7) so fc6
reads 512 numbers instead of 49 copies of them (2.1M weights, not 102.8M).
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from convscope.models._base import ConvFCNet
from convscope.models._registry import register_model

cfgs: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def make_layers(cfg: list[int | str], in_chans: int, *, batch_norm: bool, small_input: bool) -> nn.Sequential:
    """The convolutional body, named convS_J / bnS_J / reluS_J / poolS (S = block, J = layer)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    ch, block, j = in_chans, 1, 1
    for v in cfg:
        if v == "M":
            if not (small_input and block == 1):
                layers[f"pool{block}"] = nn.MaxPool2d(kernel_size=2, stride=2)
            block, j = block + 1, 1
            continue
        layers[f"conv{block}_{j}"] = nn.Conv2d(ch, int(v), kernel_size=3, padding=1)
        if batch_norm:
            layers[f"bn{block}_{j}"] = nn.BatchNorm2d(int(v))
        layers[f"relu{block}_{j}"] = nn.ReLU(inplace=True)
        ch, j = int(v), j + 1
    return nn.Sequential(layers)


class VGG(ConvFCNet):
    def __init__(self, cfg: list[int | str], *, num_classes: int = 1000, in_chans: int = 3,
                 batch_norm: bool = False, dropout: float = 0.5, small_input: bool = False) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.default_input_size = (in_chans, 32, 32) if small_input else (in_chans, 224, 224)
        self.features = make_layers(cfg, in_chans, batch_norm=batch_norm, small_input=small_input)
        self.num_features = 512
        self.head_hidden_size = 4096
        side = 1 if small_input else 7  # 7x7 is pool5's output at 224x224 (a no-op there)
        self.avgpool = nn.AdaptiveAvgPool2d((side, side))
        self.classifier = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(512 * side * side, 4096)), ("relu6", nn.ReLU(inplace=True)),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU(inplace=True)), ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]))
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation (the paper pre-trained A to initialise the deeper
        # nets, section 3.1; He et al.'s init makes that unnecessary)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)


def _vgg(variant: str, batch_norm: bool, num_classes: int, in_chans: int, small_input: bool, **kwargs) -> VGG:
    return VGG(cfgs[variant], num_classes=num_classes, in_chans=in_chans, batch_norm=batch_norm,
               small_input=small_input, **kwargs)


@register_model
def vgg11(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> VGG:
    """VGG-11, configuration A of Table 1 (132,863,336 parameters)."""
    return _vgg("vgg11", False, num_classes, in_chans, small_input, **kwargs)


@register_model
def vgg13(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> VGG:
    """VGG-13, configuration B of Table 1 (133,047,848 parameters)."""
    return _vgg("vgg13", False, num_classes, in_chans, small_input, **kwargs)


@register_model
def vgg16(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> VGG:
    """VGG-16, configuration D of Table 1 (138,357,544 parameters)."""
    return _vgg("vgg16", False, num_classes, in_chans, small_input, **kwargs)


@register_model
def vgg19(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> VGG:
    """VGG-19, configuration E of Table 1 (143,667,240 parameters)."""
    return _vgg("vgg19", False, num_classes, in_chans, small_input, **kwargs)


@register_model
def vgg11_bn(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> VGG:
    """VGG-11 with batch norm after every convolution (torchvision's)."""
    return _vgg("vgg11", True, num_classes, in_chans, small_input, **kwargs)


@register_model
def vgg13_bn(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> VGG:
    """VGG-13 with batch norm after every convolution (torchvision's)."""
    return _vgg("vgg13", True, num_classes, in_chans, small_input, **kwargs)


@register_model
def vgg16_bn(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> VGG:
    """VGG-16 with batch norm after every convolution (torchvision's)."""
    return _vgg("vgg16", True, num_classes, in_chans, small_input, **kwargs)


@register_model
def vgg19_bn(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False, **kwargs) -> VGG:
    """VGG-19 with batch norm after every convolution (torchvision's)."""
    return _vgg("vgg19", True, num_classes, in_chans, small_input, **kwargs)
