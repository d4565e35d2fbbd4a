"""NASNet-A (Zoph, Vasudevan, Shlens, Le 2018: "Learning Transferable Architectures for
Scalable Image Recognition", CVPR, arXiv:1707.07012).

A controller RNN searched for two *cells* on CIFAR-10 (section 3): a Normal cell
that keeps the grid size and a Reduction cell that halves it (Figure 4). The
ImageNet networks stack them (Figure 2): a 3x3 stride-2 stem convolution, two
reduction cells as a stem, then N Normal cells, Reduction, N Normal, Reduction,
N Normal. "NASNet-A (N @ F)" names N and the F filters of the penultimate layer:
every cell of the last stage outputs F = 24 x C channels, C the first stage's
cell width, and each reduction doubles C (section 4.1).

    nasnet_a_large   NASNet-A (6 @ 4032): stem 96, C = 168, 331x331  (timm `nasnetalarge`, 88,753,150 params)
    nasnet_a_mobile  NASNet-A (4 @ 1056): stem 32, C = 44,  224x224  (the paper's mobile setting: 5.3M, 564M mult-adds)

Both are built from the same cell code below. A cell reads the two previous
cell outputs: h_i ("cur") and h_{i-1} ("prev"); each of its five blocks adds two
operations on two of {cur, prev, earlier blocks}, and the cell concatenates the
blocks nobody else used. The cells are written as data (the genotype), the way
Figure 4 draws them. Details from the released TF code, which the timm port and
its weights follow:
- every operation sees ReLU -> conv -> BN (eps 1e-3); separable convolutions are
  applied twice (Appendix A.4, "applied twice");
- stride-2 operations pad like TensorFlow's "SAME" (output ceil(n/2), the odd
  pixel of padding at the bottom/right); timm's stride-2 average pool counts
  those zero pads in the mean, and so do we, so that outputs match;
- when h_{i-1} is twice the size of h_i (the first cell after a reduction) it is
  brought down by a "factorised reduction": two 1x1 convolutions on the even
  and the odd pixels, concatenated;
- the cell after a Reduction cell reads, as its h_{i-1}, the same input the
  Reduction cell read (TF's `skip_reduction_layer_input`).
Not built: the auxiliary head and ScheduledDropPath (training-time regularisers;
timm has neither).

`small_input=True`: the stem convolution has stride 1 and padding 1, so a 28x28
image goes 28 -> 14 -> 7 -> 4 -> 2 through the four reductions; no parameter changes.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from convscope.layers import ConvBNAct
from convscope.models._base import Classifier
from convscope.models._registry import register_model

BN_EPS = 1e-3  # TF's batch-norm epsilon, which the released weights were trained with

# --------------------------------------------------------------------------- the cells as data (Figure 4)

Source = Union[str, int]  # "cur" (h_i), "prev" (h_{i-1}) or the index of an earlier block


class Genotype(NamedTuple):
    """A cell: five blocks (left op, left input, right op, right input), each block's
    output is left + right; `concat` lists what the cell outputs, side by side."""
    blocks: tuple[tuple[str, Source, str, Source], ...]
    concat: tuple[Source, ...]
    reduction: bool


NASNET_A_NORMAL = Genotype(
    blocks=(
        ("sep_5x5", "cur", "sep_3x3", "prev"),
        ("sep_5x5", "prev", "sep_3x3", "prev"),
        ("avg_3x3", "cur", "identity", "prev"),
        ("avg_3x3", "prev", "avg_3x3", "prev"),
        ("sep_3x3", "cur", "identity", "cur"),
    ),
    concat=("prev", 0, 1, 2, 3, 4),  # 6 x C channels
    reduction=False,
)

NASNET_A_REDUCTION = Genotype(
    blocks=(
        ("sep_5x5", "cur", "sep_7x7", "prev"),
        ("max_3x3", "cur", "sep_7x7", "prev"),
        ("avg_3x3", "cur", "sep_5x5", "prev"),
        ("identity", 1, "avg_3x3", 0),
        ("sep_3x3", 0, "max_3x3", "cur"),
    ),
    concat=(1, 2, 3, 4),  # 4 x C channels; ops on cur/prev have stride 2, ops on blocks stride 1
    reduction=True,
)


# --------------------------------------------------------------------------- TF "SAME" padding

def same_pads(hw: tuple[int, int], kernel_size: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow's "SAME" padding (top, bottom, left, right) of an input of `hw` pixels: the
    output has ceil(n / stride) pixels, and an odd pixel of padding goes to the bottom/right."""
    ph = max((math.ceil(hw[0] / stride) - 1) * stride + kernel_size - hw[0], 0)
    pw = max((math.ceil(hw[1] / stride) - 1) * stride + kernel_size - hw[1], 0)
    return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2


def pad_same(x: torch.Tensor, kernel_size: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad like TensorFlow's "SAME" (PyTorch's padding is symmetric)."""
    top, bottom, left, right = same_pads(tuple(x.shape[-2:]), kernel_size, stride)
    return F.pad(x, (left, right, top, bottom), value=value)


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TF "SAME" padding computed from the input size (needed at stride 2)."""

    def same_padding(self, hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """The padding protocol `convscope.analysis.layer_facts` reads: (top, bottom, left, right) for an input of `hw`."""
        return same_pads(hw, self.kernel_size[0], self.stride[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class PoolSame(nn.Module):
    """3x3 max or average pooling with TF "SAME" padding. At stride 1 the padding is
    symmetric and the average leaves it out; at stride 2 the zero pads are counted
    (as timm's AvgPool2dSame does)."""

    def __init__(self, kind: str, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.kind, self.kernel_size, self.stride = kind, kernel_size, stride
        # what the layer does, for the explorer (convscope.analysis.layer_facts): no ceil mode; the
        # average counts TF's zero pads at stride 2 only
        self.ceil_mode, self.count_include_pad, self.divisor_override = False, kind == "avg" and stride > 1, None

    def same_padding(self, hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) for an input of `hw` (symmetric k // 2 at stride 1)."""
        return same_pads(hw, self.kernel_size, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        if self.kind == "max":
            return F.max_pool2d(pad_same(x, k, s, value=float("-inf")), k, s)
        if s == 1:
            return F.avg_pool2d(x, k, 1, padding=k // 2, count_include_pad=False)
        return F.avg_pool2d(pad_same(x, k, s), k, s)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME"


def conv_same(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free convolution that keeps ceil(n / stride) pixels."""
    if stride == 1:  # symmetric padding is TF's SAME for odd kernels at stride 1
        return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, groups=groups, bias=False)
    return Conv2dSame(in_ch, out_ch, kernel_size, stride=stride, groups=groups, bias=False)


# --------------------------------------------------------------------------- operations

class ReLUConvBN(nn.Sequential):
    """ReLU -> 1x1 conv -> BN: how a cell adapts its inputs to its own width C."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)


class SeparableConv2d(nn.Module):
    """Depthwise-separable convolution: a KxK convolution per channel (groups = channels),
    then a 1x1 convolution that mixes channels (Chollet's Xception; MobileNet's unit)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise_conv2d = conv_same(in_ch, in_ch, kernel_size, stride, groups=in_ch)
        self.pointwise_conv2d = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv2d(self.depthwise_conv2d(x))


class BranchSeparables(nn.Module):
    """The "sep KxK" operation of Figure 4: (ReLU -> separable conv -> BN) twice
    (Appendix A.4); only the first has the stride. The middle width is the output
    width (they differ from the input only in the first stem cell)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.act_1 = nn.ReLU()
        self.separable_1 = SeparableConv2d(in_ch, out_ch, kernel_size, stride)
        self.bn_sep_1 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act_2 = nn.ReLU()
        self.separable_2 = SeparableConv2d(out_ch, out_ch, kernel_size, 1)
        self.bn_sep_2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn_sep_1(self.separable_1(self.act_1(x)))
        return self.bn_sep_2(self.separable_2(self.act_2(x)))


class FactorizedReduce(nn.Module):
    """Halve h_{i-1} to match h_i: ReLU, then a 1x1 conv on the even pixels (path 1) and
    a 1x1 conv on the odd pixels (path 2, shifted by one), concatenated, BN."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        if out_ch % 2:
            raise ValueError(f"a factorised reduction needs an even width, got {out_ch}")
        self.act = nn.ReLU()
        self.path_1 = nn.Sequential()
        self.path_1.add_module("avgpool", nn.AvgPool2d(1, stride=2))  # a 1x1 "pool" = every other pixel
        self.path_1.add_module("conv", nn.Conv2d(in_ch, out_ch // 2, 1, bias=False))
        self.path_2 = nn.Sequential()
        self.path_2.add_module("pad", nn.ZeroPad2d((-1, 1, -1, 1)))  # drop the first row/column: shift by one
        self.path_2.add_module("avgpool", nn.AvgPool2d(1, stride=2))
        self.path_2.add_module("conv", nn.Conv2d(in_ch, out_ch // 2, 1, bias=False))
        self.final_path_bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        return self.final_path_bn(torch.cat([self.path_1(x), self.path_2(x)], 1))


def make_op(name: str, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """One operation of the search space (section 3) by name: sep_KxK, avg_3x3, max_3x3, identity."""
    if name.startswith("sep_"):
        return BranchSeparables(in_ch, out_ch, int(name[4]), stride)
    if name in ("avg_3x3", "max_3x3"):
        return PoolSame(name[:3], 3, stride)
    if name == "identity" and stride == 1:
        return nn.Identity()
    raise ValueError(f"unknown NASNet operation {name!r} (stride {stride})")


# --------------------------------------------------------------------------- the cell

class NASNetCell(nn.Module):
    """A Normal or Reduction cell of NASNet-A (Figure 4) of width C, built from its genotype.

    h_i goes through ReLU-1x1-BN to C channels ("cur"). h_{i-1} ("prev") is brought to C
    channels the same way (`prev_mode="conv"`), halved first when it is twice the size
    (`"reduce"`: factorised reduction), or used as it is (`"raw"`: the first stem cell,
    whose separable convolutions read the stem convolution's output directly).
    """

    def __init__(self, genotype: Genotype, channels: int, *, cur_in: int, prev_in: int,
                 prev_mode: str = "conv") -> None:
        super().__init__()
        self.genotype = genotype
        self.prev_mode = prev_mode
        self.conv_1x1 = ReLUConvBN(cur_in, channels)
        if prev_mode == "conv":
            self.conv_prev_1x1 = ReLUConvBN(prev_in, channels)
        elif prev_mode == "reduce":
            self.prev_reduce = FactorizedReduce(prev_in, channels)
        elif prev_mode != "raw":
            raise ValueError(f"prev_mode must be 'conv', 'reduce' or 'raw', got {prev_mode!r}")
        prev_ch = prev_in if prev_mode == "raw" else channels
        for i, (left_op, left_src, right_op, right_src) in enumerate(genotype.blocks):
            for side, op, src in (("left", left_op, left_src), ("right", right_op, right_src)):
                stride = 2 if genotype.reduction and src in ("cur", "prev") else 1
                in_ch = prev_ch if src == "prev" else channels
                self.add_module(f"comb_iter_{i}_{side}", make_op(op, in_ch, channels, stride))
        self.out_channels = channels * len(genotype.concat)

    def adapt_prev(self, x_prev: torch.Tensor) -> torch.Tensor:
        if self.prev_mode == "conv":
            return self.conv_prev_1x1(x_prev)
        if self.prev_mode == "reduce":
            return self.prev_reduce(x_prev)
        return x_prev

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
        inputs: dict[Source, torch.Tensor] = {"cur": self.conv_1x1(x), "prev": self.adapt_prev(x_prev)}
        for i, (_, left_src, _, right_src) in enumerate(self.genotype.blocks):
            left = getattr(self, f"comb_iter_{i}_left")(inputs[left_src])
            right = getattr(self, f"comb_iter_{i}_right")(inputs[right_src])
            inputs[i] = left + right  # (N, C, H, W), or H/2 x W/2 in a reduction cell
        return torch.cat([inputs[src] for src in self.genotype.concat], 1)


# --------------------------------------------------------------------------- the network (Figure 2)

class NASNetA(Classifier):
    """NASNet-A (N @ F) for ImageNet (Figure 2, right): stem conv, two reduction cells
    as a stem, then three stages of N normal cells with a reduction cell between them."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, *, stem_size: int = 96,
                 num_features: int = 4032, cells_per_stage: int = 6, small_input: bool = False,
                 drop_rate: float = 0.5, native_size: int = 331) -> None:
        super().__init__()
        if num_features % 96:
            raise ValueError(f"num_features must be a multiple of 96 (24 x an even width C), got {num_features}")
        width = num_features // 24  # C: the first stage's cells output 6C, the last 24C = num_features
        self.in_chans = in_chans
        self.num_features = num_features
        self.default_input_size = (in_chans, 32, 32) if small_input else (in_chans, native_size, native_size)
        self.conv0 = ConvBNAct(in_chans, stem_size, 3, stride=1 if small_input else 2,
                               padding=1 if small_input else 0, act=None, bn_eps=BN_EPS)  # (N, 96, 165, 165)
        self.cell_names: list[str] = []
        self._channels = (stem_size, stem_size)  # (h_{i-1}, h_i) widths while building
        self._add_cell("cell_stem_0", NASNET_A_REDUCTION, width // 4, "raw")      # (N, 168, 83, 83)
        self._add_cell("cell_stem_1", NASNET_A_REDUCTION, width // 2, "reduce")   # (N, 336, 42, 42)
        for stage in range(3):
            stage_width = width * 2 ** stage
            if stage > 0:                                                         # (N, 1344, 21, 21), (N, 2688, 11, 11)
                self._add_cell(f"reduction_cell_{stage - 1}", NASNET_A_REDUCTION, stage_width, "conv")
            for j in range(cells_per_stage):                                      # (N, 6C * 2**stage, H, W)
                self._add_cell(f"cell_{stage * cells_per_stage + j}", NASNET_A_NORMAL, stage_width,
                               "reduce" if j == 0 else "conv")
        del self._channels
        self.act = nn.ReLU()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.last_linear = nn.Linear(num_features, num_classes)

    def _add_cell(self, name: str, genotype: Genotype, width: int, prev_mode: str) -> None:
        prev_ch, cur_ch = self._channels
        cell = NASNetCell(genotype, width, cur_in=cur_ch, prev_in=prev_ch, prev_mode=prev_mode)
        self.add_module(name, cell)
        self.cell_names.append(name)
        keep_prev = name.startswith("reduction_cell")  # TF's skip_reduction_layer_input
        self._channels = (prev_ch if keep_prev else cur_ch, cell.out_channels)

    def reference_key(self, our_key: str) -> str:
        """Our key -> timm's: the factorised reduction's tensors sit on the cell itself there."""
        return our_key.replace(".prev_reduce.", ".")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x_prev = x = self.conv0(x)
        for name in self.cell_names:
            out = getattr(self, name)(x, x_prev)
            # the cell after a reduction cell reads the reduction cell's own h_{i-1}
            x_prev, x = (x_prev if name.startswith("reduction_cell") else x), out
        return self.act(x)  # (N, F, 11, 11) at 331x331

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(torch.flatten(self.global_pool(x), 1))  # (N, F)
        return x if pre_logits else self.last_linear(x)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.last_linear.weight
        self.last_linear = nn.Linear(self.num_features, num_classes, device=old.device, dtype=old.dtype)


# --------------------------------------------------------------------------- builders

@register_model
def nasnet_a_large(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                   **kwargs) -> NASNetA:
    """NASNet-A (6 @ 4032), 331x331: 88,753,150 parameters (timm `nasnetalarge`; the paper's
    Table 2 says 88.9M and 23.8B multiply-adds)."""
    return NASNetA(num_classes=num_classes, in_chans=in_chans, stem_size=96, num_features=4032,
                   cells_per_stage=6, small_input=small_input, native_size=331, **kwargs)


@register_model
def nasnet_a_mobile(*, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False,
                    **kwargs) -> NASNetA:
    """NASNet-A (4 @ 1056), 224x224, the paper's mobile setting (section 4.1, the mobile
    table: 5.3M parameters, 564M multiply-adds): stem 32 filters, C = 44, N = 4."""
    return NASNetA(num_classes=num_classes, in_chans=in_chans, stem_size=32, num_features=1056,
                   cells_per_stage=4, small_input=small_input, native_size=224, **kwargs)
