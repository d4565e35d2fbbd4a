"""Image files posted to /api/predict: prepared exactly as `convscope predict` prepares them."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from convscope.cli import main

pytestmark = pytest.mark.xdist_group("web")
CONFIG = {"model": {"name": "lenet5", "kwargs": {}}, "dataset": "mnist",
          "classes": [str(i) for i in range(10)], "input_size": [1, 28, 28],
          "normalization": {"mean": [0.1307], "std": [0.3081]},
          "preprocessing": {"kind": "digits", "invert": False}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import torch

    from convscope.models import create_model
    from convscope.train.checkpoint import save_run

    torch.manual_seed(3)
    return save_run(tmp_path_factory.mktemp("run") / "lenet", create_model("lenet5"), CONFIG)


@pytest.fixture(scope="module")
def client(run):
    from fastapi.testclient import TestClient

    from convscope.web import create_app

    with TestClient(create_app(run), base_url="http://127.0.0.1") as c:
        yield c


def _seven(size=120) -> np.ndarray:
    """Black ink (0) on white (255): a 7."""
    a = np.full((size, size), 255, np.uint8)
    a[20:32, 25:95] = 0
    for y in range(32, 105):
        x = 90 - (y - 32) * 45 // 73
        a[y, x - 6:x + 6] = 0
    return a


def _bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _url(raw: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(raw).decode()


def _cli_predict(run, path, capsys) -> list[float]:
    assert main(["predict", str(run), str(path), "--json", "--top", "10"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    return [t["probability"] for t in sorted(top, key=lambda t: t["index"])]


def _dark_ink_on_transparent() -> Image.Image:
    ink = 255 - _seven()  # alpha: opaque where the ink is
    rgba = np.zeros((*ink.shape, 4), np.uint8)
    rgba[..., 3] = ink
    return Image.fromarray(rgba, "RGBA")


@pytest.mark.parametrize("make", [lambda: Image.fromarray(_seven(), "L"), _dark_ink_on_transparent],
                         ids=["black-on-white", "dark-ink-on-transparent"])
def test_an_uploaded_file_gets_the_same_answer_as_convscope_predict(client, run, tmp_path, capsys, make):
    raw = _bytes(make())
    path = tmp_path / "seven.png"
    path.write_bytes(raw)
    want = _cli_predict(run, path, capsys)
    for key in ("file", "png"):
        body = client.post("/api/predict", json={key: _url(raw)}).json()
        np.testing.assert_allclose(body["probabilities"], want, rtol=1e-5, atol=1e-7)
        # the network was fed white ink on black, as MNIST is
        fed = np.asarray(body["input"])
        assert fed[:3].max() < 0.05 and fed.max() > 0.9


def test_both_kinds_of_drawing_are_fed_the_same(client):
    a = client.post("/api/predict", json={"file": _url(_bytes(Image.fromarray(_seven(), "L")))}).json()
    b = client.post("/api/predict", json={"file": _url(_bytes(_dark_ink_on_transparent()))}).json()
    np.testing.assert_allclose(a["input"], b["input"], atol=2e-3)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP", "GIF"])
def test_every_format_is_read(client, run, tmp_path, capsys, fmt):
    raw = _bytes(Image.fromarray(_seven(), "L").convert("RGB"), fmt)
    path = tmp_path / f"seven.{fmt.lower()}"
    path.write_bytes(raw)
    want = _cli_predict(run, path, capsys)
    body = client.post("/api/predict", json={"file": _url(raw, fmt.lower())}).json()
    np.testing.assert_allclose(body["probabilities"], want, rtol=1e-5, atol=1e-7)


def test_sixteen_bit_grey_is_scaled_not_clipped(client):
    eight = _seven()
    sixteen = Image.fromarray(eight.astype(np.uint16) * 257)  # mode I;16
    a = client.post("/api/predict", json={"file": _url(_bytes(sixteen))}).json()
    b = client.post("/api/predict", json={"file": _url(_bytes(Image.fromarray(eight, "L")))}).json()
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], rtol=1e-5)


def test_cmyk_jpeg_reads_as_its_rgb(client):
    rgb = Image.fromarray(_seven(), "L").convert("RGB")
    cmyk = rgb.convert("CMYK")
    body = client.post("/api/predict", json={"file": _url(_bytes(cmyk, "JPEG", quality=95), "jpeg")})
    assert body.status_code == 200
    want = client.post("/api/predict", json={"file": _url(_bytes(rgb, "JPEG", quality=95), "jpeg")}).json()
    np.testing.assert_allclose(body.json()["input"], want["input"], atol=0.08)


def test_an_animated_gif_is_read_from_its_first_frame(client):
    first = Image.fromarray(_seven(), "L")
    other = Image.fromarray(np.full((120, 120), 255, np.uint8), "L")
    raw = _bytes(first, "GIF", save_all=True, append_images=[other], duration=100)
    assert Image.open(io.BytesIO(raw)).n_frames == 2
    a = client.post("/api/predict", json={"file": _url(raw, "gif")}).json()
    b = client.post("/api/predict", json={"file": _url(_bytes(first, "GIF"), "gif")}).json()
    assert a["probabilities"] == b["probabilities"]


@pytest.mark.parametrize("value, status", [
    ("data:image/png;base64," + base64.b64encode(b"just some text, not pixels").decode(), 415),
    ("data:text/plain,hello", 415),
    ("data:image/png;base64,@@@", 400),
    (12, 422),
    (_url(_bytes(Image.new("L", (5000, 5000)))), 413),  # over the pixel limit
    (_url(_bytes(Image.fromarray(_seven(), "L"), "TIFF"), "tiff"), 415),  # not one of the five formats
    (_url(_bytes(Image.fromarray(_seven(), "L"))[:80]), 400),  # truncated
])
def test_bad_files_get_a_4xx_and_the_server_keeps_serving(client, value, status):
    r = client.post("/api/predict", json={"file": value})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) > 15
    assert client.post("/api/predict", json={"file": _url(_bytes(Image.fromarray(_seven(), "L")))}).status_code == 200
