"""convscope.ops.local_response_norm against torch.nn.functional.local_response_norm."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convscope.ops import local_response_norm


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 12])
@pytest.mark.parametrize("shape", [(2, 6, 5, 5), (1, 11, 3, 4), (3, 4, 7)])
def test_matches_torch(size, shape):
    x = np.random.default_rng(size).standard_normal(shape) * 5
    kw = {"alpha": 1e-2, "beta": 0.75, "k": 2.0}
    ref = F.local_response_norm(torch.from_numpy(x), size, **kw).numpy()
    np.testing.assert_allclose(local_response_norm(x, size, **kw), ref, rtol=1e-12)


def test_alexnet_defaults_and_float32():
    x = np.random.default_rng(0).standard_normal((2, 16, 6, 6)).astype(np.float32) * 10
    out = local_response_norm(x)   # AlexNet's n=5, alpha=1e-4, beta=0.75, k=2 (torch's default k is 1)
    ref = F.local_response_norm(torch.from_numpy(x), 5, alpha=1e-4, beta=0.75, k=2.0).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_paper_formula_with_alpha_times_n():
    """AlexNet section 3.3: b = a / (k + alpha * sum of squares over n neighbours) ** beta."""
    x = np.random.default_rng(1).standard_normal((1, 8, 2, 2)) * 20
    n, alpha, beta, k = 5, 1e-4, 0.75, 2.0
    expected = np.empty_like(x)
    for c in range(8):
        lo, hi = max(0, c - n // 2), min(7, c + n // 2)
        expected[:, c] = x[:, c] / (k + alpha * (x[:, lo:hi + 1] ** 2).sum(axis=1)) ** beta
    np.testing.assert_allclose(local_response_norm(x, n, alpha=alpha * n, beta=beta, k=k), expected, rtol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="channels on axis 1"):
        local_response_norm(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        local_response_norm(np.zeros((1, 4, 2, 2)), size=0)
