"""The printed summary table (kept by a golden-output test, as torchinfo does).

It reads a `Summary` and its `Row`s by their attributes only, so it imports
nothing from `summary` (which imports it).
"""
from __future__ import annotations

import math
from typing import Any

HEADERS = ("Layer", "Kind", "Output (CxHxW)", "Activations", "Weights (no bias)", "Params", "MACs",
           "Other ops", "RF", "Jump")
RIGHT = {3, 5, 6, 7, 8, 9}


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (decimal prefixes, as papers quote multiply-adds)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:,.1f} MB"


def _shape(row: Any) -> str:
    dims = row.output_shape[1:] if len(row.output_shape) > 1 else row.output_shape
    return "x".join(str(d) for d in dims)


def _weights(row: Any) -> str:
    """The lecture's arithmetic: (kH x kW x C_in) x C_out = weights, biases left out."""
    if not row.params_no_bias:
        return "-"
    w = row.weight_shape
    if w and len(w) == 4 and math.prod(w) == row.params_no_bias:
        return f"({w[2]}x{w[3]}x{w[1]})x{w[0]} = {row.params_no_bias:,}"
    if w and len(w) == 2 and math.prod(w) == row.params_no_bias:
        return f"{w[1]}x{w[0]} = {row.params_no_bias:,}"
    return f"{row.params_no_bias:,}"


def _cells(row: Any) -> tuple[str, ...]:
    acts = f"{row.activations:,}" if row.stored else f"({row.activations:,})"
    if row.receptive_field is None:
        rf = jump = "-"
    elif row.whole_input:
        rf, jump = "all", "-"
    else:
        h, w = row.receptive_field_hw or (row.receptive_field, row.receptive_field)
        rf = str(h) if h == w else f"{h}x{w}"
        jump = str(row.jump)
    return (row.name, row.kind, _shape(row), acts, _weights(row), f"{row.params:,}" if row.params else "-",
            f"{row.macs:,}" if row.macs else "-", f"{row.other_ops:,}" if row.other_ops else "-", rf, jump)


def render(s: Any) -> str:
    body = [_cells(r) for r in s.rows]
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(HEADERS)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(widths[i]) if i in RIGHT else c.ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    rule = "-" * len(line(HEADERS))
    c, h, w = s.input_size
    bias = s.total_biases
    out = [
        f"{s.model}: one input of {c}x{h}x{w} (batch 1), fp32",
        "MACs = multiply-accumulates of convolutions and linear layers; FLOPs = 2 x MACs.",
        "Other ops (batch norm, pooling, activations, additions) are counted apart, not in MACs.",
        "RF = receptive field in input pixels (largest over paths), Jump = input pixels between neighbouring units.",
        rule, line(HEADERS), rule, *(line(b) for b in body), rule,
        f"Parameters: {s.total_params:,} ({human(s.total_params)}; weights {s.total_params - bias:,} + "
        f"biases {bias:,}) = {mb(s.param_bytes)}",
        *([f"Of these, {s.total_params - s.params_in_forward:,} belong to layers an eval forward does not run "
           "(auxiliary heads, used in training only)"] if s.params_in_forward != s.total_params else []),
        f"MACs: {s.total_macs:,} ({human(s.total_macs)}); FLOPs = 2 x MACs = {human(2 * s.total_macs)}",
        f"Other ops (not MACs): {s.total_other_ops:,} ({human(s.total_other_ops)})",
        f"Activations stored by the forward pass: {s.total_activations:,} values = {mb(s.activation_bytes)} "
        "(in parentheses: in place or identity, not new memory)",
        f"Forward + backward, estimated as twice the forward activations (their gradients): "
        f"{mb(s.activation_bytes_with_backward)}",
    ]
    return "\n".join(out)
