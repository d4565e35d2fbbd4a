"""Local response normalisation across channels (AlexNet, Krizhevsky et al. 2012, section 3.3).

    b[c] = a[c] / (k + alpha * sum_{c' = c - n//2}^{c + (n-1)//2} a[c']^2) ** beta

the formula exactly as the paper (and the lecture) writes it: alpha is NOT
divided by the window size n. Channels beyond the edges count as zeros.

torch's `local_response_norm` (and Caffe's LRN layer) divide alpha by n, so
`F.local_response_norm(x, n, alpha=a)` equals `local_response_norm(x, n, alpha=a / n)`
here; with the same alpha = 1e-4 torch's layer is five times weaker than section 3.3's.
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
    div = (k + alpha * window) ** beta
    return (x / div).astype(x.dtype, copy=False)
