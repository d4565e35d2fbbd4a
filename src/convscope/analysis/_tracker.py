"""Watch one forward pass: which module runs which aten operations.

A TorchDispatchMode sees every operation (on the meta device: shapes only,
nothing computed, nothing allocated) while forward hooks keep the stack of
modules being run. Each call of a leaf module (one with no children) becomes
one row; an operation run directly in a container's `forward` (the residual
`out + identity`, `torch.cat` of an Inception block, `x.mean((2, 3))`) becomes
a row of its own, named after the container.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from convscope.analysis import counting
from convscope.analysis.receptive import Field


class EmptyOutput(RuntimeError):
    """An operation's output would have no pixels left: the input is too small."""

    def __init__(self, layer: str, kind: str, detail: str) -> None:
        super().__init__(f"{layer} ({kind}): {detail}")
        self.layer, self.kind, self.detail = layer, kind, detail


@dataclass
class RawRow:
    name: str
    kind: str
    module: nn.Module | None = None
    macs: int = 0
    other_ops: int = 0
    out: torch.Tensor | None = None
    fresh: bool = False
    field: Field | None = None
    conv_shape: tuple[int, ...] | None = None  # weight shape of the first conv/linear op
    ops: list[str] = dc_field(default_factory=list)


class Tracker(TorchDispatchMode):
    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        super().__init__()
        self.rows: list[RawRow] = []
        self.fields = WeakIdKeyDictionary()  # tensor -> Field
        self.made_by = WeakIdKeyDictionary()  # tensor -> row index that allocated it
        self.fields[x] = Field()
        self.stack: list[tuple[str, nn.Module, RawRow | None]] = []
        self.failed_at = ""
        self.handles = []
        for name, mod in model.named_modules():
            label = name or ("" if next(mod.children(), None) is not None else type(mod).__name__)
            self.handles.append(mod.register_forward_pre_hook(self._pre(label)))
            self.handles.append(mod.register_forward_hook(self._post, always_call=True))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    # ---- module stack -------------------------------------------------------------------
    def _pre(self, name: str):
        def hook(mod: nn.Module, args: Any) -> None:
            leaf = next(mod.children(), None) is None
            row = RawRow(name, type(mod).__name__, mod) if leaf else None
            self.stack.append((name, mod, row))
        return hook

    def _post(self, mod: nn.Module, args: Any, out: Any) -> None:
        if not self.stack or self.stack[-1][1] is not mod:
            return  # the forward raised before finishing; the stack unwinds elsewhere
        _, _, row = self.stack.pop()
        if row is not None:
            t = counting.first_tensor(out)
            self._finish(row, t)

    def _finish(self, row: RawRow, out: torch.Tensor | None) -> None:
        row.out = out
        if out is not None:
            row.fresh = self.made_by.get(out) == id(row)
            row.field = self.fields.get(out)
        self.rows.append(row)

    def current(self) -> tuple[str, RawRow | None]:
        if not self.stack:
            return "", None
        name, _, row = self.stack[-1]
        return name, row

    # ---- operations ---------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = counting.op_name(func)
        owner, row = self.current()
        try:
            out = func(*args, **kwargs)
        except RuntimeError as exc:
            msg = str(exc)
            self.failed_at = row.name if row is not None else owner or name
            if any(s in msg.lower() for s in ("too small", "output size", "kernel size can't be greater")):
                kind = row.kind if row is not None else name
                raise EmptyOutput(row.name if row is not None else owner or name, kind, msg) from None
            raise
        t = counting.first_tensor(out)
        standalone = row is None and name not in counting.SILENT and t is not None
        if standalone:
            row = RawRow(f"{owner}.{name}" if owner else name, name)
        if row is not None:
            self._count(row, name, args, out, func)
        elif t is not None:
            self._propagate(name, args, out)
        if standalone:
            self._finish(row, t)
        return out

    def _count(self, row: RawRow, name: str, args: Any, out: Any, func: Any) -> None:
        t = counting.first_tensor(out)
        row.macs += counting.macs(name, args, t)
        row.other_ops += counting.other_ops(name, args, t)
        row.ops.append(name)
        if row.conv_shape is None and name in counting.CONV:
            row.conv_shape = tuple(args[1].shape)
        if t is not None:
            self._propagate(name, args, out)
            mutates = func._schema.is_mutable if hasattr(func, "_schema") else False
            identity = name in counting.ADAPTIVE and tuple(t.shape) == tuple(args[0].shape)
            if not (getattr(func, "is_view", False) or mutates or identity or name in counting.SILENT):
                self.made_by[t] = id(row)

    def _propagate(self, name: str, args: Any, out: Any) -> None:
        """Give every tensor `out` holds (split and chunk return several) its receptive field."""
        for t in counting.tensors([out]):
            f = counting.field(name, args, t, self.fields.get)
            if f is not None:
                self.fields[t] = f
