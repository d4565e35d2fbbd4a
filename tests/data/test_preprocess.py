"""MNIST-style preprocessing: the recipe of the MNIST page, checked on real digits."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.data import get_dataset, mnist_style, prepare_image, raw_downsample


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """100 real MNIST test digits, 10 of every class, uint8 (100, 28, 28), white ink on black.

    The split is ordered by class, so they are interleaved (0, 1, ..., 9, 0, 1, ...):
    any slice of 10 or more holds every class."""
    test = get_dataset("mnist").test
    labels = test.labels.numpy()
    per_class = np.stack([np.flatnonzero(labels == c)[:10] for c in range(10)])  # (10 classes, 10)
    idx = per_class.T.ravel()
    assert (labels[idx[:10]] == np.arange(10)).all() and np.bincount(labels[idx]).tolist() == [10] * 10
    return test.images[idx, 0].numpy()


def com(a: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(a.shape)
    return float((ys * a).sum() / a.sum()), float((xs * a).sum() / a.sum())


def ink_box(a: np.ndarray, thr: float = 0.1) -> tuple[int, int]:
    rows, cols = np.flatnonzero((a > thr).any(1)), np.flatnonzero((a > thr).any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_real_mnist_digits_pass_through_unchanged(digits):
    """MNIST digits are already MNIST-style: the recipe must (nearly) reproduce them."""
    diffs = [np.abs(mnist_style(d) - d / 255.0).mean() for d in digits]
    assert np.median(diffs) < 0.005 and max(diffs) < 0.1


def test_centre_of_mass_lands_on_14_14(digits):
    rng = np.random.default_rng(1)
    for d in digits[:30]:
        canvas = np.zeros((120, 90), dtype=np.uint8)
        top, left = rng.integers(0, 120 - 28), rng.integers(0, 90 - 28)
        canvas[top:top + 28, left:left + 28] = d
        cy, cx = com(mnist_style(canvas))
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


def test_shift_to_corner_gives_the_same_image(digits):
    for d in digits[:20]:
        canvas = np.zeros((200, 200), dtype=np.uint8)
        canvas[-28:, -28:] = d  # bottom-right corner
        np.testing.assert_allclose(mnist_style(canvas), mnist_style(d), atol=1e-6)


def upscale(d: np.ndarray, n: int) -> np.ndarray:
    """A real digit drawn big, as on the explorer's canvas."""
    return np.asarray(Image.fromarray(d).resize((n, n), Image.Resampling.BICUBIC))


def aligned_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation after the best shift of at most 1 px: the centre of mass is
    rounded to whole pixels, as in MNIST, so two renderings may differ by one."""
    return max(np.corrcoef(np.roll(a, (dy, dx), (0, 1)).ravel(), b.ravel())[0, 1]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_scaled_down_digit_gives_nearly_the_same_image(digits):
    scores = []
    for d in digits[:30]:
        centred = np.zeros((300, 300), dtype=np.uint8)
        centred[50:250, 50:250] = upscale(d, 200)
        small = np.zeros((300, 300), dtype=np.uint8)
        small[205:295, 5:95] = upscale(d, 90)  # less than half the size, bottom-left corner
        a, b = mnist_style(small), mnist_style(centred)
        scores.append(aligned_corr(a, b))
        assert abs(com(a)[0] - com(b)[0]) <= 1 and abs(com(a)[1] - com(b)[1]) <= 1
    assert min(scores) > 0.9 and np.median(scores) > 0.98


def test_big_drawing_fits_20x20_keeping_aspect_ratio():
    canvas = np.zeros((400, 400), dtype=np.float32)
    canvas[50:350, 180:240] = 1.0  # a tall stroke, 300 x 60 (aspect 5:1)
    out = mnist_style(canvas)
    h, w = ink_box(out)
    assert h == 20 and 3 <= w <= 5
    assert out.dtype == np.float32 and out.shape == (28, 28)
    assert out.max() == pytest.approx(1.0) and out.min() >= 0.0


def test_empty_image_stays_empty():
    assert not mnist_style(np.zeros((50, 70))).any()
    assert not mnist_style(np.zeros((28, 28), dtype=np.uint8)).any()


def test_raw_downsample_is_an_area_average():
    rng = np.random.default_rng(0)
    img = rng.random((280, 280)).astype(np.float32)
    ref = img.reshape(28, 10, 28, 10).mean(axis=(1, 3))
    np.testing.assert_allclose(raw_downsample(img), ref, atol=1e-5)
    corner = np.zeros((280, 280), dtype=np.float32)
    corner[:70, :70] = 1.0  # no recentring: the ink stays in the corner
    assert raw_downsample(corner)[:7, :7].min() == pytest.approx(1.0)
    assert raw_downsample(corner)[7:, 7:].max() == 0.0


MNIST_CONFIG = {"preprocessing": {"kind": "digits", "invert": False, "size": [28, 28], "channels": 1},
                "normalization": {"mean": [0.1307], "std": [0.3081]}}


def test_prepare_image_normalises(digits):
    x = prepare_image(digits[0], MNIST_CONFIG)
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    expected = (mnist_style(digits[0]) - 0.1307) / 0.3081
    np.testing.assert_allclose(x[0, 0].numpy(), expected, atol=1e-5)


def test_black_on_white_is_auto_inverted(digits, tmp_path):
    """A digit written in black ink on off-white paper, saved as a PNG file."""
    scores = []
    for d in digits[:20]:
        paper = np.full((300, 240), 235, dtype=np.uint8)
        paper[60:200, 50:190] = 235 - (upscale(d, 140).astype(np.int32) * 200 // 255)  # dark ink
        Image.fromarray(paper).save(tmp_path / "photo.png")
        got = prepare_image(tmp_path / "photo.png", MNIST_CONFIG)[0, 0].numpy() * 0.3081 + 0.1307
        scores.append(aligned_corr(got, mnist_style(d)))
        assert abs(com(got)[0] - 14) <= 1 and abs(com(got)[1] - 14) <= 1
        assert got[0].max() < 0.01 and got.max() > 0.99  # black background, white ink
    assert min(scores) > 0.85 and np.median(scores) > 0.97


def test_transparent_png_with_black_ink(tmp_path):
    rgba = np.zeros((100, 100, 4), dtype=np.uint8)
    rgba[20:80, 45:55, 3] = 255  # opaque black bar on a transparent canvas
    Image.fromarray(rgba).save(tmp_path / "bar.png")
    x = prepare_image(tmp_path / "bar.png", MNIST_CONFIG)[0, 0].numpy() * 0.3081 + 0.1307
    assert ink_box(x) == (20, 3)  # 60 x 10 scaled into 20 x 3.3
    assert x.max() == pytest.approx(1.0, abs=1e-4)


def test_preprocess_false_uses_plain_resize(digits):
    x = prepare_image(digits[0].astype(np.float32) / 255, MNIST_CONFIG, preprocess=False)
    np.testing.assert_allclose(x[0, 0].numpy() * 0.3081 + 0.1307, digits[0] / 255, atol=1e-5)


def test_digits_model_with_other_size_and_channels(digits):
    cfg = {"preprocessing": {"kind": "digits", "size": [32, 32], "channels": 3,
                             "mean": [0.5] * 3, "std": [0.5] * 3}}
    x = prepare_image(digits[0], cfg)
    assert x.shape == (1, 3, 32, 32) and torch.equal(x[:, 0], x[:, 2])


def test_dataset_preprocessing_round_trip():
    """prepare_image(a test digit, ds.preprocessing()) is what the model saw in training."""
    ds = get_dataset("mnist")
    cfg = {"preprocessing": ds.preprocessing(), "normalization": ds.normalization()}
    labels = ds.test.labels.numpy()
    for i in [int(np.flatnonzero(labels == c)[0]) for c in range(10)]:  # one digit of every class
        want = ds.normalize(ds.test.images[i:i + 1])
        got = prepare_image(ds.test.images[i, 0].numpy(), cfg)
        assert (got - want).abs().mean() < 0.05


def test_resize_kind_rgb_from_grey_file(tmp_path):
    Image.fromarray(np.full((10, 20), 255, dtype=np.uint8)).save(tmp_path / "white.png")
    cfg = {"preprocessing": {"kind": "resize", "size": [32, 32], "channels": 3},
           "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    x = prepare_image(str(tmp_path / "white.png"), cfg)
    assert x.shape == (1, 3, 32, 32) and torch.allclose(x, torch.full_like(x, 2.0))


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file"):
        prepare_image(tmp_path / "missing.png", MNIST_CONFIG)
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.png"):
        prepare_image(tmp_path / "junk.png", MNIST_CONFIG)
    with pytest.raises(ValueError, match="preprocessing"):
        prepare_image(np.zeros((28, 28)), {"model": {"name": "lenet5"}})
    with pytest.raises(ValueError, match="shape"):
        mnist_style(np.zeros((4, 28, 28)))


def test_tensor_input_and_nan_rejected(digits):
    x = torch.from_numpy(digits[0].astype(np.float32) / 255)
    assert torch.equal(prepare_image(x, MNIST_CONFIG), prepare_image(x.numpy(), MNIST_CONFIG))
    bad = np.zeros((28, 28), dtype=np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        prepare_image(bad, MNIST_CONFIG)
