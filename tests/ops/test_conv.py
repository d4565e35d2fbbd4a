"""convscope.ops convolution against torch.nn.functional.conv2d and autograd (the oracle)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convscope.ops import conv2d, conv2d_backward, conv2d_naive

IMAGE = np.array([[1, 1, 1, 0, 0],
                  [0, 1, 1, 1, 0],
                  [0, 0, 1, 1, 1],
                  [0, 0, 1, 1, 0],
                  [0, 1, 1, 0, 0]])
KERNEL = np.array([[1, 0, 1],
                   [0, 1, 0],
                   [1, 0, 1]])
SOBEL = np.array([[1, 0, -1],
                  [2, 0, -2],
                  [1, 0, -1]], dtype=np.float64)


def _random_case(rng: np.random.Generator) -> dict:
    """A random (x, w, b, stride, padding, dilation, groups) that torch accepts."""
    groups = int(rng.choice([1, 1, 2, 3]))
    cin, cout = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    h = int(rng.integers(dilation[0] * (kh - 1) + 1, 12))
    w = int(rng.integers(dilation[1] * (kw - 1) + 1, 12))
    return {"x": rng.standard_normal((int(rng.integers(1, 4)), cin, h, w)),
            "w": rng.standard_normal((cout, cin // groups, kh, kw)),
            "b": rng.standard_normal(cout) if rng.random() < 0.7 else None,
            "stride": stride if rng.random() < 0.5 else stride[0],
            "padding": padding if rng.random() < 0.5 else padding[0],
            "dilation": dilation if rng.random() < 0.5 else dilation[0], "groups": groups}


CASES = [_random_case(np.random.default_rng(seed)) for seed in range(60)]


def _torch_conv(case: dict) -> torch.Tensor:
    b = None if case["b"] is None else torch.from_numpy(case["b"])
    return F.conv2d(torch.from_numpy(case["x"]), torch.from_numpy(case["w"]), b, stride=case["stride"],
                    padding=case["padding"], dilation=case["dilation"], groups=case["groups"])


def _kw(case: dict) -> dict:
    return {k: case[k] for k in ("stride", "padding", "dilation", "groups")}


@pytest.mark.parametrize("fn", [conv2d, conv2d_naive])
def test_lecture_5x5_example(fn):
    out = fn(IMAGE[None, None], KERNEL[None, None])
    np.testing.assert_array_equal(out[0, 0], [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


@pytest.mark.parametrize("fn", [conv2d, conv2d_naive])
def test_sobel_sees_vertical_edges_only(fn):
    vertical = np.zeros((8, 8))
    vertical[:, 4:] = 1.0                      # dark left half, bright right half
    horizontal = vertical.T.copy()             # dark top, bright bottom
    k = SOBEL[None, None]
    v = fn(vertical[None, None], k)[0, 0]
    h = fn(horizontal[None, None], k)[0, 0]
    assert np.abs(v).max() == 4.0              # 1 + 2 + 1 along the edge
    assert np.count_nonzero(v) == 2 * 6        # the two columns next to the edge, every row
    np.testing.assert_array_equal(h, 0.0)      # nothing for a horizontal edge


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_forward_matches_torch(case):
    expected = _torch_conv(case).numpy()
    np.testing.assert_allclose(conv2d(case["x"], case["w"], case["b"], **_kw(case)), expected, atol=1e-10)
    np.testing.assert_allclose(conv2d_naive(case["x"], case["w"], case["b"], **_kw(case)), expected, atol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_backward_matches_autograd(case):
    x = torch.from_numpy(case["x"]).requires_grad_()
    w = torch.from_numpy(case["w"]).requires_grad_()
    b = torch.zeros(case["w"].shape[0], dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, w, b, stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
                 groups=case["groups"])
    dout = torch.randn_like(y)
    y.backward(dout)
    dx, dw, db = conv2d_backward(dout.numpy(), case["x"], case["w"], **_kw(case))
    np.testing.assert_allclose(dx, x.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(dw, w.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(db, b.grad.numpy(), atol=1e-10)


def test_float32_stays_float32_and_matches():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 8, 16, 16), dtype=np.float32)
    w = rng.standard_normal((6, 4, 3, 3), dtype=np.float32)
    b = rng.standard_normal(6, dtype=np.float32)
    out = conv2d(x, w, b, padding=1, groups=2)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1, groups=2)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)
    dx, dw, db = conv2d_backward(np.ones_like(out), x, w, padding=1, groups=2)
    assert dx.dtype == dw.dtype == db.dtype == np.float32


def test_batch_larger_than_one_chunk():
    """conv2d builds im2col a few images at a time: a big batch must still be exact."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 3, 20, 20))
    w = rng.standard_normal((5, 3, 3, 3))
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2).numpy()
    np.testing.assert_allclose(conv2d(x, w, stride=2), ref, atol=1e-10)


def test_unbatched_chw_input():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((3, 9, 9)), rng.standard_normal((2, 3, 3, 3))
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()  # torch takes CHW too
    out = conv2d(x, w, padding=1)
    assert out.shape == (2, 9, 9)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    np.testing.assert_allclose(conv2d_naive(x, w, padding=1), ref, atol=1e-12)
    dx, dw, _ = conv2d_backward(np.ones_like(out), x, w, padding=1)
    assert dx.shape == x.shape and dw.shape == w.shape


@pytest.mark.parametrize("fn", [conv2d, conv2d_naive])
@pytest.mark.parametrize("x_shape,w_shape,kw,match", [
    ((1, 3, 8, 8), (2, 4, 3, 3), {}, "the kernel's depth must equal the input's channels: got 4 and 3"),
    ((1, 6, 8, 8), (2, 4, 3, 3), {"groups": 2},
     r"channels per group \(6 channels / 2 groups = 3\): got 4 and 3"),
    ((1, 5, 8, 8), (2, 1, 3, 3), {"groups": 2}, "5 channels do not split into 2 groups"),
    ((1, 4, 8, 8), (3, 2, 3, 3), {"groups": 2}, "3 output channels do not split into 2 groups"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"groups": 0}, "groups must be a positive integer"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"stride": 0}, "stride must be positive"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"padding": -1}, "padding must be non-negative"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"dilation": (1, 0)}, "dilation must be positive"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"stride": (1, 2, 3)}, "an int or a pair"),
    ((1, 3, 2, 8), (2, 3, 3, 3), {}, r"height: the kernel is larger than the padded input: 3 > 2 \+ 2\*0"),
    ((1, 3, 8, 8), (2, 3, 3, 3), {"dilation": 4}, "dilated to 9"),
    ((3, 8, 8, 1, 1), (2, 3, 3, 3), {}, r"must be \(N, C, H, W\) or an unbatched \(C, H, W\)"),
    ((1, 3, 8, 8), (2, 3, 3), {}, r"kernel must be \(out_channels, in_channels/groups, KH, KW\)"),
    ((0, 3, 8, 8), (2, 3, 3, 3), {}, "empty"),
])
def test_bad_input_is_explained(fn, x_shape, w_shape, kw, match):
    with pytest.raises(ValueError, match=match):
        fn(np.zeros(x_shape), np.zeros(w_shape), **kw)


def test_bad_bias_and_dout():
    x, w = np.zeros((1, 3, 5, 5)), np.zeros((2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"one value per kernel, shape \(2,\): got shape \(3,\)"):
        conv2d(x, w, np.zeros(3))
    with pytest.raises(ValueError, match=r"dout must have the output's shape \(1, 2, 3, 3\)"):
        conv2d_backward(np.zeros((1, 2, 5, 5)), x, w)


def test_non_contiguous_inputs():
    """The im2col view follows the array's own strides: flipped or sliced inputs work unchanged."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 10, 12))[:, ::-1, ::-1, ::2]
    w = rng.standard_normal((3, 4, 3, 3)).transpose(1, 0, 3, 2)
    ref = F.conv2d(torch.from_numpy(x.copy()), torch.from_numpy(w.copy()), stride=(2, 1), padding=1).numpy()
    np.testing.assert_allclose(conv2d(x, w, stride=(2, 1), padding=1), ref, atol=1e-12)
