"""What the page paints is what the API sent: every canvas read back pixel by pixel.

A random-weight lenet5 is served (no training needed: the check is the painting,
not the guess). After a drawing, each map canvas of each layer is read back with
getImageData and compared with the layer's own bytes from the /api/predict
response, coloured by viridis computed here (not by the page's table): map m's
canvas must show map m, the fed image must be the response's "input", and each
fully connected cell must be coloured by its own unit.
"""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("web")]

VIRIDIS = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float64)


def viridis(q: np.ndarray) -> np.ndarray:
    """uint8 values -> RGB, matplotlib's 9 viridis stops interpolated linearly."""
    t = q.astype(np.float64) / 255 * (len(VIRIDIS) - 1)
    k = np.minimum(np.floor(t).astype(int), len(VIRIDIS) - 2)
    f = (t - k)[..., None]
    return VIRIDIS[k] * (1 - f) + VIRIDIS[k + 1] * f


@pytest.fixture(scope="module")
def random_server_url():
    import torch

    from convscope.models import create_model
    from convscope.web import Explorer, create_app
    from convscope.web.live import live_server

    torch.manual_seed(7)
    cfg = {"model": {"name": "lenet5", "kwargs": {}}, "dataset": "mnist",
           "classes": [str(i) for i in range(10)], "input_size": [1, 28, 28],
           "normalization": {"mean": [0.1307], "std": [0.3081]},
           "preprocessing": {"kind": "digits", "invert": False}}
    with live_server(create_app(explorer=Explorer(create_model("lenet5"), cfg))) as url:
        yield url


@pytest.fixture
def drawn(browser_context, random_server_url):
    """A tab on the explorer with a drawn 7, and the body of the last /api/predict answer."""
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    answers = []
    page.on("response", lambda r: answers.append(r) if r.url.endswith("/api/predict") else None)
    page.goto(random_server_url)
    page.wait_for_selector('body[data-ready="1"]', timeout=60000)
    canvas = page.get_by_test_id("draw-canvas")
    box = canvas.bounding_box()
    s = box["width"] / 280
    page.mouse.move(box["x"] + 70 * s, box["y"] + 60 * s)
    page.mouse.down()
    for x, y in [(210, 60), (120, 235)]:
        page.mouse.move(box["x"] + x * s, box["y"] + y * s, steps=6)
    page.mouse.up()
    page.wait_for_function("document.body.dataset.pending === '0'", timeout=60000)
    assert answers, "the page never called /api/predict"
    body = json.loads(answers[-1].body())
    yield page, body
    page.close()
    assert not errors, errors


def _pixels(locator) -> np.ndarray:
    """A canvas read back: (H, W, 3) uint8."""
    w, h, data = locator.evaluate(
        "c => [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]")
    return np.asarray(data, dtype=np.uint8).reshape(h, w, 4)[..., :3]


def _bytes(layer: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(layer["data"]), dtype=np.uint8)


def test_the_drawing_is_not_blank(drawn):
    _, body = drawn
    assert np.asarray(body["input"]).max() > 0.5  # the check below compares something


def test_every_map_canvas_shows_its_own_map(drawn):
    page, body = drawn
    checked = 0
    for layer in body["layers"]:
        if len(layer["shape"]) != 3 or layer["name"] == "input":
            continue
        c, h, w = layer["shape"]
        q = _bytes(layer).reshape(c, h, w)
        canvases = page.get_by_test_id(f"layer-{layer['name']}").locator("canvas.map")
        assert canvases.count() == c, layer["name"]
        for m in range(c):
            got = _pixels(canvases.nth(m)).astype(int)
            want = viridis(q[m])
            assert got.shape == want.shape, (layer["name"], m)
            assert np.abs(got - want).max() <= 1, f"{layer['name']} canvas {m} is not map {m}"
            checked += 1
    assert checked >= 4 * 6  # conv1, pool1 (6 maps), conv2, pool2 (16 maps) at least


def test_the_fed_image_is_the_input_the_api_used(drawn):
    page, body = drawn
    want = np.rint(np.asarray(body["input"]) * 255)
    for where in (page.locator("#fed"), page.get_by_test_id("layer-input").locator("canvas")):
        got = _pixels(where.first).astype(int)
        assert got.shape == (28, 28, 3)
        assert np.abs(got - want[..., None]).max() <= 1


def test_fc_cells_are_coloured_by_their_own_unit(drawn):
    page, body = drawn
    for layer in body["layers"]:
        if len(layer["shape"]) != 1:
            continue
        q = _bytes(layer)
        colours = page.get_by_test_id(f"layer-{layer['name']}").locator(".cell").evaluate_all(
            "cells => cells.map(c => getComputedStyle(c).backgroundColor)")
        assert len(colours) == layer["shape"][0] == len(q)
        got = np.array([[int(v) for v in c[c.index("(") + 1:c.index(")")].split(",")[:3]] for c in colours])
        assert np.abs(got - viridis(q)).max() <= 1, layer["name"]


def test_the_guesses_and_bars_are_the_apis(drawn):
    """First and second guess are ranks 1 and 2 of the answer; bar i shows class i's probability."""
    page, body = drawn
    top = body["top"]
    assert page.get_by_test_id("first-guess").inner_text() == top[0]["label"]
    assert page.get_by_test_id("second-guess").inner_text() == top[1]["label"]
    shown = [float(page.get_by_test_id(f"prob-bar-{i}").get_attribute("data-probability")) for i in range(10)]
    np.testing.assert_allclose(shown, body["probabilities"], rtol=1e-9, atol=1e-12)
    probs = np.asarray(body["probabilities"])
    assert top[0]["label"] == str(int(np.argmax(probs))) and top[1]["label"] == str(int(np.argsort(probs)[-2]))
