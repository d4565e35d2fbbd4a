"""The printed `summary --profile` table: measured time beside MACs, and time per MAC."""
from __future__ import annotations

from typing import TYPE_CHECKING

from convscope.analysis.table import _shape, human

if TYPE_CHECKING:
    from convscope.analysis.profile import Profile

RIGHT = {3, 4, 5, 6, 7, 8}


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def render(p: "Profile") -> str:
    s = p.summary
    total = p.rows_forward_ms or 1.0
    headers = ["Layer", "Kind", "Output (CxHxW)", "MACs", "Other ops", "Forward ms", "% time", "ns/MAC"]
    if p.backward_ms is not None:
        headers.append("Backward ms")
    body = []
    for i, r in enumerate(s.rows):
        f = p.forward_ms[i]
        cells = [r.name, r.kind, _shape(r), f"{r.macs:,}" if r.macs else "-",
                 f"{r.other_ops:,}" if r.other_ops else "-", _ms(f),
                 "-" if f is None else f"{100 * f / total:.1f}",
                 f"{1e6 * f / (r.macs * p.batch_size):.3f}" if r.macs and f is not None else "-"]
        if p.backward_ms is not None:
            cells.append(_ms(p.backward_ms[i]))
        body.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(headers)]

    def line(cells) -> str:
        return "  ".join(c.rjust(widths[i]) if i in RIGHT or i == 8 else c.ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    rule = "-" * len(line(headers))
    c, h, w = s.input_size
    out = [f"{s.model}: measured on {p.device} ({p.threads} thread{'s' * (p.threads != 1)}), batch {p.batch_size} "
           f"of {c}x{h}x{w}, fp32, eval mode; medians of {p.repeats} repeats, "
           f"{'thread CPU time' if p.clock == 'cpu' else 'wall-clock time'}",
           "MACs = multiply-accumulates of convolutions and linear layers only (FLOPs = 2 x MACs). They leave out",
           "the bias adds, activations, batch norm, pooling, additions and concatenation: those are the",
           "\"other ops\" column, and they take time (see % time and ns/MAC: where MACs mislead).",
           rule, line(headers), rule, *(line(b) for b in body), rule,
           f"MACs: {human(s.total_macs)}; other ops: {human(s.total_other_ops)}",
           f"Forward: rows add up to {p.rows_forward_ms:.3f} ms; end-to-end forward {p.end_to_end_ms:.3f} ms "
           f"(rows / end-to-end = {p.rows_forward_ms / p.end_to_end_ms:.3f}: below 1 by the Python between ops, "
           f"off by a few % either way by timing noise)"]
    if p.backward_ms is not None:
        out.append(f"Backward: rows add up to {p.rows_backward_ms:.3f} ms; end-to-end backward "
                   f"{p.end_to_end_backward_ms:.3f} ms (gradient accumulation into .grad is not in the rows)")
    return "\n".join(out)
