"""The page in Chromium follows the server's model: when an answer carries another model
version (the Train tab swapped a run in), the page loads /api/model again (graph, kernels,
header, bars) before it draws the answer, so a unit's worked dot product is the new
network's, not the old kernels over the new values (issue 22: 5.561 written where the
network's own value was 8.016).

The server here is a stand-in that answers with one of two engines and says which by
"version"; it tests the page alone (the real server's swap is the lead's test)."""
from __future__ import annotations

import io
import json
import os
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi import FastAPI, Request  # at module level: FastAPI reads the string annotations here
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

pytestmark = pytest.mark.e2e
STATIC = Path(__file__).resolve().parents[2] / "src" / "convscope" / "web" / "static"
CHROMIUM = shutil.which("chromium")


def _two_engines(cases, engine_api):
    a = cases.NETWORKS[0]
    b_model = a.model()
    with torch.no_grad():
        b_model.conv1.weight.mul_(-1.5)   # other kernels: the old ones give another dot product
        b_model.conv1.bias.add_(0.7)
    b_config = {**a.config, "model": {"name": "parity_b", "kwargs": {}}, "classes": list("abcdefghij")}
    return [engine_api.build_engine(a.model(), a.config), engine_api.build_engine(b_model, b_config)]


def _app(engines, engine_api):
    app = FastAPI()
    now = {"i": 0}

    def versioned(body: dict) -> JSONResponse:
        return JSONResponse({**body, "version": now["i"] + 1})

    @app.get("/api/model")
    def model():
        return versioned(engine_api.description(engines[now["i"]]))

    @app.post("/api/predict")
    async def predict(request: Request):
        return versioned(engine_api.answer_body(engines[now["i"]], json.loads(await request.body())))

    @app.get("/api/layer")
    def layer(name: str, input: int, offset: int = 0, limit: int = 64, sort: str = "index"):
        try:
            return versioned(engine_api.layer_answer(engines[now["i"]], name, input, offset, limit, sort))
        except engine_api.input_error() as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.get("/api/weights")
    def weights(name: str, unit: int):
        return engine_api.unit_weights(engines[now["i"]], name, unit)

    @app.get("/api/samples")
    def samples():
        return JSONResponse({"detail": "no samples here"}, status_code=404)

    @app.post("/swap")
    def swap():
        now["i"] = 1
        return {"version": 2}

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.get("/", response_class=HTMLResponse)(lambda: (STATIC / "index.html").read_text())
    return app


def _png_url(g: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.rint(g * 255).astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def test_an_answer_of_a_new_model_reloads_the_page_before_it_is_drawn(cases, engine_api):
    _need_chromium()
    engines = _two_engines(cases, engine_api)
    drawing = cases.DRAWINGS[0].image()
    failures: list[BaseException] = []
    found: dict = {}

    def drive() -> None:
        from playwright.sync_api import sync_playwright

        from convscope.web.live import live_server

        with live_server(_app(engines, engine_api)) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_selector('body[data-ready="1"]', timeout=30000)

            def upload(name: str, g: np.ndarray) -> None:
                page.get_by_test_id("upload").set_input_files(files=[{"name": name, "mimeType": "image/png", "buffer": _png_url(g)}])
                page.wait_for_function("document.body.dataset.pending === '0'", timeout=60000)

            upload("a.png", drawing)
            found["before"] = page.evaluate("() => [CS.net.model.version, CS.net.model.model]")
            urllib.request.urlopen(urllib.request.Request(url + "/swap", method="POST"), timeout=10).read()
            upload("b.png", drawing[::-1].copy())
            try:
                page.wait_for_function("document.body.dataset.modelVersion === '2'", timeout=30000)
            except Exception:  # say what the page shows instead
                raise AssertionError(page.evaluate("() => [document.body.dataset.modelVersion, "
                                                   "document.getElementById('timing').textContent]")) from None
            found["after"] = page.evaluate("() => [CS.net.model.version, CS.net.model.model]")
            found["header"] = page.get_by_test_id("model-info").inner_text()
            found["bar0"] = page.get_by_test_id("prob-bar-0").inner_text()
            y, x, m = 12, 14, 3
            maps = page.get_by_test_id("layer-conv1").locator("canvas.map")
            maps.first.wait_for(timeout=30000)
            box = maps.nth(m).bounding_box()
            maps.nth(m).click(position={"x": (x + 0.5) * box["width"] / 28, "y": (y + 0.5) * box["height"] / 28})
            comp = page.get_by_test_id("computation")
            comp.wait_for(timeout=30000)
            found["z"] = float(comp.get_attribute("data-z"))
            found["fed"] = page.evaluate("() => CS.net.response.input")
            found["unit"] = (m, y, x)
            found["errors"] = errors
            browser.close()

    worker = threading.Thread(target=lambda: _catch(drive, failures))
    worker.start()
    worker.join(300)
    assert not worker.is_alive(), "the browser test did not finish in 300 s"
    if failures:
        raise failures[0]
    assert found["before"] == [1, "parity_digits"] and found["after"] == [2, "parity_b"], found
    assert found["header"].startswith("parity_b") and found["bar0"].startswith("a"), (found["header"], found["bar0"])
    m, y, x = found["unit"]
    fed = torch.tensor(found["fed"], dtype=torch.float32).view(1, 1, 28, 28)
    norm = engine_api.description(engines[1])["normalization"]
    xn = (fed - norm["mean"][0]) / norm["std"][0]
    want = {}
    for k, eng in enumerate(engines):
        w = engine_api.description(eng)["kernels"]["conv1"]
        want[k] = float(F.conv2d(xn, torch.tensor(w["weight"]), torch.tensor(w["bias"]), padding=2)[0, m, y, x])
    assert abs(want[0] - want[1]) > 0.1, want  # the old kernels would write out another value
    assert found["z"] == pytest.approx(want[1], abs=1e-4), (found["z"], want)
    assert not found["errors"], found["errors"]


def _need_chromium() -> None:
    """As tests/e2e: a missing chromium FAILS with the install line, unless CONVSCOPE_SKIP_BROWSER=1."""
    if CHROMIUM is None:
        if os.environ.get("CONVSCOPE_SKIP_BROWSER") == "1":
            pytest.skip("CONVSCOPE_SKIP_BROWSER=1 and chromium is not installed")
        pytest.fail("chromium is not installed. As root run: apt-get install -y chromium "
                    "(scripts/bootstrap.sh does it), or set CONVSCOPE_SKIP_BROWSER=1 to skip the browser tests locally",
                    pytrace=False)


def _catch(fn, failures: list) -> None:
    try:
        fn()
    except BaseException as exc:  # re-raised in the test's own thread
        failures.append(exc)
