"""Shared plumbing for the reference ops: argument checks, padding, im2col views.

im2col ("image to columns") is how every fast convolution starts: lay out
each kernel-sized window of the input as one column, and the convolution
becomes a single matrix product. Here the windows are a strided *view* of
the padded input (`as_strided`): nothing is copied until the product needs
contiguous memory.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from convscope.geometry import GeometryError, conv_output_size

Pair = tuple[int, int]


def pair(value: Any, name: str, minimum: int) -> Pair:
    """An int or a pair of ints -> (height, width), checked against `minimum`."""
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2:
        raise ValueError(f"{name} must be an int or a pair (height, width): got {value!r}")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an int or a pair of ints: got {value!r}")
        if v < minimum:
            what = "positive" if minimum == 1 else "non-negative"
            raise ValueError(f"{name} must be {what}: got {value!r}")
    return int(vals[0]), int(vals[1])


def as_batch(x: Any, name: str = "input") -> tuple[np.ndarray, bool]:
    """(N, C, H, W) as given, or an unbatched (C, H, W) with a batch of one added.

    Returns the 4-D array and whether a batch axis was added (to remove it again).
    """
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"the {name} must be (N, C, H, W) or an unbatched (C, H, W): got shape {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"the {name} is empty: shape {x.shape}")
    return (x[None], True) if x.ndim == 3 else (x, False)


def output_hw(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair = (1, 1)) -> Pair:
    """Output (height, width), with the axis named in any geometry error."""
    out = []
    for axis, n, k, s, p, d in zip(("height", "width"), hw, kernel, stride, padding, dilation):
        try:
            out.append(conv_output_size(n, k, s, p, d))
        except GeometryError as exc:
            raise GeometryError(f"{axis}: {exc}", exc.fixes) from None
    return out[0], out[1]


def pad(x: np.ndarray, padding: Pair, value: float = 0) -> np.ndarray:
    """Pad the last two axes of (N, C, H, W) by `padding` on each side."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def windows(xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair) -> np.ndarray:
    """Every kernel window of a padded input, as a read-only view.

    xp: (N, C, Hp, Wp) -> (N, C, KH, KW, OH, OW), where
    [n, c, i, j, y, x] = xp[n, c, y*SH + i*DH, x*SW + j*DW].
    """
    sn, sc, sh, sw = xp.strides
    shape = (xp.shape[0], xp.shape[1], kernel[0], kernel[1], out_hw[0], out_hw[1])
    strides = (sn, sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1])
    return np.lib.stride_tricks.as_strided(xp, shape, strides, writeable=False)


def col2im_add(dxp: np.ndarray, dcols: np.ndarray, stride: Pair, dilation: Pair) -> None:
    """The adjoint of `windows`: add each window's gradient back where it came from.

    dcols: (N, C, KH, KW, OH, OW) accumulated into dxp: (N, C, Hp, Wp) in place.
    Windows overlap when the stride is below the kernel, hence the addition.
    """
    _, _, kh, kw, oh, ow = dcols.shape
    for i in range(kh):
        for j in range(kw):
            top, left = i * dilation[0], j * dilation[1]
            dxp[:, :, top:top + stride[0] * (oh - 1) + 1:stride[0],
                left:left + stride[1] * (ow - 1) + 1:stride[1]] += dcols[:, :, i, j]
