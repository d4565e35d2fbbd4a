"""The static site in Chromium on a fashion-mnist run (plain resize, batch norm) and an RGB
3x32x32 run: drawings, uploaded and dropped files, test samples, misclassified samples,
every layer, hover and click, weights and Grad-CAM, each against the Python server
(`convscope serve`'s app) on the same inputs. The site is served by a plain static server
with every other request blocked, and must make no request after loading.
"""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("web")]
HERE = Path(__file__).resolve().parent


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


site_tests = _load(HERE / "test_site.py", "site_tests")  # the static server, the pen, the browser
any_model = _load(HERE.parent / "e2e" / "test_any_model.py", "any_model_tests")  # the RGB run
browser = site_tests.browser
ARTIFACTS = site_tests.ARTIFACTS
TOL = 1e-4


def _fashion_run(root: Path) -> Path:
    from convscope.data import get_dataset
    from convscope.models import create_model
    from convscope.runs import save_run

    try:
        ds = get_dataset("fashion-mnist")
    except Exception as exc:  # the Debian package is not installed
        pytest.skip(f"fashion-mnist is not available here: {exc}")
    torch.manual_seed(15)
    return save_run(root / "fashion", create_model("convnet_small"),
                    {"model": {"name": "convnet_small", "kwargs": {}}, "dataset": "fashion-mnist",
                     "classes": ds.classes, "input_size": list(ds.input_size),
                     "normalization": ds.normalization(), "preprocessing": ds.preprocessing()})


def _file(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _pictures(rgb: bool) -> list[tuple[str, bytes, str]]:
    """Files to upload: opaque PNGs (at the network's size and larger, square), a PNG whose
    transparent background must be flattened onto the colour that shows its ink, and a JPEG."""
    rng = np.random.default_rng(4)
    shirt = np.zeros((280, 280, 3), np.uint8)
    shirt[60:240, 90:190] = (200, 40, 30) if rgb else (220, 220, 220)
    shirt[60:110, 40:240] = (180, 60, 40) if rgb else (190, 190, 190)
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cut = np.zeros((56, 56, 4), np.uint8)  # dark ink on a transparent sheet (alpha 0 or 255)
    cut[10:46, 14:42, :3] = (30, 40, 120)
    cut[10:46, 14:42, 3] = 255
    photo = np.clip(rng.normal(120, 50, (64, 64, 3)), 0, 255).astype(np.uint8)
    return [("shirt.png", _file(shirt), "image/png"), ("noise.png", _file(noise), "image/png"),
            ("cut.png", _file(cut), "image/png"), ("photo.jpg", _file(photo, "JPEG"), "image/jpeg")]


def _get(server: str, path: str) -> dict:
    with urllib.request.urlopen(server + path, timeout=60) as res:
        return json.loads(res.read())


def _answered(page, before: int) -> None:
    page.wait_for_function(f"CS.engine.timings.length > {before} && document.body.dataset.pending === '0'",
                           timeout=60000)


def _shown(page) -> tuple[str, list[float]]:
    n = page.locator("#bars .bar").count()
    probs = [float(page.get_by_test_id(f"prob-bar-{i}").get_attribute("data-probability")) for i in range(n)]
    return page.get_by_test_id("first-guess").inner_text(), probs


def _same(page, want: dict, what: str) -> None:
    first, probs = _shown(page)
    assert first == want["top"][0]["label"], what
    assert len(probs) == len(want["probabilities"]), what
    assert max(abs(a - b) for a, b in zip(probs, want["probabilities"])) <= TOL, what


def _upload(page, name: str, raw: bytes, mime: str) -> None:
    n = page.evaluate("CS.engine.timings.length")
    page.get_by_test_id("upload").set_input_files(files=[{"name": name, "mimeType": mime, "buffer": raw}])
    _answered(page, n)


def _drop(page, name: str, raw: bytes, mime: str) -> None:
    n = page.evaluate("CS.engine.timings.length")
    dt = page.evaluate_handle("""([b64, name, mime]) => {
        const bin = atob(b64), u = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
        const dt = new DataTransfer(); dt.items.add(new File([u], name, { type: mime })); return dt; }""",
                              [base64.b64encode(raw).decode(), name, mime])
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dt})
    _answered(page, n)


def _click_sample(page, i: int) -> int:
    n = page.evaluate("CS.engine.timings.length")
    button = page.get_by_test_id(f"sample-{i}")
    button.click()
    _answered(page, n)
    return int(button.get_attribute("title").split()[2].rstrip(":,"))


def _check_gradcam(page, server: str) -> float:
    """The page's last input is the server's last: the same Grad-CAM, within one 8-bit level.
    Returns the median ms of the in-browser Grad-CAM (the gradient graph's run and the scaling)."""
    page.get_by_test_id("gradcam-first").click()
    overlay = page.get_by_test_id("gradcam-overlay")
    overlay.wait_for(state="visible", timeout=60000)
    assert overlay.get_attribute("data-label") == page.get_by_test_id("first-guess").inner_text()
    for rank in (0, 1):
        got = page.evaluate(f"CS.engine.gradcam({{rank: {rank}}})")
        want = _get(server, f"/api/gradcam?rank={rank}")
        assert (got["label"], got["layer"], got["shape"]) == (want["label"], want["layer"], want["shape"])
        a = np.frombuffer(base64.b64decode(got["data"]), np.uint8).astype(int)
        b = np.frombuffer(base64.b64decode(want["data"]), np.uint8).astype(int)
        assert np.abs(a - b).max() <= 1, f"Grad-CAM rank {rank} differs by {np.abs(a - b).max()}"
    page.get_by_test_id("gradcam-first").click()
    ms = page.evaluate("""async () => { const out = [];
        for (let i = 0; i < 7; i++) { const t = performance.now(); await CS.engine.gradcam({rank: i % 2}); out.push(performance.now() - t); }
        return out.sort((a, b) => a - b)[3]; }""")
    return round(ms, 2)


def _check_wrong(page, server: str) -> None:
    """The misclassified samples the site was built with are the server's, and feed the same."""
    box = page.get_by_test_id("samples-wrong")
    box.check()
    page.wait_for_function("document.getElementById('samples-info').textContent.includes('misclassified')",
                           timeout=60000)
    got = page.evaluate("CS.engine.samples({wrong: 1, limit: 15})")
    want = _get(server, "/api/samples?wrong=1&limit=15")
    key = lambda items: [(s["index"], s["truth"], s["predicted"]) for s in items]  # noqa: E731
    assert (got["total"], got["evaluated"]) == (want["total"], want["evaluated"])
    assert key(got["samples"]) == key(want["samples"])
    assert page.locator("#samples-info").inner_text().startswith(f"{want['total']} misclassified")
    if not want["samples"]:  # the network reads every evaluated test image right
        box.uncheck()
        return
    index = _click_sample(page, 0)
    assert index == want["samples"][0]["index"]
    _same(page, site_tests.post(server, {"sample": index}), "a misclassified sample")
    assert page.get_by_test_id("first-guess").inner_text() == want["samples"][0]["predicted_label"]
    box.uncheck()


def _check_layers(page) -> None:
    """Every layer is drawn; hovering a conv unit shows its window and kernel; clicking one
    writes its computation out (the value agrees with the network's); an output unit's
    weights (weights.json) give the probability in the bars."""
    layers = page.evaluate("CS.net.model.layers")
    for layer in layers[1:]:
        section = page.get_by_test_id(f"layer-{layer['name']}")
        section.scroll_into_view_if_needed()
        sel = "canvas.map" if len(layer["shape"]) == 3 and layer["shape"][1] > 1 else ".cell"
        section.locator(sel).first.wait_for(state="visible", timeout=60000)
    conv = next(layer for layer in layers if layer["kind"] == "conv")
    section = page.get_by_test_id(f"layer-{conv['name']}")
    section.scroll_into_view_if_needed()
    canvas = section.locator("canvas.map").nth(1)
    h, w = conv["shape"][1:]
    box = canvas.bounding_box()
    pos = {"x": (w // 2 + 0.5) * box["width"] / w, "y": (h // 3 + 0.5) * box["height"] / h}
    canvas.hover(position=pos)
    page.get_by_test_id("rf-highlight").wait_for(state="visible", timeout=60000)
    page.locator("#inspect .kernels table").first.wait_for(state="visible", timeout=60000)
    canvas.click(position=pos)
    comp = page.get_by_test_id("computation")
    comp.wait_for(state="visible", timeout=60000)
    got, net = float(comp.get_attribute("data-activation")), float(comp.get_attribute("data-network"))
    span = page.evaluate(f"() => {{ const l = CS.net.acts['{conv['name']}'].layer; return l.layer_max - l.layer_min; }}")
    assert got == pytest.approx(net, abs=0.03 * span + 1e-3)
    out, unit = layers[-1], 1
    cell = page.get_by_test_id(f"layer-{out['name']}").locator(".cell").nth(unit)
    cell.scroll_into_view_if_needed()
    cell.click()
    page.wait_for_function("document.querySelector('[data-testid=computation]')?.dataset.probability !== undefined",
                           timeout=60000)
    p = float(page.get_by_test_id("computation").get_attribute("data-probability"))
    assert p == pytest.approx(_shown(page)[1][unit], abs=1e-3)  # the logits travel as 8 bits per map
    page.get_by_test_id("unpin").click()


def _run_site(browser, run: Path, site: Path, info: dict, *, draw: bool, name: str) -> None:
    from convscope.web import create_app
    from convscope.web.live import live_server

    httpd, base = site_tests.static_server(site)
    page = browser.new_page()
    seen, blocked, errors = site_tests.offline_page(page, base)
    try:
        t0 = time.perf_counter()
        page.goto(base + "/")
        page.wait_for_selector('body[data-ready="1"]', timeout=60000)
        load_s = time.perf_counter() - t0
        loaded = len(seen)
        assert "runs in this browser" in page.locator("footer").inner_text()
        page.get_by_test_id("sample-0").wait_for(state="visible", timeout=60000)
        with live_server(create_app(run)) as server:
            if draw:  # the canvas as the server would get it: a plain resize, no centring
                for strokes in site_tests.DIGITS[:6]:
                    page.get_by_test_id("clear").click()
                    site_tests.draw(page, strokes)
                    png = page.evaluate("document.querySelector('[data-testid=draw-canvas]').toDataURL('image/png')")
                    _same(page, site_tests.post(server, {"png": png, "preprocess": False}), "a drawing")
            pictures = _pictures(rgb=name == "rgb")
            for i, (fname, raw, mime) in enumerate(pictures):
                (_drop if i % 2 else _upload)(page, fname, raw, mime)
                url = f"data:{mime};base64," + base64.b64encode(raw).decode()
                _same(page, site_tests.post(server, {"file": url}), fname)
            cam_ms = _check_gradcam(page, server)
            shown = page.locator("#samples .sample").count()
            assert shown >= 2
            for i in (1, min(4, shown - 1)):
                index = _click_sample(page, i)
                _same(page, site_tests.post(server, {"sample": index}), f"test image {index}")
            _check_wrong(page, server)
            _check_layers(page)
        timings = page.evaluate("CS.engine.timings")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)
    finally:
        page.close()
        httpd.shutdown()
    assert not errors, errors
    assert not [u for u in seen if "/api/" in u], "the site asked a server for /api/"
    assert not blocked, f"requests outside the site: {blocked}"
    assert len(seen) == loaded, f"requests after loading: {seen[loaded:]}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    figures = {"run": name, "site_build_s": info["seconds"], "site_bytes": info["bytes"],
               "onnx_bytes": info["onnx_bytes"], "gradcam_bytes": (site / "gradcam.onnx").stat().st_size,
               "samples_wrong_bytes": (site / "samples_wrong.json").stat().st_size, "page_load_s": round(load_s, 2),
               "gradcam_ms_median": cam_ms}
    for kind in ("drawing", "file", "sample"):  # the in-browser engine's whole answer, per kind of input
        total = sorted(t["total_ms"] for t in timings if t["kind"] == kind)
        forward = sorted(t["forward_ms"] for t in timings if t["kind"] == kind)
        if total:
            figures[kind] = {"n": len(total), "ms_median": round(total[len(total) // 2], 2),
                             "ms_max": round(total[-1], 2), "forward_ms_median": round(forward[len(forward) // 2], 2)}
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2))


def test_a_fashion_run_site_answers_as_the_server(browser, tmp_path):
    from convscope.export.site import build_site

    site_tests._ort_or_skip()
    run = _fashion_run(tmp_path)
    info = build_site(run, tmp_path / "site")
    desc = json.loads((tmp_path / "site" / "model.json").read_text())["description"]
    assert desc["preprocessing"]["kind"] == "resize" and desc["site"]["gradcam"]["layer"] == "global_pool"
    _run_site(browser, run, Path(info["out"]), info, draw=True, name="fashion")


def test_an_rgb_run_site_answers_as_the_server(browser, tmp_path):
    from convscope.export.site import build_site

    site_tests._ort_or_skip()
    run = any_model._colour_run(tmp_path)
    info = build_site(run, tmp_path / "site")
    assert json.loads((tmp_path / "site" / "model.json").read_text())["description"]["input_size"] == [3, 32, 32]
    _run_site(browser, run, Path(info["out"]), info, draw=False, name="rgb")


def test_a_site_without_its_gradient_graph_disables_grad_cam_and_says_why(browser, tmp_path, monkeypatch):
    from convscope.export import gradcam
    from convscope.export.site import build_site

    site_tests._ort_or_skip()
    run = _fashion_run(tmp_path)
    monkeypatch.setattr(gradcam, "MAX_PARAMS", 1000)
    info = build_site(run, tmp_path / "site")
    assert not (Path(info["out"]) / "gradcam.onnx").exists()
    httpd, base = site_tests.static_server(Path(info["out"]))
    page = browser.new_page()
    try:
        page.goto(base + "/")
        page.wait_for_selector('body[data-ready="1"]', timeout=60000)
        for which in ("first", "second"):
            assert page.get_by_test_id(f"gradcam-{which}").is_disabled()
        note = page.get_by_test_id("gradcam-note")
        assert note.is_visible() and "parameters" in note.inner_text() and "convscope serve" in note.inner_text()
    finally:
        page.close()
        httpd.shutdown()
