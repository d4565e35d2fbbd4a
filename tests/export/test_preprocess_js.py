"""preprocess.js against convscope.data.preprocess on the same drawings (run with Node)."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from convscope.data import preprocess as pp

JS = Path(__file__).resolve().parents[2] / "src" / "convscope" / "web" / "static" / "preprocess.js"
NODE_MISSING = ("Node.js is not installed: the page's JavaScript is tested under Node. "
                "As root run: apt-get install -y nodejs (scripts/bootstrap.sh does it)")


@pytest.fixture(autouse=True)
def _node() -> None:
    """A missing node FAILS these tests with the install line; never a skip."""
    if shutil.which("node") is None:
        pytest.fail(NODE_MISSING, pytrace=False)


def _exe() -> str:
    return shutil.which("node") or "node"

RUNNER = """
const pp = require(process.argv[1]);
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = cases.map((c) => {
  const g = Float64Array.from(c.gray);
  if (c.op === "prepare") return Array.from(pp.prepare(g, c.h, c.w, c.config, c.preprocess).x);
  if (c.op === "mnist") return Array.from(pp.mnistStyle(g, c.h, c.w));
  if (c.op === "raw") return Array.from(pp.rawDownsample(g, c.h, c.w));
  if (c.op === "lanczos") return Array.from(pp.resizeF(g, c.h, c.w, c.oh, c.ow, "lanczos"));
  if (c.op === "resize8") return Array.from(pp.resize8(g, c.h, c.w, c.oh, c.ow, "bilinear"));
});
process.stdout.write(JSON.stringify(out));
"""


def run_js(cases: list[dict]) -> list[np.ndarray]:
    res = subprocess.run([_exe(), "-e", RUNNER, str(JS)], input=json.dumps(cases), capture_output=True,
                         text=True, timeout=120, check=True)
    return [np.asarray(a, dtype=np.float64) for a in json.loads(res.stdout)]


def drawings(n: int = 10, size: int = 280) -> list[np.ndarray]:
    """Antialiased strokes like the page's pen (22 px), at random places and sizes."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        big = Image.new("L", (size * 2, size * 2), 0)  # drawn at 2x and shrunk: grey edges
        pts = [tuple(int(v) for v in rng.integers(40, size * 2 - 40, 2)) for _ in range(int(rng.integers(2, 6)))]
        ImageDraw.Draw(big).line(pts, fill=255, width=int(rng.integers(20, 50)), joint="curve")
        small = big.resize((size, size), Image.Resampling.BILINEAR)
        out.append(np.asarray(small, dtype=np.float32) / 255.0)
    return out


def case(op: str, g: np.ndarray, **kw) -> dict:
    return {"op": op, "gray": g.ravel().tolist(), "h": g.shape[0], "w": g.shape[1], **kw}


def test_pillow_resampling_matches():
    rng = np.random.default_rng(0)
    a = rng.random((37, 23)).astype(np.float32)
    u8 = rng.integers(0, 256, (40, 30)).astype(np.uint8)
    f = u8.astype(np.float64)
    got = run_js([case("lanczos", a, oh=20, ow=13), case("lanczos", a, oh=50, ow=41),
                  case("resize8", f, oh=40, ow=17), case("resize8", f, oh=11, ow=30),
                  case("resize8", f, oh=28, ow=28), case("resize8", f, oh=64, ow=50)])
    from PIL import Image

    def pil(img, w, h, how):
        return np.asarray(Image.fromarray(img).resize((w, h), how)).astype(np.float64)

    lz, bl = Image.Resampling.LANCZOS, Image.Resampling.BILINEAR
    want = [pil(a, 13, 20, lz), pil(a, 41, 50, lz), pil(u8, 17, 40, bl), pil(u8, 30, 11, bl),
            pil(u8, 28, 28, bl), pil(u8, 50, 64, bl)]
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_allclose(g.reshape(w.shape), w, atol=1e-6)
    for g, w in zip(got[2:4], want[2:4]):
        np.testing.assert_array_equal(g.reshape(w.shape), w)  # one 8-bit pass: every level equal
    for g, w in zip(got[4:], want[4:]):
        # two 8-bit passes: Pillow sometimes runs the vertical one first (its intermediate
        # image is rounded to 8 bits), so a level may differ by one
        np.testing.assert_allclose(g.reshape(w.shape), w, atol=1)


def test_mnist_centring_matches_python_on_ten_drawings():
    gs = drawings()
    got = run_js([case("mnist", g) for g in gs] + [case("raw", g) for g in gs])
    for g, m, r in zip(gs, got[:10], got[10:]):
        want = pp.mnist_style(g)
        assert want.max() == 1.0
        np.testing.assert_allclose(m.reshape(28, 28), want, atol=1e-5)
        np.testing.assert_allclose(r.reshape(28, 28), pp.raw_downsample(g), atol=1e-6)


@pytest.mark.parametrize("config", [
    {"preprocessing": {"kind": "digits", "invert": False}, "normalization": {"mean": [0.1307], "std": [0.3081]},
     "input_size": [1, 28, 28]},
    {"preprocessing": {"kind": "digits", "invert": False, "size": [32, 32]},
     "normalization": {"mean": [0.13], "std": [0.31]}, "input_size": [1, 32, 32]},
    {"preprocessing": {"kind": "resize", "size": [28, 28]}, "normalization": {"mean": [0.286], "std": [0.353]},
     "input_size": [1, 28, 28]},
], ids=["mnist", "mnist-32", "fashion-resize"])
def test_whole_preparation_matches_prepare_image(config):
    gs = drawings(4)
    paper = [1.0 - g * 0.8 for g in gs[:2]]  # black ink on light paper: auto-invert and clean
    images = gs + paper
    got = run_js([case("prepare", g, config=config, preprocess=p) for g in images for p in (True, False)])
    k = 0
    for g in images:
        for p in (True, False):
            if config["preprocessing"]["kind"] == "resize" and not p:
                k += 1
                continue
            want = pp.prepare_image(g, config, preprocess=p).numpy().ravel()
            # "resize" runs: one 8-bit level (1/255, divided by std) where Pillow's pass order differs
            tol = 1.01 / 255 / config["normalization"]["std"][0] if config["preprocessing"]["kind"] == "resize" \
                else 1e-4 if config["input_size"][1] == 32 else 1e-5
            np.testing.assert_allclose(got[k], want, atol=tol)
            k += 1


RGBA_RUNNER = """
const pp = require(process.argv[1]);
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(cases.map((c) =>
  Array.from(pp.prepareRGBA(Uint8ClampedArray.from(c.rgba), c.w, c.h, c.config, { file: true, preprocess: false }).x))));
"""


def _pictures():
    """(name, PIL image) pairs: opaque RGB, RGBA with partial alpha (dark ink and light ink), grey."""
    from PIL import Image

    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    dark = np.zeros((56, 56, 4), np.uint8)
    dark[..., :3] = rng.integers(0, 60, (56, 56, 3))
    dark[..., 3] = rng.integers(0, 256, (56, 56))
    light = dark.copy()
    light[..., :3] = 255 - light[..., :3]
    grey = rng.integers(0, 256, (96, 96), dtype=np.uint8)
    return [("rgb", Image.fromarray(rgb, "RGB")), ("rgba-dark", Image.fromarray(dark, "RGBA")),
            ("rgba-light", Image.fromarray(light, "RGBA")), ("grey", Image.fromarray(grey, "L"))]


@pytest.mark.parametrize("config", [
    {"preprocessing": {"kind": "resize", "size": [32, 32], "channels": 3},
     "normalization": {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}, "input_size": [3, 32, 32]},
    {"preprocessing": {"kind": "resize", "size": [28, 28], "channels": 1, "invert": True},
     "normalization": {"mean": [0.286], "std": [0.353]}, "input_size": [1, 28, 28]},
], ids=["rgb-32", "grey-28-inverted"])
def test_uploaded_files_are_prepared_as_the_python_predictor_prepares_them(config):
    """An uploaded file's decoded RGBA bytes (what a canvas gives the page) through prepareRGBA
    against prepare_image on the same file: channels, transparency (flattened onto the
    background that shows the ink), resize and the run's normalisation."""
    from PIL import Image

    pics = _pictures()
    cases = []
    for _, img in pics:
        rgba = np.asarray(img.convert("RGBA"))
        cases.append({"rgba": rgba.ravel().tolist(), "w": img.width, "h": img.height, "config": config})
    res = subprocess.run([_exe(), "-e", RGBA_RUNNER, str(JS)], input=json.dumps(cases), capture_output=True,
                         text=True, timeout=120, check=True)
    got = json.loads(res.stdout)
    for (name, img), g in zip(pics, got):
        buf = io.BytesIO()
        img.save(buf, format="PNG")  # the server reads the uploaded file's bytes
        want = pp.prepare_image(Image.open(io.BytesIO(buf.getvalue())), config).numpy().ravel()
        np.testing.assert_allclose(np.asarray(g), want, atol=1e-6, err_msg=name)
