"""convscope.ops.local_response_norm and layers.LRN against the paper's formula, written out.

Krizhevsky et al. 2012, section 3.3:
    b[i] = a[i] / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a[j]^2) ** beta
with k = 2, n = 5, alpha = 1e-4, beta = 0.75. torch's (and Caffe's) LRN divide alpha by n,
so torch's LocalResponseNorm with alpha * n is the second, independent oracle.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.layers import LRN
from convscope.ops import local_response_norm


def paper_lrn(x: np.ndarray, n: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> np.ndarray:
    """Section 3.3 with an explicit loop over channels (odd n: n//2 neighbours each side)."""
    out = np.empty_like(x)
    channels = x.shape[1]
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        energy = np.zeros_like(x[:, 0])
        for j in range(lo, hi + 1):
            energy += x[:, j] ** 2
        out[:, i] = x[:, i] / (k + alpha * energy) ** beta
    return out


def _x(seed: int, shape=(2, 9, 4, 4), scale: float = 30.0) -> np.ndarray:
    # scale 30: sum of squares ~ 5 * 900, so alpha * sum ~ 0.45 against k = 2: alpha matters
    return np.random.default_rng(seed).standard_normal(shape) * scale


def test_defaults_are_the_papers_formula():
    x = _x(0)
    np.testing.assert_allclose(local_response_norm(x), paper_lrn(x), rtol=1e-12)


def test_alpha_is_not_divided_by_n():
    """The bug this guards: torch's convention (alpha / n) is five times weaker at n = 5."""
    x = _x(1)
    torch_convention = F.local_response_norm(torch.from_numpy(x), 5, alpha=1e-4, beta=0.75, k=2.0).numpy()
    assert np.abs(local_response_norm(x) - torch_convention).max() > 1e-2


@pytest.mark.parametrize("size", [1, 3, 5, 7])
@pytest.mark.parametrize("shape", [(2, 6, 5, 5), (1, 11, 3, 4), (3, 4, 7)])
def test_odd_windows_match_the_loop_and_torch_with_alpha_times_n(size, shape):
    x = _x(size, shape)
    kw = {"alpha": 1e-3, "beta": 0.75, "k": 2.0}
    ours = local_response_norm(x, size, **kw)
    np.testing.assert_allclose(ours, paper_lrn(x, size, **kw), rtol=1e-12)
    ref = F.local_response_norm(torch.from_numpy(x), size, alpha=kw["alpha"] * size, beta=0.75, k=2.0).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


@pytest.mark.parametrize("size", [2, 4, 12])
def test_even_windows_follow_torchs_placement(size):
    """Even n: n//2 channels before, (n-1)//2 after, as torch and Caffe place the window."""
    x = _x(size, (2, 13, 3, 3))
    ref = F.local_response_norm(torch.from_numpy(x), size, alpha=1e-3 * size, beta=0.75, k=2.0).numpy()
    np.testing.assert_allclose(local_response_norm(x, size, alpha=1e-3), ref, rtol=1e-12)


def test_float32_keeps_its_dtype():
    x = _x(2).astype(np.float32)
    out = local_response_norm(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, paper_lrn(x.astype(np.float64)), rtol=1e-5)


def test_layer_default_is_the_paper_and_torch_convention_is_named():
    x = _x(3)
    t = torch.from_numpy(x)
    with torch.no_grad():
        paper = LRN()(t).numpy()
        caffe = LRN(convention="torch")(t)
    np.testing.assert_allclose(paper, paper_lrn(x), rtol=1e-10)
    np.testing.assert_allclose(paper, nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(t).numpy(), rtol=1e-12)
    torch.testing.assert_close(caffe, nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(t), rtol=1e-12, atol=0)
    assert "convention='paper'" in repr(LRN())


def test_bad_input():
    with pytest.raises(ValueError, match="channels on axis 1"):
        local_response_norm(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        local_response_norm(np.zeros((1, 4, 2, 2)), size=0)
    with pytest.raises(ValueError, match="convention"):
        LRN(convention="caffe2")
