"""A trained lenet5 behind the API reads drawings and real MNIST digits of every class right."""
from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.xdist_group("web")


def _first(client, img: np.ndarray, **kw) -> dict:
    r = client.post("/api/predict", json={"image": np.round(img, 3).tolist(), **kw})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def run_model(trained_dir):
    from convscope import load

    model, config = load(trained_dir)
    return model.eval(), config


def by_hand(run_model, fed) -> list[float]:
    """Softmax written out (math.exp) over the run's own logits for the 28x28 image that was fed."""
    model, config = run_model
    mean, std = config["normalization"]["mean"][0], config["normalization"]["std"][0]
    x = (torch.tensor(fed, dtype=torch.float32).view(1, 1, 28, 28) - mean) / std
    with torch.no_grad():
        logits = model(x)[0].double().tolist()
    top = max(logits)
    e = [math.exp(z - top) for z in logits]
    return [v / sum(e) for v in e]


def check_against_hand(body: dict, run_model) -> None:
    probs = by_hand(run_model, body["input"])
    # the API feeds the exact image, but sends it back at 4 decimals: a little slack
    np.testing.assert_allclose(body["probabilities"], probs, rtol=2e-2, atol=1e-4)
    order = sorted(range(10), key=lambda i: -probs[i])
    gaps = [probs[order[r]] - probs[order[r + 1]] for r in range(len(body["top"]))]
    for rank, t in enumerate(body["top"]):
        if gaps[rank] > 1e-3 and (rank == 0 or gaps[rank - 1] > 1e-3):  # a clear order at this rank
            assert t["label"] == str(order[rank]), (rank, body["top"], order)
        assert t["probability"] == pytest.approx(probs[int(t["label"])], rel=2e-2, abs=1e-4)


def test_a_vertical_line_reads_as_1(trained_client, web_support, run_model):
    body = _first(trained_client, web_support.vertical_line(140, 20, 120, 70, 10))
    assert body["top"][0]["label"] == "1"
    check_against_hand(body, run_model)


def test_small_off_centre_drawing_reads_like_a_centred_one(trained_client, web_support):
    centred = _first(trained_client, web_support.vertical_line(140, 20, 120, 70, 10))
    corner = _first(trained_client, web_support.vertical_line(140, 100, 135, 12, 4))
    assert corner["top"][0]["label"] == "1"
    np.testing.assert_allclose(corner["input"], centred["input"], atol=0.35)  # both centred in 28x28
    raw = np.asarray(corner["raw"])
    assert raw[:14].sum() < 0.05 * raw.sum()  # the raw downsample keeps it in the corner


def test_real_mnist_digits_scaled_up_as_png(trained_client, web_support, run_model):
    """10 held-out MNIST digits of each class, drawn 7x larger as PNGs: the explorer's
    preprocessing must hand the network what it was trained on (>= 90% right overall,
    >= 7 of 10 in every class; the run scores ~97%), and every rank of the answer
    must be the softmax of the run's own logits."""
    from PIL import Image

    from convscope.data import get_dataset

    test = get_dataset("mnist").test
    idx = web_support.stratified(test.labels.numpy(), 10)
    right = np.zeros(10, int)
    for i in idx:
        img, label = test.images[i, 0].numpy(), int(test.labels[i])
        big = Image.fromarray(img).resize((196, 196), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        big.save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        body = trained_client.post("/api/predict", json={"png": url}).json()
        check_against_hand(body, run_model)
        right[label] += body["top"][0]["label"] == str(label)
    assert right.sum() >= 90, f"{right.sum()}/100 right, per class {right.tolist()}"
    assert right.min() >= 7, f"per class (of 10): {right.tolist()}"
