"""Browser tests: Debian's Chromium driven by Playwright against a live explorer on loopback.

The explorer serves a lenet5 trained once on the offline MNIST digits (cached
under test-artifacts/cache); screenshots of every test land in test-artifacts/e2e/.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "web_support", Path(__file__).resolve().parents[1] / "web" / "_support.py")
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

CHROMIUM = shutil.which("chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-quic", "--disable-sync"]
SHOTS = support.ARTIFACTS / "e2e"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            if CHROMIUM is None:
                item.add_marker(pytest.mark.skip(
                    reason="chromium is not installed (sudo apt-get install chromium; "
                           "`playwright install` cannot download browsers here)"))


@pytest.fixture(scope="session")
def server_url():
    from convscope.web import create_app

    with support.live_server(create_app(support.trained_run())) as url:
        yield url


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1280, "height": 900})
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser_context, server_url, request):
    """A fresh tab on the explorer, ready (the model description loaded); screenshot kept at the end."""
    page = browser_context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: None if req.url.startswith((server_url, "data:")) else outside.append(req.url))
    page.goto(server_url)
    page.wait_for_selector('body[data-ready="1"]', timeout=15000)
    yield page
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{request.node.name}.png"), full_page=True)
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not outside, f"the page fetched from outside the server: {outside}"
