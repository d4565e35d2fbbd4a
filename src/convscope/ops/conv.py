"""2-D convolution in NumPy: the lecture's loops, the fast im2col version, and the backward pass.

Like every framework this is cross-correlation (the kernel is not flipped):

    out[n, o, y, x] = b[o] + sum_{c, i, j} w[o, c, i, j] * xp[n, c, y*S + i*D, x*S + j*D]

where xp is the input zero-padded by P on each side, and with groups G each
output channel o only sees the C/G input channels of its group.
Shapes are NCHW; an unbatched (C, H, W) input gives a (O, OH, OW) output.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from convscope.ops._im2col import Pair, as_batch, col2im_add, output_hw, pad, pair, windows

__all__ = ["conv2d", "conv2d_naive", "conv2d_backward"]

IntOrPair = int | tuple[int, int]
_CHUNK_BYTES = 2 << 20  # im2col buffer size for conv2d, about an L2 cache


def _check(x: Any, w: Any, b: Any, groups: int) -> tuple[np.ndarray, bool, np.ndarray, np.ndarray | None]:
    """Validate shapes and bring x, w (and b) to one dtype; x comes back 4-D."""
    x, unbatched = as_batch(x)
    w = np.asarray(w)
    if w.ndim != 4 or 0 in w.shape:
        raise ValueError(f"the kernel must be (out_channels, in_channels/groups, KH, KW): got shape {w.shape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive integer: got {groups!r}")
    c, (o, depth) = x.shape[1], w.shape[:2]
    if c % groups:
        raise ValueError(f"the input's {c} channels do not split into {groups} groups: "
                         f"the channels must be divisible by groups")
    if o % groups:
        raise ValueError(f"the kernel's {o} output channels do not split into {groups} groups: "
                         f"the number of kernels must be divisible by groups")
    if depth != c // groups:
        if groups == 1:
            raise ValueError(f"the kernel's depth must equal the input's channels: got {depth} and {c}")
        raise ValueError(f"the kernel's depth must equal the input's channels per group "
                         f"({c} channels / {groups} groups = {c // groups}): got {depth} and {c // groups}")
    arrays = [x, w]
    if b is not None:
        b = np.asarray(b)
        if b.shape != (o,):
            raise ValueError(f"the bias must have one value per kernel, shape ({o},): got shape {b.shape}")
        arrays.append(b)
    dtype = np.result_type(*arrays)
    return x.astype(dtype, copy=False), unbatched, w.astype(dtype, copy=False), \
        None if b is None else b.astype(dtype, copy=False)


def _geometry(x: np.ndarray, w: np.ndarray, stride: Any, padding: Any,
              dilation: Any) -> tuple[Pair, Pair, Pair, Pair]:
    s, p, d = pair(stride, "stride", 1), pair(padding, "padding", 0), pair(dilation, "dilation", 1)
    out_hw = output_hw(x.shape[2:], w.shape[2:], s, p, d)
    return s, p, d, out_hw


def conv2d_naive(x: Any, w: Any, b: Any = None, stride: IntOrPair = 1, padding: IntOrPair = 0,
                 dilation: IntOrPair = 1, groups: int = 1) -> np.ndarray:
    """Convolution with explicit loops, to read beside the lecture. Slow; same result as `conv2d`.

    x: (N, C, H, W) or (C, H, W); w: (O, C/groups, KH, KW); b: (O,) or None.
    """
    x, unbatched, w, b = _check(x, w, b, groups)
    (sh, sw), padding, (dh, dw), (oh, ow) = _geometry(x, w, stride, padding, dilation)
    xp = pad(x, padding)                          # (N, C, H + 2P, W + 2P), zeros around
    n_batch, n_out, depth, kh, kw = x.shape[0], w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    per_group = n_out // groups                   # kernels per group
    out = np.zeros((n_batch, n_out, oh, ow), dtype=np.result_type(x, w))
    for n in range(n_batch):
        for o in range(n_out):                    # one kernel -> one output channel ("activation map")
            first = (o // per_group) * depth      # the group's first input channel
            kernel = w[o]                         # (C/groups, KH, KW)
            for y in range(oh):
                for x_ in range(ow):
                    # slide the kernel: its top-left corner sits at (y*S, x*S) of the padded input
                    top, left = y * sh, x_ * sw
                    patch = xp[n, first:first + depth,
                               top:top + dh * (kh - 1) + 1:dh,      # every D-th row (dilation)
                               left:left + dw * (kw - 1) + 1:dw]    # (C/groups, KH, KW)
                    # take the dot product of the kernel and the patch under it
                    out[n, o, y, x_] = np.sum(patch * kernel)
            if b is not None:
                out[n, o] += b[o]                 # add the bias
    return out[0] if unbatched else out


def conv2d(x: Any, w: Any, b: Any = None, stride: IntOrPair = 1, padding: IntOrPair = 0,
           dilation: IntOrPair = 1, groups: int = 1) -> np.ndarray:
    """Fast convolution: im2col as a strided view, then one batched matrix product.

    x: (N, C, H, W) or (C, H, W); w: (O, C/groups, KH, KW); b: (O,) or None.
    Returns (N, O, OH, OW) (or (O, OH, OW)) in the common dtype of the inputs,
    so float32 stays float32.
    """
    x, unbatched, w, b = _check(x, w, b, groups)
    stride, padding, dilation, (oh, ow) = _geometry(x, w, stride, padding, dilation)
    n, o, depth, kh, kw = x.shape[0], w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    view = windows(pad(x, padding), (kh, kw), stride, dilation, (oh, ow))  # (N, C, KH, KW, OH, OW), no copy
    kernels = w.reshape(groups, o // groups, depth * kh * kw)                # (G, O/G, C/G*KH*KW)
    out = np.empty((n, groups, o // groups, oh * ow), dtype=x.dtype)         # (N, G, O/G, OH*OW)
    # The im2col matrix is the one copy. Build it a few images at a time into one
    # reused buffer: a cache-sized buffer is much faster than one huge matrix.
    step = max(1, _CHUNK_BYTES // (view[0].size * x.itemsize))
    cols = np.empty((min(step, n),) + view.shape[1:], dtype=x.dtype)       # (n, C, KH, KW, OH, OW)
    for start in range(0, n, step):
        stop = min(n, start + step)
        chunk = cols[:stop - start]
        np.copyto(chunk, view[start:stop])
        # (G, O/G, K) @ (n, G, K, L) -> (n, G, O/G, L): one BLAS matrix product per image and group
        np.matmul(kernels, chunk.reshape(stop - start, groups, depth * kh * kw, oh * ow), out=out[start:stop])
    out = out.reshape(n, o, oh, ow)
    if b is not None:
        out += b[:, None, None]
    return out[0] if unbatched else out


def conv2d_backward(dout: Any, x: Any, w: Any, stride: IntOrPair = 1, padding: IntOrPair = 0,
                    dilation: IntOrPair = 1, groups: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of a loss through `conv2d`, given dout = dLoss/d(output).

    Returns (dx, dw, db) shaped like x, w and the bias (O,). The kernel's
    gradient correlates the input with dout; the input's gradient spreads
    each dout value back over the window it came from (col2im).
    """
    x, unbatched, w, _ = _check(x, w, None, groups)
    stride, padding, dilation, (oh, ow) = _geometry(x, w, stride, padding, dilation)
    n, o, depth, kh, kw = x.shape[0], w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    dout = np.asarray(dout)
    dout = dout[None] if unbatched and dout.ndim == 3 else dout
    if dout.shape != (n, o, oh, ow):
        want = (o, oh, ow) if unbatched else (n, o, oh, ow)
        raise ValueError(f"dout must have the output's shape {want}: got {np.shape(dout)}")
    dout = dout.astype(np.result_type(dout, x), copy=False)
    xp = pad(x, padding)
    cols = windows(xp, (kh, kw), stride, dilation, (oh, ow)).reshape(n, groups, depth * kh * kw, oh * ow)
    d = dout.reshape(n, groups, o // groups, oh * ow)                 # (N, G, O/G, L)
    db = dout.sum(axis=(0, 2, 3))
    dw = np.matmul(d, cols.transpose(0, 1, 3, 2)).sum(axis=0)       # (G, O/G, C/G*KH*KW)
    kernels = w.reshape(groups, o // groups, depth * kh * kw)
    dcols = np.matmul(kernels.transpose(0, 2, 1), d)                # (N, G, C/G*KH*KW, L)
    dxp = np.zeros(xp.shape, dtype=dcols.dtype)
    col2im_add(dxp, dcols.reshape(n, depth * groups, kh, kw, oh, ow), stride, dilation)
    (top, left), (h, w_) = padding, x.shape[2:]
    dx = np.ascontiguousarray(dxp[:, :, top:top + h, left:left + w_])  # drop the padding
    return (dx[0] if unbatched else dx), dw.reshape(w.shape), db
