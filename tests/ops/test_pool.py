"""convscope.ops pooling against torch.nn.functional max_pool2d / avg_pool2d and autograd."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convscope.ops import avg_pool2d, max_pool2d, max_pool2d_backward


def _random_case(rng: np.random.Generator) -> dict:
    square = rng.random() < 0.5                     # an int kernel_size, or a (KH, KW) pair
    k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    k = (k[0], k[0]) if square else k
    s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    p = (int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)))
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(k[0], 13)),
             int(rng.integers(k[1], 13)))
    return {"x": rng.standard_normal(shape), "kernel_size": k[0] if square else k,
            "stride": None if rng.random() < 0.3 else s if rng.random() < 0.5 else s[0],
            "padding": p if rng.random() < 0.5 else min(p)}


CASES = [_random_case(np.random.default_rng(100 + seed)) for seed in range(40)]
IDS = [f"case{i}" for i in range(len(CASES))]


def _kw(case: dict) -> dict:
    return {"kernel_size": case["kernel_size"], "stride": case["stride"], "padding": case["padding"]}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_max_pool_matches_torch(case):
    ref = F.max_pool2d(torch.from_numpy(case["x"]), **_kw(case)).numpy()
    np.testing.assert_array_equal(max_pool2d(case["x"], **_kw(case)), ref)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_avg_pool_matches_torch_count_include_pad(case):
    ref = F.avg_pool2d(torch.from_numpy(case["x"]), **_kw(case)).numpy()
    np.testing.assert_allclose(avg_pool2d(case["x"], **_kw(case)), ref, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_max_pool_backward_matches_autograd(case):
    x = torch.from_numpy(case["x"]).requires_grad_()
    y = F.max_pool2d(x, **_kw(case))
    dout = torch.randn_like(y)
    y.backward(dout)
    np.testing.assert_allclose(max_pool2d_backward(dout.numpy(), case["x"], **_kw(case)), x.grad.numpy(),
                               atol=1e-12)


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (2, 1, 0)])
def test_max_pool_backward_ties_go_to_the_first_maximum(k, s, p):
    x = np.ones((1, 2, 6, 6), dtype=np.float32)   # every window is one big tie
    x[0, 1, ::2, ::2] = 2.0                       # and some windows with several maxima
    xt = torch.from_numpy(x).requires_grad_()
    y = F.max_pool2d(xt, k, s, p)
    dout = torch.arange(y.numel(), dtype=torch.float32).reshape(y.shape) + 1
    y.backward(dout)
    np.testing.assert_array_equal(max_pool2d_backward(dout.numpy(), x, k, s, p), xt.grad.numpy())


def test_lecture_2x2_max_pool():
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    np.testing.assert_array_equal(max_pool2d(x[None, None], 2)[0, 0], [[6, 8], [3, 4]])


def test_float32_and_unbatched():
    x = np.random.default_rng(0).standard_normal((3, 8, 8)).astype(np.float32)
    assert max_pool2d(x, 2).shape == (3, 4, 4) and max_pool2d(x, 2).dtype == np.float32
    out = avg_pool2d(x, 3, 2, 1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, F.avg_pool2d(torch.from_numpy(x), 3, 2, 1).numpy(), rtol=1e-6)
    dx = max_pool2d_backward(np.ones((3, 4, 4), np.float32), x, 2)
    assert dx.shape == x.shape and dx.sum() == 3 * 16


def test_integer_input_with_padding():
    x = np.arange(-20, 16).reshape(1, 1, 6, 6)
    ref = F.max_pool2d(torch.from_numpy(x).double(), 3, 2, 1).numpy()
    np.testing.assert_array_equal(max_pool2d(x, 3, 2, 1), ref)   # padding never wins, even for ints


@pytest.mark.parametrize("fn", [max_pool2d, avg_pool2d])
@pytest.mark.parametrize("args,match", [
    ((3, 1, 2), r"padding must be at most half the kernel size: got padding \(2, 2\)"),
    ((0,), "kernel_size must be positive"),
    ((2, 0), "stride must be positive"),
    ((9,), "height: the kernel is larger than the padded input"),
])
def test_bad_input_is_explained(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(np.zeros((1, 1, 8, 8)), *args)


def test_bad_dout_shape():
    with pytest.raises(ValueError, match=r"dout must have the output's shape \(1, 1, 4, 4\)"):
        max_pool2d_backward(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 8, 8)), 2)
