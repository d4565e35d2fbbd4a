"""Receptive fields, tracked through a network one operation at a time.

Each feature map carries, per spatial axis, three numbers (Araujo et al.,
"Computing Receptive Fields of Convolutional Neural Networks", Distill 2019):

    r  receptive field: how many input pixels one unit sees along the axis
    j  jump: how many input pixels apart two neighbouring units are
    s  start: the input coordinate of the centre of unit 0

A convolution or pooling window of size k (dilation d, so k' = d(k-1)+1),
stride t and padding p maps them to

    r' = r + (k' - 1) j      j' = j t      s' = s + ((k' - 1)/2 - p) j

which is exact for a chain. Where paths meet (addition, concatenation,
multiplication) the result takes the largest field over its inputs, axis by
axis; after a global pooling or a fully connected layer every unit sees the
whole input (`whole=True`). A channel gate broadcast over the map (the 1x1
"excitation" of squeeze-and-excitation) is left out of the merge: strictly
every unit after it depends on the whole image through the gate's global
average, but the convention (and the number people quote for SE-ResNet) is
the field of the convolutions.
"""
from __future__ import annotations

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
        """The field after a sliding window (convolution or pooling)."""
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
    """Where paths meet: per axis, the largest receptive field over the inputs (the union
    of a 1x7 branch and a 7x1 branch spans 7 pixels both ways)."""
    whole = [f for f in fields if f.whole]
    if whole:
        return whole[0]
    r, j, s = [], [], []
    for ax in range(2):
        best = max(fields, key=lambda f: (f.r[ax], f.j[ax]))
        r.append(best.r[ax])
        j.append(max(f.j[ax] for f in fields))
        s.append(best.s[ax])
    return Field(tuple(r), tuple(j), tuple(s))


def chain(steps: Sequence[tuple[int, int, int, int]]) -> list[Field]:
    """Fields after each (kernel, stride, padding, dilation) step of a square chain."""
    field, out = Field(), []
    for k, t, p, d in steps:
        field = field.window((k, k), (t, t), (p, p), (d, d))
        out.append(field)
    return out
