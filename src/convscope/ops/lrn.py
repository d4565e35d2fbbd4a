"""Local response normalisation across channels (AlexNet, Krizhevsky et al. 2012, section 3.3).

    b[c] = a[c] / (k + alpha/n * sum_{c' = c - n//2}^{c + (n-1)//2} a[c']^2) ** beta

Channels beyond the edges count as zeros. This is torch's
`local_response_norm` (and Caffe's): alpha is divided by the window size n.
The paper writes `k + alpha * sum` with alpha = 1e-4; to get its exact
numbers pass alpha = n * 1e-4.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["local_response_norm"]


def local_response_norm(x: Any, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 2.0) -> np.ndarray:
    """Normalise each value by the energy of `size` neighbouring channels at the same position.

    x: (N, C, ...) with channels on axis 1, as torch (so an unbatched image
    is x[None]). Defaults are AlexNet's (n=5, alpha=1e-4, beta=0.75, k=2).
    """
    x = np.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"local_response_norm needs (N, C, H, W) (channels on axis 1): got shape {x.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer: got {size!r}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    # zero-pad the channel axis (n//2 before, (n-1)//2 after), then add up n shifted copies
    widths = [(0, 0)] * x.ndim
    widths[1] = (size // 2, (size - 1) // 2)
    sq = np.pad(x * x, widths)                      # (N, C + n - 1, ...)
    c = x.shape[1]
    window = sum(sq[:, t:t + c] for t in range(size))  # (N, C, ...): energy of each channel's neighbours
    div = (k + (alpha / size) * window) ** beta
    return (x / div).astype(x.dtype, copy=False)
