"""What each layer of a network does, read from the module once: the facts a page needs.

`window(mod, in_hw, out_hw)` gives a sliding window's geometry (conv, max and
average pooling, adaptive pooling, TF-"SAME" layers) with the padding as the
actual amounts per side; `activation_facts` names an elementwise activation.
Nothing here guesses from a class name: TF-"SAME" padding (asymmetric and
input-size dependent) is recognised by the `same_padding(hw) -> (top, bottom,
left, right)` method a module offers (`convscope.models.nasnet.Conv2dSame`,
`PoolSame`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from torch import nn

ACTIVATION_MODULES: dict[type, str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leakyrelu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
    nn.GELU: "gelu", nn.ELU: "elu", nn.SiLU: "silu", nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid",
    nn.Mish: "mish", nn.Softplus: "softplus", nn.PReLU: "prelu", nn.Hardtanh: "hardtanh", nn.SELU: "selu",
}
ACTIVATIONS = frozenset(ACTIVATION_MODULES.values())
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _number(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def activation_name(mod: nn.Module) -> str | None:
    """"relu", "relu6", ... for an elementwise activation module, else None (exact types: a
    subclass may change what it computes)."""
    return ACTIVATION_MODULES.get(type(mod))


def activation_facts(name: str, mod: nn.Module | None = None, kwargs: dict[str, Any] | None = None) -> dict:
    """The parameters of an activation the page needs to recompute it (LeakyReLU's slope, ELU's alpha,
    Hardtanh's range): from its module or the call's keyword arguments."""
    kwargs = kwargs or {}
    out: dict[str, Any] = {}
    if name == "leakyrelu":
        out["negative_slope"] = float(getattr(mod, "negative_slope", kwargs.get("negative_slope", 0.01)))
    elif name == "elu":
        out["alpha"] = float(getattr(mod, "alpha", kwargs.get("alpha", 1.0)))
    elif name == "hardtanh":
        out["min_val"] = float(getattr(mod, "min_val", kwargs.get("min_val", -1.0)))
        out["max_val"] = float(getattr(mod, "max_val", kwargs.get("max_val", 1.0)))
    elif name == "gelu":
        out["approximate"] = str(getattr(mod, "approximate", kwargs.get("approximate", "none")))
    return out


def adaptive_window(n: int, m: int) -> tuple[int, float | int]:
    """Adaptive pooling from n to m pixels: window i spans [floor(i n / m), ceil((i + 1) n / m)).
    The widest window and the (possibly fractional) step n / m."""
    widest = max(math.ceil((i + 1) * n / m) - (i * n) // m for i in range(m))
    return widest, _number(n / m)


def window(mod: nn.Module, in_hw: Sequence[int] | None, out_hw: Sequence[int] | None) -> dict[str, Any] | None:
    """Geometry of a conv or pooling module for an input of `in_hw`: kernel, stride, dilation,
    padding (per axis [h, w], or [top, bottom, left, right] with "padding_mode": "same_tf"),
    pad_before ([top, left]: rows and columns of padding before the input) and the pooling facts.
    None for anything without a window."""
    if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _adaptive(mod, in_hw, out_hw)
    if not isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and not hasattr(mod, "same_padding"):
        return None
    k = _pair(mod.kernel_size)
    stride = _pair(mod.stride if getattr(mod, "stride", None) not in (None, ()) else mod.kernel_size)
    dilation = _pair(getattr(mod, "dilation", 1)) if not isinstance(mod, nn.AvgPool2d) else [1, 1]
    out: dict[str, Any] = {"kernel": k, "stride": stride, "dilation": dilation}
    if hasattr(mod, "same_padding") and in_hw is not None:
        pads = [int(v) for v in mod.same_padding((int(in_hw[0]), int(in_hw[1])))]
        out.update(padding=pads, padding_mode="same_tf", pad_before=[pads[0], pads[2]])
    else:
        pad = getattr(mod, "padding", 0)
        if isinstance(pad, str):  # torch's padding="same" (stride 1): (k - 1) d split, the odd pixel after
            total = [(k[a] - 1) * dilation[a] for a in (0, 1)]
            pads = [total[0] // 2, total[0] - total[0] // 2, total[1] // 2, total[1] - total[1] // 2]
            out.update(padding=pads, padding_mode="same", pad_before=[pads[0], pads[2]])
        else:
            p = _pair(pad)
            out.update(padding=p, pad_before=list(p), padding_mode=str(getattr(mod, "padding_mode", "zeros")))
    if isinstance(mod, nn.Conv2d):
        out["groups"] = int(mod.groups)
        if mod.groups > 1 and mod.groups == mod.in_channels:
            out["depthwise"] = True
    else:
        out.update(_pool_facts(mod))
    return out


def _pool_facts(mod: nn.Module) -> dict[str, Any]:
    out: dict[str, Any] = {"ceil_mode": bool(getattr(mod, "ceil_mode", False)), "adaptive": False}
    avg = isinstance(mod, nn.AvgPool2d) or getattr(mod, "kind", None) == "avg"
    if avg:
        out["count_include_pad"] = bool(getattr(mod, "count_include_pad", True))
        out["divisor_override"] = getattr(mod, "divisor_override", None)
    return out


def _adaptive(mod: nn.Module, in_hw: Sequence[int] | None, out_hw: Sequence[int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"adaptive": True, "ceil_mode": False, "dilation": [1, 1], "padding": [0, 0],
                           "pad_before": [0, 0], "padding_mode": "zeros", "kernel": None, "stride": None}
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        out.update(count_include_pad=False, divisor_override=None)
    if in_hw is not None and out_hw is not None:
        wins = [adaptive_window(int(in_hw[a]), int(out_hw[a])) for a in (0, 1)]
        out.update(kernel=[w[0] for w in wins], stride=[w[1] for w in wins],
                   exact=all(int(in_hw[a]) % int(out_hw[a]) == 0 for a in (0, 1)))
        out["global"] = [int(v) for v in out_hw] == [1, 1]
    return out


def functional_module(target: Any, kwargs: dict[str, Any]) -> nn.Module | None:
    """The module a functional pooling call stands for (F.max_pool2d(x, 3, 2) is nn.MaxPool2d(3, 2)),
    from the call's normalised keyword arguments, so one rule describes both."""
    import torch.nn.functional as F

    kw = {k: v for k, v in kwargs.items() if k != "input"}
    try:
        if target is F.max_pool2d:
            kw.pop("return_indices", None)
            return nn.MaxPool2d(**kw)
        if target is F.avg_pool2d:
            return nn.AvgPool2d(**kw)
        if target is F.adaptive_avg_pool2d:
            return nn.AdaptiveAvgPool2d(**kw)
        if target is F.adaptive_max_pool2d:
            kw.pop("return_indices", None)
            return nn.AdaptiveMaxPool2d(**kw)
    except TypeError:
        return None
    return None
