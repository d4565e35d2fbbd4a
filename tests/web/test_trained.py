"""A trained lenet5 behind the API reads drawings and real MNIST digits right."""
from __future__ import annotations

import io

import numpy as np
import pytest

pytestmark = pytest.mark.xdist_group("web")


def _first(client, img: np.ndarray, **kw) -> dict:
    r = client.post("/api/predict", json={"image": np.round(img, 3).tolist(), **kw})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_vertical_line_reads_as_1(trained_client, web_support):
    body = _first(trained_client, web_support.vertical_line(140, 20, 120, 70, 10))
    assert body["top"][0]["label"] == "1"
    assert abs(sum(body["probabilities"]) - 1) < 1e-9


def test_small_off_centre_drawing_reads_like_a_centred_one(trained_client, web_support):
    centred = _first(trained_client, web_support.vertical_line(140, 20, 120, 70, 10))
    corner = _first(trained_client, web_support.vertical_line(140, 100, 135, 12, 4))
    assert corner["top"][0]["label"] == "1"
    np.testing.assert_allclose(corner["input"], centred["input"], atol=0.35)  # both centred in 28x28
    raw = np.asarray(corner["raw"])
    assert raw[:14].sum() < 0.05 * raw.sum()  # the raw downsample keeps it in the corner


def test_real_mnist_digits_scaled_up_as_png(trained_client, web_support):
    """100 held-out MNIST digits, drawn 7x larger as PNGs: the explorer's preprocessing
    must hand the network what it was trained on (>= 90% right; the run scores ~97%)."""
    from PIL import Image

    from convscope.data import get_dataset

    test = get_dataset("mnist").test
    right = 0
    for img, label in zip(test.images[:100].numpy(), test.labels[:100].tolist()):
        big = Image.fromarray(img[0]).resize((196, 196), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        big.save(buf, format="PNG")
        url = "data:image/png;base64," + __import__("base64").b64encode(buf.getvalue()).decode()
        top = trained_client.post("/api/predict", json={"png": url}).json()["top"][0]
        right += top["label"] == str(label)
    assert right >= 90, f"{right}/100 right"
