"""Reference CNN operations in NumPy, for teaching: read them, test against them.

Everything is NCHW and cross-correlation, like PyTorch, and matches
`torch.nn.functional` to floating-point precision (the tests check it).
`stride`, `padding`, `kernel_size` and `dilation` take an int or a pair
(height, width). An unbatched (C, H, W) input is accepted by the
convolution and pooling functions and gives an unbatched output.
This package never imports torch.
"""
from __future__ import annotations

from convscope.ops.conv import conv2d, conv2d_backward, conv2d_naive
from convscope.ops.lrn import local_response_norm
from convscope.ops.pool import avg_pool2d, max_pool2d, max_pool2d_backward

__all__ = [
    "avg_pool2d",
    "conv2d",
    "conv2d_backward",
    "conv2d_naive",
    "local_response_norm",
    "max_pool2d",
    "max_pool2d_backward",
]
