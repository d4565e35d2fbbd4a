"""`summary(model)`: the per-layer table of a CNN, computed on the meta device.

Nothing is allocated and nothing is computed: the model is built (or its
weights are replaced) with meta tensors, which carry shapes only, so VGG16's
553 MB of weights never exist and any registered model at its native
resolution is summarised in well under a second.

A module given with real weights is run through `torch.func.functional_call`
with meta stand-ins for its parameters and buffers: the module is not copied
and not changed (its train/eval flags are restored afterwards).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from torch import nn

from convscope.analysis._tracker import EmptyOutput, RawRow, Tracker
from convscope.analysis.receptive import Field
from convscope.analysis.table import render


@dataclass
class Row:
    """One layer call: what it outputs and what it costs."""

    name: str
    kind: str
    output_shape: list[int]           # with the batch dimension (1)
    activations: int                  # values in the output
    params: int                       # this layer's parameters, biases included
    macs: int                         # multiply-accumulates (conv and linear only)
    receptive_field: int | None       # input pixels one output unit sees (the larger axis)
    jump: int | float | None          # input pixels between neighbouring units; None once global
    params_no_bias: int = 0
    other_ops: int = 0                # batch norm, pooling, activations, additions (not MACs)
    stored: bool = True               # the output is new memory (not in place, not a view)
    receptive_field_hw: tuple[int, int] | None = None
    whole_input: bool = False         # every unit sees the whole input (after global pooling / fc)
    weight_shape: tuple[int, ...] | None = None


@dataclass
class Summary:
    model: str
    input_size: tuple[int, int, int]
    rows: list[Row]
    total_params: int
    trainable_params: int
    total_biases: int = 0             # parameters named *bias (batch norm's beta included)
    dtype_bytes: int = 4

    @property
    def params_in_forward(self) -> int:
        """Parameters of the layers an eval forward runs (GoogLeNet's auxiliary heads are not)."""
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def total_other_ops(self) -> int:
        return sum(r.other_ops for r in self.rows)

    @property
    def total_activations(self) -> int:
        """Values the forward pass stores: the input and every output that is new memory."""
        return sum(r.activations for r in self.rows if r.stored)

    @property
    def activation_bytes(self) -> int:
        return self.total_activations * self.dtype_bytes

    @property
    def activation_bytes_with_backward(self) -> int:
        """An estimate: each stored activation also gets a gradient of the same size."""
        return 2 * self.activation_bytes

    @property
    def param_bytes(self) -> int:
        return self.total_params * self.dtype_bytes

    def row(self, name: str) -> Row:
        """The row of a layer; for a container ("layer2") the last row inside it, its output."""
        for r in self.rows:
            if r.name == name:
                return r
        inside = [r for r in self.rows if r.name.startswith(name + ".")]
        if inside:
            return inside[-1]
        raise KeyError(f"no row named {name!r} in the summary of {self.model}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "rows": [_row_dict(r) for r in self.rows],
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "params_in_forward": self.params_in_forward,
            "total_biases": self.total_biases,
            "total_macs": self.total_macs,
            "total_flops": 2 * self.total_macs,
            "total_other_ops": self.total_other_ops,
            "total_activations": self.total_activations,
            "activation_bytes": self.activation_bytes,
            "activation_bytes_with_backward_estimate": self.activation_bytes_with_backward,
            "param_bytes": self.param_bytes,
            "units": "MACs = multiply-accumulates; FLOPs = 2 x MACs; bytes for fp32",
        }

    def __str__(self) -> str:
        return render(self)


def _row_dict(r: Row) -> dict[str, Any]:
    d = asdict(r)
    for key in ("receptive_field_hw", "weight_shape"):
        d[key] = list(d[key]) if d[key] is not None else None
    return d


def parse_input_size(text: str | Sequence[int]) -> tuple[int, int, int]:
    """"3x224x224", "224" (square, 3 channels) or a sequence (C, H, W)."""
    if isinstance(text, str):
        parts = text.lower().replace("*", "x").replace(",", "x").split("x")
        try:
            nums = [int(p) for p in parts if p.strip()]
        except ValueError:
            raise ValueError(f"input size {text!r} is not like 3x224x224 (channels x height x width)") from None
    else:
        nums = [int(v) for v in text]
    if len(nums) == 1:
        nums = [3, nums[0], nums[0]]
    elif len(nums) == 2:
        nums = [3, *nums]
    if len(nums) != 3 or min(nums) < 1:
        raise ValueError(f"input size {text!r} must be three positive numbers, channels x height x width, e.g. 3x224x224")
    return tuple(nums)  # type: ignore[return-value]


def summary(model: nn.Module | str, input_size: Sequence[int] | str | None = None) -> Summary:
    """The per-layer summary of `model` (a module or a registered name) for one input of `input_size` (C, H, W)."""
    module, name = _meta_model(model)
    if input_size is None:
        input_size = getattr(module, "default_input_size", None)
        if input_size is None:
            raise ValueError(f"{name} has no default_input_size: pass input_size=(C, H, W)")
    size = parse_input_size(input_size)
    try:
        raw = trace(module, size)
    except EmptyOutput as exc:
        smallest = _smallest_input(module, size)
        hint = (f"the smallest square input that leaves every layer's output non-empty is "
                f"{size[0]}x{smallest}x{smallest}" if smallest else "no square input up to 4096 pixels works")
        designed = getattr(module, "default_input_size", None)
        hint += f" ({name} was designed for {_fmt(designed)})" if designed else ""
        raise ValueError(f"input {_fmt(size)} is too small for {name}: the output of {exc.layer} ({exc.kind}) "
                         f"would be empty; {hint}") from None
    except RuntimeError as exc:
        raise ValueError(f"input {_fmt(size)} does not fit {name} (designed for "
                         f"{_fmt(getattr(module, 'default_input_size', size))}): {str(exc).splitlines()[0]}") from None
    return _build(module, name, size, raw)


def _fmt(size: Sequence[int]) -> str:
    return "x".join(str(v) for v in size)


def _meta_model(model: nn.Module | str) -> tuple[nn.Module, str]:
    if isinstance(model, str):
        from convscope.models import create_model

        with torch.device("meta"):
            module = create_model(model)
        return module, model
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary() takes an nn.Module or a registered model name, not {type(model).__name__}")
    return model, getattr(model, "model_name", type(model).__name__)


def trace(module: nn.Module, size: tuple[int, int, int], *, fields: bool = True) -> tuple[Tracker, RawRow]:
    """Run `module` once on the meta device under the tracker: its rows, and the raw output row.

    With `fields`, every row then takes the receptive field of its node in the module's one layer
    graph (`convscope.analysis.graph`, which the explorer and `convscope.units` read too). The run
    itself stays the module's own (fx would turn `out += x` into `out = out + x`, and the rows
    count what the module does). A module fx cannot trace keeps the fields the tracker follows
    operation by operation, by the same rules (`convscope.analysis.receptive`)."""
    x = torch.empty((1, *size), device="meta")
    flags = {m: m.training for m in module.modules()}
    module.eval()
    tracker = Tracker(module, x)
    stand_ins = {k: torch.empty_like(v, device="meta")
                 for k, v in [*module.named_parameters(), *module.named_buffers()] if v.device.type != "meta"}
    try:
        _run(module, tracker, x, stand_ins)
        if fields:  # after the tracker's hooks are gone: the graph's own run adds no rows
            _graph_fields(module, size, tracker.rows)
    finally:
        for m, flag in flags.items():
            m.training = flag
    first = RawRow("input", "Input", out=x, fresh=True, field=Field())
    return tracker, first


def _run(module: nn.Module, tracker: Tracker, x: torch.Tensor, stand_ins: dict[str, torch.Tensor]) -> None:
    try:
        with torch.no_grad(), tracker:
            if stand_ins:
                torch.func.functional_call(module, stand_ins, (x,), strict=False)
            else:
                module(x)
    except RuntimeError as exc:
        if tracker.failed_at and not isinstance(exc, EmptyOutput):
            raise RuntimeError(f"at {tracker.failed_at}: {exc}") from None
        raise
    finally:
        tracker.remove()


def _graph_fields(module: nn.Module, size: tuple[int, int, int], rows: list[RawRow]) -> None:
    """Give each row the field of its node in the layer graph (see `graph.row_nodes` for the match)."""
    from convscope.analysis import graph

    try:
        g = graph.build(module, size)
    except Exception:  # noqa: BLE001 - fx cannot trace it (TraceError, TypeError, ...): keep the tracker's
        return
    for row, node in zip(rows, graph.row_nodes(g, [(r.name, r.module is not None, r.ops or [r.kind]) for r in rows])):
        if node is not None:
            row.field = g.field(node)


def _fits(module: nn.Module, size: tuple[int, int, int]) -> bool:
    try:
        trace(module, size, fields=False)
    except EmptyOutput:
        return False
    except RuntimeError:
        return True  # a different complaint: not one about the size being too small
    return True


def _smallest_input(module: nn.Module, size: tuple[int, int, int], limit: int = 4096) -> int | None:
    """The smallest square side that leaves every output non-empty (doubling, then bisection)."""
    lo, hi = 0, max(size[1:])  # `lo` never works; the given size may fail on its short side only
    while not _fits(module, (size[0], hi, hi)):
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _fits(module, (size[0], mid, mid)) else (mid, hi)
    return hi


def _build(module: nn.Module, name: str, size: tuple[int, int, int], traced: tuple[Tracker, RawRow]) -> Summary:
    tracker, first = traced
    seen: set[int] = set()
    rows = [_row(first, size, seen)] + [_row(r, size, seen) for r in tracker.rows]
    _number_repeats(rows)
    params = list(module.parameters())
    biases = sum(p.numel() for n, p in module.named_parameters() if n.endswith("bias"))
    return Summary(model=name, input_size=size, rows=rows, total_params=sum(p.numel() for p in params),
                   trainable_params=sum(p.numel() for p in params if p.requires_grad), total_biases=biases)


def _row(raw: RawRow, size: tuple[int, int, int], seen: set[int]) -> Row:
    params = no_bias = 0
    if raw.module is not None and id(raw.module) not in seen:  # a shared module counts its weights once
        seen.add(id(raw.module))
        for pname, p in raw.module.named_parameters():
            params += p.numel()
            no_bias += 0 if pname.endswith("bias") else p.numel()
        if raw.conv_shape is None and isinstance(getattr(raw.module, "weight", None), torch.Tensor) \
                and raw.module.weight.dim() >= 2:
            raw.conv_shape = tuple(raw.module.weight.shape)
    out = raw.out
    f = raw.field
    rf = jump = hw = None
    if f is not None:
        hw = (max(f.r[0], size[1]), max(f.r[1], size[2])) if f.whole else f.r
        rf = max(hw)
        jump = None if f.whole else _number(max(f.j))
    return Row(name=raw.name, kind=raw.kind, output_shape=list(out.shape) if out is not None else [],
               activations=out.numel() if out is not None else 0, params=params, macs=raw.macs,
               receptive_field=rf, jump=jump, params_no_bias=no_bias, other_ops=raw.other_ops,
               stored=bool(raw.fresh), receptive_field_hw=hw, whole_input=bool(f and f.whole),
               weight_shape=raw.conv_shape)


def _number(v: float) -> float | int:
    return int(v) if float(v).is_integer() else round(float(v), 2)


def _number_repeats(rows: list[Row]) -> None:
    """A module called twice (torchvision's shared ReLU) gets `name (2)` on its second row."""
    count: dict[str, int] = {}
    for r in rows:
        count[r.name] = count.get(r.name, 0) + 1
        if count[r.name] > 1:
            r.name = f"{r.name} ({count[r.name]})"
