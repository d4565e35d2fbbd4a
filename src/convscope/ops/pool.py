"""Max and average pooling in NumPy, with the max-pool backward pass.

Pooling slides a window like a convolution, with no weights: each output is
the maximum (or mean) of the window, per channel. The window reuses the
convolution's im2col view. Matches torch's max_pool2d / avg_pool2d with
their defaults (ceil_mode=False, avg_pool2d's count_include_pad=True: the
zeros of the padding count in the mean, so the divisor is always KH*KW).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from convscope.ops._im2col import Pair, as_batch, col2im_add, output_hw, pad, pair, windows

__all__ = ["avg_pool2d", "max_pool2d", "max_pool2d_backward"]

IntOrPair = int | tuple[int, int]


def _setup(x: Any, kernel_size: Any, stride: Any, padding: Any) -> tuple[np.ndarray, bool, Pair, Pair, Pair, Pair]:
    x, unbatched = as_batch(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"pooling needs a numeric input: got dtype {x.dtype}")
    k = pair(kernel_size, "kernel_size", 1)
    s = k if stride is None else pair(stride, "stride", 1)  # default stride = kernel: windows tile the input
    p = pair(padding, "padding", 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        # torch's rule: a window must not lie entirely in the padding
        raise ValueError(f"padding must be at most half the kernel size: got padding {p} for kernel_size {k}")
    return x, unbatched, k, s, p, output_hw(x.shape[2:], k, s, p)


def _lowest(dtype: np.dtype) -> float | int:
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


def max_pool2d(x: Any, kernel_size: IntOrPair, stride: IntOrPair | None = None,
               padding: IntOrPair = 0) -> np.ndarray:
    """The maximum of each window. x: (N, C, H, W) or (C, H, W); stride defaults to kernel_size.

    Padding is -inf (never the maximum), as in torch.
    """
    x, unbatched, k, s, p, out_hw = _setup(x, kernel_size, stride, padding)
    view = windows(pad(x, p, _lowest(x.dtype)), k, s, (1, 1), out_hw)  # (N, C, KH, KW, OH, OW)
    out = view.max(axis=(2, 3))                                         # (N, C, OH, OW)
    return out[0] if unbatched else out


def avg_pool2d(x: Any, kernel_size: IntOrPair, stride: IntOrPair | None = None,
               padding: IntOrPair = 0) -> np.ndarray:
    """The mean of each window, padding zeros included (torch's count_include_pad=True).

    x: (N, C, H, W) or (C, H, W); stride defaults to kernel_size. Integer
    inputs give a float64 mean; float32 stays float32.
    """
    x, unbatched, k, s, p, out_hw = _setup(x, kernel_size, stride, padding)
    view = windows(pad(x, p), k, s, (1, 1), out_hw)
    out = view.sum(axis=(2, 3)) / (k[0] * k[1])
    return out[0] if unbatched else out


def max_pool2d_backward(dout: Any, x: Any, kernel_size: IntOrPair, stride: IntOrPair | None = None,
                        padding: IntOrPair = 0) -> np.ndarray:
    """dLoss/dx through `max_pool2d`: each window's gradient goes to its maximum only.

    On ties the first maximum in row-major order inside the window wins, as in
    torch; overlapping windows (stride < kernel) add up.
    """
    x, unbatched, k, s, p, (oh, ow) = _setup(x, kernel_size, stride, padding)
    dout = np.asarray(dout)
    dout = dout[None] if unbatched and dout.ndim == 3 else dout
    n, c = x.shape[:2]
    if dout.shape != (n, c, oh, ow):
        want = (c, oh, ow) if unbatched else (n, c, oh, ow)
        raise ValueError(f"dout must have the output's shape {want}: got {np.shape(dout)}")
    xp = pad(x, p, _lowest(x.dtype))
    view = windows(xp, k, s, (1, 1), (oh, ow))
    flat = view.transpose(0, 1, 4, 5, 2, 3).reshape(n, c, oh, ow, k[0] * k[1])
    winner = flat.argmax(axis=-1)                                     # (N, C, OH, OW), index in the window
    dtype = np.result_type(dout.dtype, np.float32) if np.issubdtype(x.dtype, np.integer) \
        else np.result_type(dout, x)
    dcols = np.zeros((n, c, k[0], k[1], oh, ow), dtype=dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            dcols[:, :, i, j] = np.where(winner == i * k[1] + j, dout, 0)
    dxp = np.zeros(xp.shape, dtype=dtype)
    col2im_add(dxp, dcols, s, (1, 1))
    dx = np.ascontiguousarray(dxp[:, :, p[0]:p[0] + x.shape[2], p[1]:p[1] + x.shape[3]])  # drop the padding
    return dx[0] if unbatched else dx
