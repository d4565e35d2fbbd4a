"""Shared torch building blocks, named as the lecture names them.

Family-specific blocks live in their family file under `convscope.models`;
what two or more families use lives here.
"""
from __future__ import annotations

import torch
from torch import nn


class ConvBNAct(nn.Sequential):
    """Convolution -> batch norm -> activation, the unit of every modern CNN.

    Children are named `conv`, `bn`, `act` (as timm's ConvNormAct); `bn=False`
    gives a biased convolution with no normalisation (the 2012-2014 networks).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int | tuple[int, int] = 3, *, stride: int = 1,
                 padding: int | tuple[int, int] | None = None, groups: int = 1, dilation: int = 1,
                 bn: bool = True, act: type[nn.Module] | None = nn.ReLU, bn_eps: float = 1e-5) -> None:
        if padding is None:  # "same" for odd kernels at stride 1
            ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            padding = (dilation * (ks[0] - 1) // 2, dilation * (ks[1] - 1) // 2)
        layers: dict[str, nn.Module] = {
            "conv": nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, groups=groups, bias=not bn)
        }
        if bn:
            layers["bn"] = nn.BatchNorm2d(out_ch, eps=bn_eps)
        if act is not None:
            layers["act"] = act(inplace=True) if act in (nn.ReLU, nn.ReLU6) else act()
        super().__init__()
        for key, mod in layers.items():
            self.add_module(key, mod)


class LRN(nn.LocalResponseNorm):
    """Local response normalisation across channels (AlexNet, section 3.3):

        b[c] = a[c] / (k + alpha/n * sum_{c' near c} a[c']^2) ** beta

    with AlexNet's constants n=5, alpha=1e-4, beta=0.75, k=2. PyTorch divides
    alpha by n as well, so the numbers match `convscope.ops.local_response_norm`.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__(size=size, alpha=alpha, beta=beta, k=k)


# --- Residual family: ResNet, ResNeXt, SENet, DenseNet, MobileNet ---
# Child names follow torchvision/timm (conv1, bn1, downsample, se.fc1, denselayerN, ...)
# so their state dicts load without a key mapping.


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018, section 3, Fig. 1): re-weight channels.

        squeeze    z_c = 1/(H W) sum_{i,j} u_c(i, j)            (eq. 2, global average)
        excitation s = sigmoid(W2 relu(W1 z))                   (eq. 3, W1: C -> C/r, W2: C/r -> C)
        scale      x~_c = s_c * u_c                             (eq. 4)

    The two fully connected layers act on a 1x1 map, so they are 1x1 convolutions
    (`fc1`, `fc2`, with biases, as timm's SEModule). `reduction` is r (section 6.1
    picks 16); each block adds 2 C^2 / r weights and C / r + C biases.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"SE reduction ratio r={reduction} must be between 1 and the channels ({channels})")
        hidden = channels // reduction
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean((2, 3), keepdim=True)             # (N, C, 1, 1)  squeeze
        s = self.gate(self.fc2(self.act(self.fc1(z))))  # (N, C, 1, 1)  excitation
        return x * s


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    """Projection shortcut (ResNet section 3.3, option B): 1x1 conv + BN when the shape changes."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity shortcut (ResNet, He et al. 2016, Fig. 2/5 left):
    y = relu(F(x) + x), used by ResNet-18/34."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, *, stride: int = 1, groups: int = 1, base_width: int = 64,
                 se_reduction: int | None = None, stride_in_1x1: bool = False) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock has no grouped convolution; use Bottleneck for ResNeXt")
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcite(planes, se_reduction) if se_reduction else None
        self.downsample = _downsample(in_ch, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4) with a shortcut (ResNet section 3.3, Fig. 5 right).

    - `stride_in_1x1=False` is "ResNet v1.5" (torchvision, timm): the stride sits on the
      3x3 conv, so no input pixel is skipped by a strided 1x1. The paper's v1 (and the
      original Caffe model) strides the first 1x1 conv: `stride_in_1x1=True`.
    - `groups`/`base_width` give ResNeXt's aggregated transform (Xie et al. 2017, Fig. 3c):
      width = planes * base_width/64 * groups, e.g. 32x4d -> 128 channels in 32 groups.
    - `se_reduction=r` adds squeeze-and-excitation before the sum (SENet Fig. 3, SE-ResNet).
    """

    expansion = 4

    def __init__(self, in_ch: int, planes: int, *, stride: int = 1, groups: int = 1, base_width: int = 64,
                 se_reduction: int | None = None, stride_in_1x1: bool = False) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_ch = planes * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_ch, width, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=s3, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.se = SqueezeExcite(out_ch, se_reduction) if se_reduction else None
        self.downsample = _downsample(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))     # (N, width, H, W)
        out = self.relu(self.bn2(self.conv2(out)))   # (N, width, H/s, W/s)
        out = self.bn3(self.conv3(out))              # (N, 4 planes, H/s, W/s)
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + identity)


class DenseLayer(nn.Module):
    """BN-ReLU-Conv(1x1, 4k) -> BN-ReLU-Conv(3x3, k) (DenseNet-B, Huang et al. 2017, section 3):
    reads the concatenation of every earlier feature map in its block, adds k (growth rate) maps."""

    def __init__(self, in_ch: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop = nn.Dropout(drop_rate)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)                          # (N, C0 + i k, H, W)
        x = self.conv1(self.relu1(self.norm1(x)))           # (N, 4k, H, W)
        return self.drop(self.conv2(self.relu2(self.norm2(x))))  # (N, k, H, W)


class DenseBlock(nn.Module):
    """`num_layers` DenseLayers, each fed all earlier outputs (DenseNet eq. 2:
    x_l = H_l([x_0, ..., x_{l-1}])); children named denselayer1.. as torchvision."""

    def __init__(self, num_layers: int, in_ch: int, growth_rate: int, bn_size: int = 4,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_ch + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)
        self.out_channels = in_ch + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.children():
            features.append(layer(features))
        return torch.cat(features, 1)                       # (N, C0 + L k, H, W)


class Transition(nn.Sequential):
    """Between dense blocks: BN-ReLU-Conv(1x1) then 2x2 average pooling (DenseNet section 3,
    "transition layers"; compression theta = out/in, 0.5 in DenseNet-BC)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv -> BN -> ReLU, then 1x1 pointwise conv -> BN -> ReLU
    (MobileNet, Howard et al. 2017, section 3.1, Fig. 3 right). Cost ratio to a full
    3x3 conv: 1/out + 1/9 (eq. 5); children `dw` and `pw` are ConvBNAct."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int = 1, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_ch, in_ch, 3, stride=stride, groups=in_ch, act=act)  # one filter per channel
        self.pw = ConvBNAct(in_ch, out_ch, 1, act=act)                               # mixes channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


# --- Classic family: GoogLeNet's Inception modules ---
# Branch names follow torchvision's googlenet (branch1..branch4, Sequential indices)
# so its state dict loads without a key mapping.


class InceptionNaive(nn.Module):
    """The naive Inception module (Szegedy et al. 2014, "Going deeper with
    convolutions", section 4, Figure 2a): 1x1, 3x3 and 5x5 convolutions and a
    3x3 max pooling side by side on the same input, concatenated on channels.

    The pooling branch passes all `in_ch` channels through, so the output has
    ch1x1 + ch3x3 + ch5x5 + in_ch channels and every module makes the next one
    wider and costlier: the lecture's example (28x28x256 in; 128, 192, 96
    filters) costs 854M multiply-adds and outputs 672 channels. Figure 2b
    (`Inception`) fixes that with 1x1 "bottleneck" reductions.
    """

    def __init__(self, in_ch: int, ch1x1: int, ch3x3: int, ch5x5: int, *, bn: bool = False,
                 bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.branch1 = ConvBNAct(in_ch, ch1x1, 1, bn=bn, bn_eps=bn_eps)
        self.branch2 = ConvBNAct(in_ch, ch3x3, 3, bn=bn, bn_eps=bn_eps)
        self.branch3 = ConvBNAct(in_ch, ch5x5, 5, bn=bn, bn_eps=bn_eps)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, 1)  # (N, ch1x1 + ch3x3 + ch5x5 + in_ch, H, W)


class Inception(nn.Module):
    """The Inception module with dimension reductions (Szegedy et al. 2014,
    section 4, Figure 2b; the columns of Table 1 name its arguments):

        branch1: 1x1 conv (ch1x1)
        branch2: 1x1 conv (ch3x3red) -> 3x3 conv (ch3x3)
        branch3: 1x1 conv (ch5x5red) -> 5x5 conv (ch5x5)
        branch4: 3x3 max pool, stride 1 -> 1x1 conv (pool_proj)

    all concatenated on channels, same H x W. The 1x1 convolutions before the
    expensive 3x3 and 5x5 ones shrink the channels they see ("1x1 convolutions
    are used to compute reductions", section 4), and the pool projection keeps
    the output width fixed. Every convolution is followed by ReLU.

    `kernel5=5` is the paper's module; torchvision's GoogLeNet uses 3 there (a
    known quirk kept for weight compatibility). `bn=True, bn_eps=1e-3` adds
    torchvision's batch norm (the paper has none).
    """

    def __init__(self, in_ch: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, *, kernel5: int = 5, bn: bool = False, bn_eps: float = 1e-3) -> None:
        super().__init__()
        conv = dict(bn=bn, bn_eps=bn_eps)
        self.branch1 = ConvBNAct(in_ch, ch1x1, 1, **conv)
        self.branch2 = nn.Sequential(ConvBNAct(in_ch, ch3x3red, 1, **conv), ConvBNAct(ch3x3red, ch3x3, 3, **conv))
        self.branch3 = nn.Sequential(ConvBNAct(in_ch, ch5x5red, 1, **conv),
                                     ConvBNAct(ch5x5red, ch5x5, kernel5, **conv))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     ConvBNAct(in_ch, pool_proj, 1, **conv))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, 1)  # (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)


# ---- the Inception-v3/v4 family's units (TF-slim's networks: Inception-v4, Inception-ResNet-v2)

def conv_bn(in_ch: int, out_ch: int, kernel_size: int | tuple[int, int], *, stride: int = 1,
            padding: int | tuple[int, int] = 0) -> ConvBNAct:
    """Szegedy et al. 2016's unit "conv": conv -> BN (eps 1e-3, TF's) -> ReLU; padding 0
    ("V", valid) unless given."""
    return ConvBNAct(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bn_eps=1e-3)


def avg_pool_branch(in_ch: int, out_ch: int) -> nn.Sequential:
    """The pooling branch of the Inception-v3/v4 blocks: 3x3 average pool (stride 1, same) -> 1x1 conv."""
    return nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                         conv_bn(in_ch, out_ch, 1))


class FourBranchInception(nn.Module):
    """The 35x35 Inception block of Inception-v3 (Szegedy et al. 2015, arXiv:1512.00567, Figure 5),
    with its widths as arguments; every branch keeps H x W:

        branch0: 1x1 (ch1x1)
        branch1: 1x1 (mid_red) -> k x k (mid), k = `mid_kernel` (5 in TF-slim's Mixed_5b, 3 in Inception-A)
        branch2: 1x1 (double_red) -> 3x3 (double) -> 3x3 (double): a factorised 5x5
        branch3: 3x3 average pool -> 1x1 (pool_proj)

    Inception-v4's Inception-A (Figure 4) is 384 -> 96 | 64, 96 | 64, 96 | 96 with k = 3;
    Inception-ResNet-v2's Mixed_5b is 192 -> 96 | 48, 64 | 64, 96 | 64 with k = 5.
    """

    def __init__(self, in_ch: int, ch1x1: int, mid_red: int, mid: int, double_red: int, double: int,
                 pool_proj: int, *, mid_kernel: int = 3) -> None:
        super().__init__()
        self.branch0 = conv_bn(in_ch, ch1x1, 1)
        self.branch1 = nn.Sequential(conv_bn(in_ch, mid_red, 1), conv_bn(mid_red, mid, mid_kernel,
                                                                         padding=mid_kernel // 2))
        self.branch2 = nn.Sequential(conv_bn(in_ch, double_red, 1), conv_bn(double_red, double, 3, padding=1),
                                     conv_bn(double, double, 3, padding=1))
        self.branch3 = avg_pool_branch(in_ch, pool_proj)
        self.out_channels = ch1x1 + mid + double + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)
