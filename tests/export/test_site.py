"""The static site in Chromium: the explorer runs in the browser and answers what the server does.

A plain static server serves the built site; every request to anything else is
blocked (page.route). Ten drawings are drawn with the mouse; the page's own
drawing (the canvas PNG) then goes to the Python server, and the first guess and
all ten probabilities must agree within 1e-4. No request may go to /api/.
Random weights (the check is equality between the two engines), lenet5 (28x28)
and convnet_small (32x32: the bilinear resize in preprocess.js too).
"""
from __future__ import annotations

import functools
import http.server
import json
import math
import shutil
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("web")]
CHROMIUM = shutil.which("chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-quic", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "site"


def _ort_or_skip():
    from convscope.errors import UserError
    from convscope.export.site import find_ort_web

    try:
        return find_ort_web()
    except UserError as exc:
        pytest.skip(str(exc))


def ellipse(cx, cy, rx, ry, n=24):
    return [(cx + rx * math.sin(2 * math.pi * k / n), cy - ry * math.cos(2 * math.pi * k / n)) for k in range(n + 1)]


DIGITS = [
    [ellipse(140, 140, 55, 85)],                                             # 0
    [[(140, 50), (140, 235)]],                                               # 1
    [[(85, 85), (140, 50), (195, 85), (90, 230), (200, 230)]],               # 2
    [[(90, 60), (190, 70), (130, 135), (195, 190), (90, 230)]],              # 3
    [[(170, 235), (170, 50), (80, 170), (210, 170)]],                        # 4
    [[(195, 55), (100, 55), (95, 130), (185, 150), (170, 225), (85, 225)]],  # 5
    [[(180, 55), (100, 150), (110, 225), (185, 200), (165, 145), (100, 165)]],  # 6
    [[(75, 60), (205, 60), (120, 235)]],                                     # 7
    [ellipse(140, 95, 45, 45), ellipse(140, 180, 55, 52)],                   # 8
    [ellipse(140, 95, 50, 45), [(188, 100), (160, 235)]],                    # 9
]


def draw(page, strokes) -> None:
    box = page.get_by_test_id("draw-canvas").bounding_box()
    s = box["width"] / 280
    for points in strokes:
        x, y = points[0]
        page.mouse.move(box["x"] + x * s, box["y"] + y * s)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x * s, box["y"] + y * s, steps=4)
        page.mouse.up()
    page.wait_for_function("document.body.dataset.pending === '0'", timeout=60000)


@functools.lru_cache(maxsize=None)
def built(name: str, root: str) -> tuple[Path, Path, dict]:
    import torch

    from convscope.export.site import build_site
    from convscope.models import create_model
    from convscope.runs import save_run

    torch.manual_seed(15)
    model = create_model(name)
    c, h, w = model.default_input_size
    cfg = {"model": {"name": name, "kwargs": {}}, "dataset": "mnist", "classes": [str(i) for i in range(10)],
           "input_size": [c, h, w], "normalization": {"mean": [0.1307], "std": [0.3081]},
           "preprocessing": {"kind": "digits", "invert": False, "size": [h, w], "channels": c}}
    run = save_run(Path(root) / f"run-{name}", model, cfg)
    info = build_site(run, Path(root) / f"site-{name}")
    return run, Path(info["out"]), info


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def static_server(folder: Path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def post(url: str, body: dict) -> dict:
    import urllib.request

    req = urllib.request.Request(url + "/api/predict", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as res:
        return json.loads(res.read())


def slack_for_a_busy_machine(ctx) -> None:
    """Playwright's waits are for hangs, not speed: 60 s instead of its 30 s (5 s for `expect`),
    so that a machine busy with other work fails no test (docs/benchmarks.md, busy machine)."""
    from playwright.sync_api import expect

    ctx.set_default_timeout(60_000)
    expect.set_options(timeout=60_000)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (sudo apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-site-profile")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=ARGS,
                                                    headless=True, viewport={"width": 1280, "height": 900})
        slack_for_a_busy_machine(ctx)
        yield ctx
        ctx.close()


def offline_page(page, base: str) -> tuple[list[str], list[str], list[str]]:
    """Let `page` reach only the site at `base` (and data:/blob: URLs): (every URL asked for,
    the ones refused, the page's errors), filled as it runs."""
    seen: list[str] = []
    blocked: list[str] = []
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def gate(route):
        url = route.request.url
        seen.append(url)
        if url.startswith((base + "/", "data:", "blob:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    page.route("**/*", gate)
    return seen, blocked, errors


@pytest.mark.parametrize("name", ["lenet5", "convnet_small"])
def test_site_runs_in_the_browser_like_the_server(browser, tmp_path_factory, name):
    from convscope.web import create_app
    from convscope.web.live import live_server

    _ort_or_skip()
    run, site, info = built(name, str(tmp_path_factory.mktemp("site")))
    assert {"index.html", "model.onnx", "model.json"} <= {p.name for p in site.iterdir()}
    httpd, base = static_server(site)
    page = browser.new_page()
    seen, blocked, errors = offline_page(page, base)
    try:
        t0 = time.perf_counter()
        page.goto(base + "/")
        page.wait_for_selector('body[data-ready="1"]', timeout=60000)
        load_s = time.perf_counter() - t0
        loaded = len(seen)
        with live_server(create_app(run)) as server:
            for strokes in DIGITS:
                page.get_by_test_id("clear").click()
                draw(page, strokes)
                png = page.evaluate("document.querySelector('[data-testid=draw-canvas]').toDataURL('image/png')")
                want = post(server, {"png": png, "preprocess": True})
                probs = [float(page.get_by_test_id(f"prob-bar-{i}").get_attribute("data-probability"))
                         for i in range(10)]
                assert page.get_by_test_id("first-guess").inner_text() == want["top"][0]["label"]
                assert max(abs(a - b) for a, b in zip(probs, want["probabilities"])) <= 1e-4
            # a test image from the run's data, then a layer fetched later, sorted by strength
            page.get_by_test_id("sample-3").click()
            page.wait_for_function("document.body.dataset.pending === '0'", timeout=60000)
            index = int(page.get_by_test_id("sample-3").get_attribute("title").split()[2].rstrip(":"))
            want = post(server, {"sample": index})
            probs = [float(page.get_by_test_id(f"prob-bar-{i}").get_attribute("data-probability")) for i in range(10)]
            assert max(abs(a - b) for a, b in zip(probs, want["probabilities"])) <= 1e-4
            conv = next(lay["name"] for lay in want["layers"] if lay["name"] != "input" and len(lay["full_shape"]) == 3)
            got = page.evaluate(f"CS.engine.layer({json.dumps(conv)}, {{offset: 1, limit: 3, sort: 'strength'}})")
            import urllib.request

            with urllib.request.urlopen(f"{server}/api/layer?name={conv}&offset=1&limit=3&sort=strength") as res:
                ref = json.loads(res.read())
            assert got["maps"] == ref["maps"] and got["shape"] == ref["shape"]
            assert max(abs(a - b) for a, b in zip(got["map_max"], ref["map_max"])) <= 1e-4
        timings = page.evaluate("CS.engine.timings")
        kind = page.evaluate("CS.engine.kind")
    finally:
        page.close()
        httpd.shutdown()
    assert kind == "browser"
    assert not errors, errors
    assert not [u for u in seen if "/api/" in u], "the site asked a server for /api/"
    assert not blocked, f"requests outside the site: {blocked}"
    assert len(seen) == loaded, f"requests after loading: {seen[loaded:]}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    total = sorted(t["total_ms"] for t in timings)
    forward = sorted(t["forward_ms"] for t in timings)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps({
        "model": name, "site_build_s": info["seconds"], "site_bytes": info["bytes"], "onnx_bytes": info["onnx_bytes"],
        "page_load_s": round(load_s, 2), "predictions": len(total),
        "ms_per_drawing_median": round(total[len(total) // 2], 2), "ms_per_drawing_p90": round(total[int(len(total) * 0.9)], 2),
        "forward_ms_median": round(forward[len(forward) // 2], 2)}, indent=2))


def test_site_out_must_be_a_new_empty_or_old_site_folder(tmp_path, capsys):
    from convscope.cli import main

    (tmp_path / "afile").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert main(["site", str(tmp_path / "run"), "--out", str(tmp_path / "afile")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["site", str(tmp_path / "run"), "--out", str(tmp_path / "full")]) == 2
    assert "other files" in capsys.readouterr().err
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_without_npm_the_message_says_what_to_do(monkeypatch, tmp_path):
    from convscope.errors import UserError
    from convscope.export import site

    monkeypatch.setattr(site, "_ort_candidates", lambda: [tmp_path / "nothing"])
    monkeypatch.setattr(site.shutil, "which", lambda _name: None)
    with pytest.raises(UserError, match="npm.*convscope serve"):
        site.find_ort_web()


def test_a_wrong_version_is_not_used(tmp_path):
    from convscope.export import site

    pkg = tmp_path / "onnxruntime-web"
    (pkg / "dist").mkdir(parents=True)
    for f in site.ORT_FILES:
        (pkg / "dist" / f).write_text("")
    (pkg / "package.json").write_text(json.dumps({"version": "1.17.0"}))
    assert site._dist(pkg) is None
    (pkg / "package.json").write_text(json.dumps({"version": site.ORT_WEB_VERSION}))
    assert site._dist(pkg) == pkg / "dist"
