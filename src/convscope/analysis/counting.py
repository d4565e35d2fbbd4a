"""What one aten operation costs and how it moves the receptive field.

The summary sees every operation below autograd (a TorchDispatchMode), so
these rules are written against aten, not against nn.Module types: a model
that calls `F.conv2d` or `x.mean((2, 3))` is counted like one that uses
`nn.Conv2d` or `nn.AdaptiveAvgPool2d`.

MACs (multiply-accumulates) are counted for convolutions and matrix products
only, exactly as `torch.utils.flop_counter` counts them (it reports FLOPs =
2 x MACs; neither counts the bias addition). Everything else (batch norm,
pooling, activations, additions) goes to a separate "other ops" column: one
op per output value for elementwise work, two for an inference batch norm
(scale and shift), one per window element for pooling.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from convscope.analysis.receptive import Field, merge

CONV = {"convolution", "_convolution", "conv2d", "conv1d", "cudnn_convolution"}
MATMUL = {"mm", "addmm", "bmm", "baddbmm"}
POOL = {"max_pool2d_with_indices", "max_pool2d", "avg_pool2d"}
ADAPTIVE = {"_adaptive_avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"}
REDUCE = {"mean", "sum", "amax", "max", "amin"}
# Operations that allocate nothing and compute nothing: never a row of their own.
SILENT = {
    "empty", "empty_like", "zeros", "ones", "full", "t", "detach", "alias", "lift_fresh", "_to_copy",
    "clone", "expand", "permute", "transpose", "view", "_unsafe_view", "reshape", "flatten", "squeeze",
    "unsqueeze", "slice", "select", "split", "split_with_sizes", "chunk", "unbind", "contiguous",
    "copy_", "fill_", "zero_", "_local_scalar_dense", "lift_fresh_copy", "native_dropout", "dropout",
    "bernoulli_", "size", "stride", "sym_size", "sym_numel", "is_same_size", "new_empty", "new_zeros",
}
BATCH_NORM = {"native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit",
              "batch_norm", "cudnn_batch_norm"}


def _pair(value: Any, default: Sequence[int]) -> tuple[int, int]:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return tuple(default)  # type: ignore[return-value]
    if isinstance(value, int):
        return (value, value)
    v = list(value)
    return (v[0], v[0]) if len(v) == 1 else (v[-2], v[-1])


def first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)):
        for item in out:
            t = first_tensor(item)
            if t is not None:
                return t
    return None


def op_name(func: Any) -> str:
    return func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)


def macs(name: str, args: Sequence[Any], out: torch.Tensor | None) -> int:
    """Multiply-accumulates of a convolution or matrix product (0 for anything else)."""
    if name in CONV and out is not None:
        weight = args[1]
        transposed = bool(args[6]) if len(args) > 6 else False
        if transposed:  # every input value meets (out_ch / groups) x kernel weights
            return args[0].numel() * weight.shape[1] * math.prod(weight.shape[2:])
        # every output value: (in_ch / groups) x kH x kW multiply-adds (weight is (out, in/g, kH, kW))
        return out.numel() * math.prod(weight.shape[1:])
    if name in ("mm", "addmm"):
        a, b = (args[0], args[1]) if name == "mm" else (args[1], args[2])
        return a.shape[0] * a.shape[1] * b.shape[1]
    if name in ("bmm", "baddbmm"):
        a, b = (args[0], args[1]) if name == "bmm" else (args[1], args[2])
        return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return 0


def other_ops(name: str, args: Sequence[Any], out: torch.Tensor | None) -> int:
    """A rough count of the non-MAC work: batch norm, pooling, activations, additions."""
    if out is None or name in SILENT or name in CONV or name in MATMUL:
        return 0
    if name in BATCH_NORM:
        return 2 * out.numel()
    if name in POOL:
        k = _pair(args[1], (1, 1))
        return out.numel() * k[0] * k[1]
    if (name in ADAPTIVE or name in REDUCE) and isinstance(args[0], torch.Tensor):
        return args[0].numel()
    return out.numel()


def _spatial(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape[-2:]) if t.dim() >= 3 else ()


def field(name: str, args: Sequence[Any], out: torch.Tensor,
          lookup: Callable[[torch.Tensor], Field | None]) -> Field | None:
    """The receptive field of `out`, from the fields of the tensor arguments."""
    inputs = [a for a in tensors(args) if lookup(a) is not None]
    if not inputs:
        return None
    src = inputs[0]
    f = lookup(src)
    if name in CONV and not (len(args) > 6 and args[6]):
        w = args[1]
        return f.window(tuple(w.shape[-2:]), _pair(args[3], (1, 1)), _pair(args[4], (0, 0)),
                        _pair(args[5], (1, 1)))
    if name in POOL:
        k = _pair(args[1], (1, 1))
        stride = _pair(args[2] if len(args) > 2 else None, k)
        padding = _pair(args[3] if len(args) > 3 else None, (0, 0))
        dilation = _pair(args[4] if len(args) > 4 and name != "avg_pool2d" else None, (1, 1))
        return f.window(k, stride, padding, dilation)
    if name == "constant_pad_nd":
        pad = list(args[1]) + [0, 0, 0, 0]
        return f.shift(pad[2], pad[0])
    if name in ADAPTIVE and _spatial(out) == _spatial(src):
        return f  # an identity: the output is the input
    if name in ADAPTIVE and _spatial(out) != (1, 1) and len(_spatial(out)) == 2:
        return _adaptive(f, _spatial(src), _spatial(out))
    if _spatial(out) and all(_spatial(out) == _spatial(a) or _spatial(a) == (1, 1) for a in inputs):
        # elementwise, concatenation; a broadcast 1x1 channel gate (SE) is left out, see receptive.py
        maps = [a for a in inputs if _spatial(a) == _spatial(out)] or inputs
        return merge([lookup(a) for a in maps])
    return merge([lookup(a) for a in inputs]).everything()  # global pooling, flatten, linear


def _adaptive(f: Field, n: tuple[int, ...], m: tuple[int, ...]) -> Field:
    """Adaptive pooling from n to m: window i spans [floor(i n/m), ceil((i+1) n/m)). When m divides
    n that is a plain k = s = n/m pooling; otherwise the widest window and a fractional jump."""
    kernel = tuple(max(math.ceil((i + 1) * n[a] / m[a]) - (i * n[a]) // m[a] for i in range(m[a])) for a in range(2))
    if all(n[a] % m[a] == 0 for a in range(2)):
        return f.window(kernel, kernel, (0, 0))
    out = f.window(kernel, (1, 1), (0, 0))
    return Field(out.r, tuple(f.j[a] * n[a] / m[a] for a in range(2)), out.s)  # type: ignore[arg-type]


def tensors(args: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for a in args:
        if isinstance(a, torch.Tensor):
            found.append(a)
        elif isinstance(a, (list, tuple)):
            found.extend(tensors(a))
    return found
