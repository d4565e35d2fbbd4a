"""Receptive fields measured with gradients: the oracle the layer graph is tested against.

A unit's receptive field is the set of input pixels that can change it. We
find them by asking autograd: the input pixels with a non-zero gradient of
the unit. Two things could hide a pixel by accident, and the measurement
removes both, on a copy of the model (the model itself is not touched):

- cancellation and dead units: every weight gets a positive constant (1 / fan-in
  for convs and linear layers, so values stay near 1), every bias zero, batch
  norm the identity, and every elementwise activation is made linear (ReLU of a
  negative value, ReLU6 above 6, a saturated sigmoid would pass no gradient);
  with an input of ones, every path from a pixel to the unit then adds a
  positive amount, so a pixel on any path gets a positive gradient;
- max pooling: its gradient goes to the one winner of each window, so a unit
  after it would seem to see only some of its pixels. Measuring many units
  does not fix that (each one still shows only its winners), so max pooling is
  run as average pooling of the same geometry (kernel, stride, padding, ceil
  mode): every pixel of the window gets gradient, which is what "could change
  the unit" means. TF-"SAME" max pooling pads with -inf, which becomes 0.

The one convention: a channel gate broadcast from a 1x1 map (squeeze-and-
excitation's x * s) is detached (replaced by ones), so the field is that of the convolutions, as
`convscope.analysis.receptive` documents (otherwise every unit after a gate
depends on the whole image through its global average).

The graph of the model (`convscope.analysis.graph`) is run node by node, so
any node (a conv, an addition, a concatenation) can be measured, many (node,
unit) pairs at once: each pair gets its own image of the batch (batch norm in
eval mode keeps the images independent) and one backward pass measures all.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from convscope.analysis import graph as graphs

_ACTIVATIONS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu6, F.hardtanh,
                F.hardtanh_, torch.sigmoid, torch.Tensor.sigmoid, torch.Tensor.sigmoid_, F.sigmoid, torch.tanh,
                torch.Tensor.tanh, F.tanh, F.gelu, F.silu, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_, F.hardswish,
                F.hardsigmoid, F.mish, F.selu, F.softplus}
_MULS = {torch.mul, torch.Tensor.mul, torch.Tensor.mul_, torch.Tensor.__mul__, torch.Tensor.__rmul__,
         torch.Tensor.__imul__}


@dataclass(frozen=True)
class Span:
    """The input rows (or columns) a unit's gradient reaches: first and last, inclusive."""

    first: int
    last: int


class _Oracle(TorchFunctionMode):
    """Linear activations, max pooling as average pooling, SE gates detached (see the docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _ACTIVATIONS:
            x = args[0]
            inplace = kwargs.get("inplace") or getattr(func, "__name__", "").endswith("_")
            return x if inplace else x.clone()
        if func is F.max_pool2d:
            return _avg_for_max(*args, **kwargs)
        if func is F.adaptive_max_pool2d:
            return F.adaptive_avg_pool2d(args[0], kwargs.get("output_size", args[1] if len(args) > 1 else None))
        if func is F.pad:
            value = kwargs.get("value", args[3] if len(args) > 3 else None)
            if value is not None and math.isinf(value):
                return F.pad(args[0], args[1], kwargs.get("mode", args[2] if len(args) > 2 else "constant"), 0.0)
        if func in _MULS and len(args) == 2 and all(isinstance(a, torch.Tensor) for a in args):
            a, b = args
            if _gate(b, a):  # a constant 1: detached, and the squares of values near 1e4 cannot overflow
                b = torch.ones_like(b)
            elif _gate(a, b):
                a = torch.ones_like(a)
            return func(a, b, **kwargs)
        return func(*args, **kwargs)


def _gate(g: torch.Tensor, x: torch.Tensor) -> bool:
    """`g` is a 1x1 map broadcast over the bigger map `x`."""
    return g.dim() == 4 and x.dim() == 4 and tuple(g.shape[-2:]) == (1, 1) and tuple(x.shape[-2:]) != (1, 1)


def _avg_for_max(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    if dilation not in (1, (1, 1), [1, 1]):
        raise ValueError("a dilated max pooling has no average-pooling twin: measure it another way")
    out = F.avg_pool2d(x, kernel_size, stride if stride not in (None, [], ()) else kernel_size, padding,
                       ceil_mode=ceil_mode, count_include_pad=False)
    return (out, None) if return_indices else out


def positive_copy(model: nn.Module) -> nn.Module:
    """A float64 copy in eval mode whose weights make every path add (see the module docstring)."""
    model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for mod in model.modules():
            for name, p in mod.named_parameters(recurse=False):
                if name == "weight" and p.dim() >= 2:
                    p.fill_(1.0 / p[0].numel())
                else:
                    p.fill_(0.0 if name == "bias" else 1.0)
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.running_var is not None:
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)
    return model


def measure(model: nn.Module, input_size: Sequence[int], units: Sequence[tuple[str, int, int]]
            ) -> list[tuple[Span, Span] | None]:
    """For each (fx node name, row, column) of `units`: the span of input rows and of input columns
    whose gradient of that unit (summed over its channels) is non-zero, for one input of `input_size`
    (None: no pixel at all, a unit that reads only padding).
    The units of one node share a batch, run only as far as that node."""
    gm = graphs.trace(positive_copy(model))
    groups: dict[str, list[int]] = {}
    for i, (name, _, _) in enumerate(units):
        groups.setdefault(name, []).append(i)
    out: list[Any] = [None] * len(units)
    for name, idx in groups.items():
        for i, spans in zip(idx, _measure_node(gm, input_size, name, [units[i][1:] for i in idx])):
            out[i] = spans
    return out


def _measure_node(gm: Any, input_size: Sequence[int], name: str, cells: list[tuple[int, int]]
                  ) -> list[tuple[Span, Span] | None]:
    x = torch.ones((len(cells), *input_size), dtype=torch.float64, requires_grad=True)
    with _Oracle():
        value = _run_until(gm, x, {name})[name]
    total = sum(value[b, :, y, xx].sum() for b, (y, xx) in enumerate(cells))
    (grad,) = torch.autograd.grad(total, x)
    if not torch.isfinite(grad).all():
        raise AssertionError("the measurement overflowed: a NaN gradient would read as no gradient")
    out = []
    for b in range(len(cells)):
        hit = grad[b].abs().sum(0) > 0
        rows, cols = hit.any(1).nonzero().flatten(), hit.any(0).nonzero().flatten()
        if len(rows) == 0:  # a unit that reads only padding (nasnet's shifted path) sees nothing
            out.append(None)
            continue
        out.append((Span(int(rows.min()), int(rows.max())), Span(int(cols.min()), int(cols.max()))))
    return out


def _run_until(gm: Any, x: torch.Tensor, wanted: set[str]) -> dict[str, Any]:
    """The values of the `wanted` nodes, running the graph only as far as the last of them and
    dropping every other value after its last reader (autograd keeps what backward needs)."""
    interp = torch.fx.Interpreter(gm, garbage_collect_values=False)
    nodes = [n for n in gm.graph.nodes if n.op != "output"]
    last_use: dict[Any, Any] = {}
    for node in nodes:
        for src in node.all_input_nodes:
            last_use[src] = node
    values: dict[str, Any] = {}
    for node in nodes:
        if not wanted - values.keys():
            break
        interp.env[node] = interp.run_node(node) if node.op != "placeholder" else x
        if node.name in wanted:
            values[node.name] = interp.env[node]
        for src in node.all_input_nodes:
            if last_use.get(src) is node:
                del interp.env[src]
    return values


def predicted(field: Any, y: int, x: int, input_hw: Sequence[int], reach: Sequence[Any] | None = None
              ) -> tuple[Span, Span] | None:
    """The spans the field (r, j, s) gives unit (y, x): its window, cut to the input and to the
    pixels its node reads at all (`GraphNode.reach`)."""
    spans = []
    for ax, i in ((0, y), (1, x)):
        centre = field.s[ax] + i * field.j[ax]
        lo, hi = centre - (field.r[ax] - 1) / 2, centre + (field.r[ax] - 1) / 2
        if reach is not None:
            lo, hi = max(lo, reach[ax][0]), min(hi, reach[ax][1])
        first, last = max(0, math.ceil(lo)), min(int(input_hw[ax]) - 1, math.floor(hi))
        if first > last:
            return None  # the window lies in the padding: the unit sees no pixel
        spans.append(Span(first, last))
    return spans[0], spans[1]


def measure_receptive_field(model: nn.Module, layer: str, input_size: Sequence[int]) -> dict[str, Any]:
    """The receptive field of `layer` (a module name or fx node name) measured with gradients:
    {"size": (h, w), "jump": (h, w), "start": (h, w)} from its centre unit and the unit after it
    on each axis; raises ValueError when the centre unit's field does not fit inside the input
    (then no measurement can see its size: pick a bigger input)."""
    g = graphs.build(model, input_size)
    node = g.node_of(layer)
    h, w = g.nodes[node].shape[1:]
    cy, cx = h // 2, w // 2
    spans = measure(model, input_size, [(node, cy, cx), (node, min(cy + 1, h - 1), min(cx + 1, w - 1))])
    (r0, c0), (r1, c1) = spans
    edge = [s for s in (r0, c0) if s.first == 0] + [s for s, n in ((r0, input_size[1]), (c0, input_size[2]))
                                                   if s.last == n - 1]
    if edge:
        raise ValueError(f"the field of {layer}'s centre unit reaches the edge of a {input_size} input: "
                         f"use a bigger input")
    size = (r0.last - r0.first + 1, c0.last - c0.first + 1)
    centre = ((r0.first + r0.last) / 2, (c0.first + c0.last) / 2)
    jump = ((r1.first - r0.first) if h > 1 else None, (c1.first - c0.first) if w > 1 else None)
    start = tuple(centre[a] - (cy, cx)[a] * (jump[a] or 0) for a in (0, 1))
    return {"size": size, "jump": jump, "start": start}
