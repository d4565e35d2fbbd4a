"""convscope.predictor: one way to prepare an image and read the model's answer."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.data.preprocess import mnist_style
from convscope.errors import DataError, RunError
from convscope.models import create_model
from convscope.predictor import Predictor
from convscope.runs import save_run

DIGITS = {"preprocessing": {"kind": "digits", "size": [28, 28], "channels": 1},
          "normalization": {"mean": [0.1307], "std": [0.3081]}, "input_size": [1, 28, 28],
          "classes": list("abcdefghij"), "model": {"name": "lenet5", "kwargs": {}}}


def _stroke(h=64, w=48) -> np.ndarray:
    """A white-on-black bar shaped like a "7", float in [0, 1]."""
    a = np.zeros((h, w), dtype=np.float32)
    a[10:14, 8:40] = 1.0
    a[14:54, 34:38] = 1.0
    return a


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def digits():
    torch.manual_seed(0)
    return Predictor(create_model("lenet5"), DIGITS)


def test_probabilities_are_a_softmax_of_the_model(digits):
    x = digits.prepare(_stroke())
    want = torch.softmax(digits.model(x), dim=1)
    torch.testing.assert_close(digits.probabilities(x), want)
    assert digits.probabilities(x).sum().item() == pytest.approx(1.0, abs=1e-6)


def test_top_orders_by_probability_with_labels(digits):
    probs = torch.tensor([0.1, 0.3, 0.05, 0.3, 0.25, 0, 0, 0, 0, 0])
    top = digits.top(probs, 3)
    assert [t["index"] for t in top] == [1, 3, 4]   # the tie goes to the lower index
    assert [t["label"] for t in top] == ["b", "d", "e"]
    assert top[0]["probability"] == pytest.approx(0.3)
    assert len(digits.top(probs, 50)) == 10


def test_black_on_white_and_dark_ink_on_transparent_prepare_the_same(digits):
    ink = _stroke()
    on_white = Image.fromarray(((1 - ink) * 255).astype(np.uint8), "L")
    rgba = np.zeros(ink.shape + (4,), dtype=np.uint8)  # black ink, transparent elsewhere
    rgba[..., 3] = (ink * 255).astype(np.uint8)
    transparent = Image.fromarray(rgba, "RGBA")
    a = digits.prepare(_png(on_white))
    b = digits.prepare(_png(transparent))
    c = digits.prepare(ink)  # white on black, as MNIST
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    want = (torch.from_numpy(mnist_style(ink)) - 0.1307) / 0.3081  # the MNIST recipe as the oracle
    torch.testing.assert_close(a[0, 0], want)


def test_every_kind_of_image_source_gives_the_same_tensor(digits, tmp_path):
    ink = _stroke()
    img = Image.fromarray((ink * 255).astype(np.uint8), "L")
    path = tmp_path / "d.png"
    img.save(path)
    want = digits.prepare(path)
    for source in (str(path), path.read_bytes(), img, (ink * 255).astype(np.uint8), ink, img.convert("RGB")):
        torch.testing.assert_close(digits.prepare(source), want)


def test_shown_undoes_the_normalisation(digits):
    x = digits.prepare(_stroke())
    shown = digits.shown(x)
    assert shown.shape == (1, 28, 28)
    np.testing.assert_allclose(shown[0], mnist_style(_stroke()), atol=1e-5)


def test_rgb_resize_model_from_name():
    p = Predictor.from_name("resnet18", num_classes=4)
    assert p.classes == ["0", "1", "2", "3"] and p.input_size == (3, 224, 224)
    assert p.mean == [0.0] * 3 and p.std == [1.0] * 3
    rgb = np.zeros((30, 40, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    x = p.prepare(rgb)
    assert x.shape == (1, 3, 224, 224)
    torch.testing.assert_close(x[0, 0], torch.ones(224, 224))
    torch.testing.assert_close(x[0, 1:], torch.zeros(2, 224, 224))
    gray = p.prepare(np.full((20, 20), 0.5, dtype=np.float32))  # grey input for an RGB model
    assert gray.shape == (1, 3, 224, 224)


def test_capture_matches_the_model(digits):
    x = digits.prepare(_stroke())
    logits, outs = digits.capture(x, ["conv1", "pool2"])
    torch.testing.assert_close(logits, digits.logits(x))
    with torch.no_grad():
        torch.testing.assert_close(outs["conv1"], digits.model.conv1(x))


def test_predict_from_a_run(tmp_path):
    torch.manual_seed(1)
    save_run(tmp_path / "run", create_model("lenet5"), DIGITS)
    p = Predictor.from_run(tmp_path / "run")
    img = tmp_path / "seven.png"
    Image.fromarray((_stroke() * 255).astype(np.uint8)).save(img)
    out = p.predict([str(img), _stroke()], k=3)
    assert [o["image"] for o in out] == [str(img), "image 1"]
    probs = p.probabilities(p.prepare(img))[0]
    order = torch.argsort(probs, descending=True)[:3].tolist()
    assert [t["index"] for t in out[0]["top"]] == order
    assert out[0]["top"][0]["label"] == DIGITS["classes"][order[0]]
    assert out[0]["top"] == out[1]["top"]


def test_bad_images_and_configs(digits, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png"):
        digits.predict([str(tmp_path / "bad.png")])
    with pytest.raises(DataError, match="does not exist"):
        digits.predict([str(tmp_path / "missing.png")])
    with pytest.raises(DataError, match="cannot read the image bytes"):
        digits.prepare(b"\x89PNG broken")
    with pytest.raises(RunError, match="names 3 classes but its model has 10"):
        Predictor(digits.model, dict(DIGITS, classes=["a", "b", "c"]))
    bad = Predictor(digits.model, dict(DIGITS, preprocessing={"kind": "zoom"}))
    with pytest.raises(RunError, match="preprocessing"):
        bad.prepare(_stroke())


def test_convscope_predict_reads_both_pngs_as_the_predictor_does(tmp_path, capsys):
    import json

    from convscope.cli import main

    torch.manual_seed(2)
    save_run(tmp_path / "run", create_model("lenet5"), DIGITS)
    ink = _stroke()
    (tmp_path / "white.png").write_bytes(_png(Image.fromarray(((1 - ink) * 255).astype(np.uint8), "L")))
    rgba = np.zeros(ink.shape + (4,), dtype=np.uint8)
    rgba[..., 3] = (ink * 255).astype(np.uint8)
    (tmp_path / "clear.png").write_bytes(_png(Image.fromarray(rgba, "RGBA")))
    files = [str(tmp_path / "white.png"), str(tmp_path / "clear.png")]
    assert main(["predict", str(tmp_path / "run"), *files, "--top", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["image"] for o in out] == files
    p = Predictor.from_run(tmp_path / "run")
    want = torch.softmax(p.model(p.prepare(ink)), 1)[0]  # the white-on-black stroke, by hand
    for o in out:
        got = torch.tensor([t["probability"] for t in sorted(o["top"], key=lambda t: t["index"])])
        torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)


def test_prepare_pair_is_prepare_with_and_without_centring():
    """The explorer's one-decode pair equals two separate prepares, for a black-on-white drawing."""
    import numpy as np
    import torch

    from convscope.predictor import Predictor

    p = Predictor.from_name("lenet5")
    drawing = np.ones((120, 90), dtype=np.float32)
    drawing[30:100, 40:52] = 0.0  # a dark stroke off centre on white paper
    fed, raw = p.prepare_pair(drawing)
    assert torch.equal(fed, p.prepare(drawing)) and torch.equal(raw, p.prepare(drawing, preprocess=False))
    assert not torch.equal(fed, raw)  # the centring moved the stroke
