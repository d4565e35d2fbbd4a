"""Shared torch building blocks, named as the lecture names them.

Family-specific blocks live in their family file under `convscope.models`;
what two or more families use lives here.
"""
from __future__ import annotations

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
