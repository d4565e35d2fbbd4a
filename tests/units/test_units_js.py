"""web/static/units.js in headless Chromium: click a channel's map, watch the progress, see patches and image.

A minimal page (the explorer's feature-map markup: a layer section holding
`canvas.map` elements with `data-map`) served with the units router, so the
script is checked without the rest of the explorer.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

CHROMIUM = shutil.which("chromium")
STATIC = Path(__file__).resolve().parents[2] / "src" / "convscope" / "web" / "static"
PAGE = """<!doctype html><html><body>
<section class="layer" data-name="conv1" data-testid="layer-conv1">
  <canvas class="map" data-map="3" data-testid="map-3" width="28" height="28"></canvas></section>
<section class="layer" data-name="fc1"><canvas class="map" data-map="0" data-testid="fc-map" width="8" height="8"></canvas></section>
<script src="/static/engine.js"></script>
<script src="/static/units.js"></script></body></html>"""


@pytest.mark.e2e
def test_click_a_channel(lenet_run, tmp_path):
    if not CHROMIUM:  # as tests/e2e: a missing browser FAILS with the install line, unless skipped by choice
        if os.environ.get("CONVSCOPE_SKIP_BROWSER") == "1":
            pytest.skip("CONVSCOPE_SKIP_BROWSER=1 and chromium is not installed")
        pytest.fail("chromium is not installed: units.js is tested in it. As root run: apt-get install -y chromium "
                    "(scripts/bootstrap.sh does it), or set CONVSCOPE_SKIP_BROWSER=1 to skip the browser tests locally",
                    pytrace=False)
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from playwright.sync_api import sync_playwright

    from convscope.units.cache import Jobs
    from convscope.units.target import load_target
    from convscope.web.live import live_server
    from convscope.web.units_routes import router

    run = tmp_path / "run"
    shutil.copytree(lenet_run, run)
    app = FastAPI()
    snap = SimpleNamespace(run_dir=str(run))
    app.state.explorer = SimpleNamespace(run_dir=str(run), snapshot=snap)
    jobs = Jobs(lambda: load_target(str(run)), run, steps=64)
    # the units router keeps the jobs of the snapshot it serves (issue 22's engine), or the jobs alone before it
    app.state.units_jobs = (snap, jobs) if importlib.util.find_spec("convscope.web.snapshot") else jobs
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.get("/", response_class=HTMLResponse)(lambda: PAGE)
    errors: list[str] = []

    def drive() -> None:
        with live_server(app) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"])
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.get_by_test_id("fc-map").click()            # not a conv/pool layer: nothing opens
            page.wait_for_timeout(300)
            assert page.locator("[data-testid=units-panel]").count() == 0
            page.get_by_test_id("map-3").click()
            page.get_by_test_id("units-progress").wait_for(timeout=60000)   # the progress bar while it is made
            page.get_by_test_id("units-optimized").wait_for(timeout=120000)
            assert page.locator("[data-testid^=units-patch-]").count() == 9
            assert "conv1 channel 3" in page.get_by_test_id("units-panel").inner_text()
            src = page.get_by_test_id("units-patch-0").get_attribute("src")
            assert src.startswith("data:image/png;base64,")
            page.get_by_test_id("units-close").click()
            assert page.get_by_test_id("units-panel").is_hidden()
            browser.close()

    # Playwright's sync API refuses a thread where another sync session (the e2e tests' browser,
    # in the same xdist worker) is running: this one gets a thread of its own.
    failures: list[BaseException] = []
    worker = threading.Thread(target=lambda: _catch(drive, failures))
    worker.start()
    worker.join(300)
    assert not worker.is_alive(), "the browser test did not finish in 300 s"
    if failures:
        raise failures[0]
    assert not errors


def _catch(fn, failures: list) -> None:
    try:
        fn()
    except BaseException as exc:  # re-raised in the test's own thread
        failures.append(exc)
