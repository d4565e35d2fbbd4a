"""Receptive fields, tracked through a network one operation at a time.

Each feature map carries, per spatial axis, three numbers (Araujo et al.,
"Computing Receptive Fields of Convolutional Neural Networks", Distill 2019):

    r  receptive field: how many input pixels one unit sees along the axis
    j  jump: how many input pixels apart two neighbouring units are
    s  start: the input coordinate of the centre of unit 0

A convolution or pooling window of size k (dilation d, so k' = d(k-1)+1),
stride t and padding p maps them to

    r' = r + (k' - 1) j      j' = j t      s' = s + ((k' - 1)/2 - p) j

which is exact for a chain; a padding given per side enters through the
padding before the input only (`pad_before`: the rows above, the columns to
the left), which is what TF's asymmetric "SAME" padding needs.

Where paths meet (addition, concatenation, multiplication) a unit sees every
input pixel that any of its inputs sees, so its field is the union of the
inputs' windows; we keep the hull of that union (from the leftmost window's
first pixel to the rightmost window's last, axis by axis), because that is
what a gradient measurement reports (the extent of the input pixels with a
non-zero gradient) and what the page draws as one rectangle. When the inputs
share one jump (every branch of every zoo model: maps of one size come from
the same strides) the hull of unit i is the hull of unit 0 moved by i jumps,
so (r, j, s) describe every unit exactly. A branch with a fractional jump
(adaptive pooling that does not divide its input) makes it an approximation:
the hull of unit 0, and the largest jump. After a global pooling or a fully
connected layer every unit sees the whole input (`whole=True`). A channel gate
broadcast over the map (the 1x1 "excitation" of squeeze-and-excitation) is
left out of the merge: strictly every unit after it depends on the whole image
through the gate's global average, but the convention (and the number people
quote for SE-ResNet) is the field of the convolutions, and the measurement in
the tests detaches that gate to match.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from convscope.geometry import receptive_field_step


@dataclass(frozen=True)
class Field:
    """Receptive field along (height, width) of one feature map."""

    r: tuple[int, int] = (1, 1)
    j: tuple[int, int] = (1, 1)
    s: tuple[float, float] = (0.0, 0.0)
    whole: bool = False

    def window(self, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
               dilation: Sequence[int] = (1, 1)) -> "Field":
        """The field after a sliding window (convolution or pooling); `padding` is what comes before
        the input on each axis (top, left): the padding after it changes the output's size only."""
        if self.whole:
            return self
        r, j, s = zip(*(receptive_field_step(self.r[ax], self.j[ax], self.s[ax], kernel[ax], stride[ax],
                                             padding[ax], dilation[ax]) for ax in range(2)))
        return Field(r, j, s)

    def shift(self, top: int, left: int) -> "Field":
        """Explicit zero padding (F.pad): unit 0 now sits `top`/`left` pixels earlier."""
        if self.whole:
            return self
        return Field(self.r, self.j, (self.s[0] - top * self.j[0], self.s[1] - left * self.j[1]))

    def everything(self) -> "Field":
        return Field(self.r, self.j, self.s, whole=True)

    @property
    def size(self) -> int:
        """The larger of the two axes (the usual single number)."""
        return max(self.r)


def merge(fields: Sequence[Field]) -> Field:
    """Where paths meet: per axis, the hull of the inputs' windows (see the module's docstring: a
    1x7 branch and a 7x1 branch together span 7 pixels both ways; two windows of one size whose
    centres differ by one pixel span one pixel more)."""
    whole = [f for f in fields if f.whole]
    if whole:
        return whole[0]
    r, j, s = [], [], []
    for ax in range(2):
        lo = min(f.s[ax] - (f.r[ax] - 1) / 2 for f in fields)
        hi = max(f.s[ax] + (f.r[ax] - 1) / 2 for f in fields)
        r.append(_number(hi - lo + 1))
        j.append(max(f.j[ax] for f in fields))
        s.append((lo + hi) / 2)
    return Field(tuple(r), tuple(j), tuple(s))


def adaptive(f: Field, n: Sequence[int], m: Sequence[int]) -> Field:
    """Adaptive pooling from n to m pixels per axis: window i spans [floor(i n/m), ceil((i+1) n/m)).
    When m divides n that is a plain k = s = n/m window (exact); otherwise the widest window and
    the fractional jump n/m (an approximation: the windows are not evenly spaced)."""
    if f.whole or tuple(n) == tuple(m):
        return f  # an identity: the output is the input
    kernel = tuple(max(math.ceil((i + 1) * n[a] / m[a]) - (i * n[a]) // m[a] for i in range(m[a])) for a in range(2))
    if all(n[a] % m[a] == 0 for a in range(2)):
        return f.window(kernel, kernel, (0, 0))
    out = f.window(kernel, (1, 1), (0, 0))
    return Field(out.r, tuple(_number(f.j[a] * n[a] / m[a]) for a in range(2)), out.s)  # type: ignore[arg-type]


def _number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def chain(steps: Sequence[tuple[int, int, int, int]]) -> list[Field]:
    """Fields after each (kernel, stride, padding, dilation) step of a square chain."""
    field, out = Field(), []
    for k, t, p, d in steps:
        field = field.window((k, k), (t, t), (p, p), (d, d))
        out.append(field)
    return out
