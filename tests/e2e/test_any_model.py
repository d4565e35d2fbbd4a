"""The explorer in Chromium on networks other than the lenet5 demo: a batch-norm fashion run,
an RGB 32x32 run, a zoo resnet18 without a run (an uploaded photo) and a `folder:` run."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("web")]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _serve_and_open(browser_context, app, name):
    from convscope.web.live import live_server

    stack = contextlib.ExitStack()
    url = stack.enter_context(live_server(app))
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector('body[data-ready="1"]', timeout=60000)
    return stack, page, errors


@pytest.fixture
def opened(browser_context, request):
    """Call opened(app): a ready page; closed (screenshot kept, no JS errors) at the end."""
    held = []

    def open_(app):
        stack, page, errors = _serve_and_open(browser_context, app, request.node.name)
        held.append((stack, page, errors))
        return page
    yield open_
    shots = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
    shots.mkdir(parents=True, exist_ok=True)
    for stack, page, errors in held:
        page.screenshot(path=str(shots / f"{request.node.name}.png"), full_page=False)
        page.close()
        stack.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def _shot(page, name: str, testid: str | None = None) -> None:
    """A screenshot for docs/explorer.md (copied there from test-artifacts/e2e)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    if testid:  # at the bottom of the window, clear of the sticky panel
        page.get_by_test_id(testid).evaluate("e => e.scrollIntoView({block: 'end'})")
    else:
        page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / name))


def _png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _upload(page, raw: bytes, name: str, mime: str) -> None:
    page.get_by_test_id("upload").set_input_files(files=[{"name": name, "mimeType": mime, "buffer": raw}])
    page.wait_for_function("document.body.dataset.pending === '0'", timeout=60000)
    expect(page.get_by_test_id("first-guess")).not_to_have_text("–", timeout=60000)


def _fashion_app(tmp_path):
    from convscope.data import get_dataset
    from convscope.models import create_model
    from convscope.train.checkpoint import save_run
    from convscope.web import create_app

    try:
        ds = get_dataset("fashion-mnist")
    except Exception as exc:  # the Debian package is not installed
        pytest.skip(f"fashion-mnist is not available here: {exc}")
    torch.manual_seed(0)
    run = save_run(tmp_path / "fashion", create_model("convnet_small"),
                   {"model": {"name": "convnet_small", "kwargs": {}}, "dataset": "fashion-mnist",
                    "classes": ds.classes, "input_size": list(ds.input_size),
                    "normalization": ds.normalization(), "preprocessing": ds.preprocessing()})
    return create_app(run), ds


def test_a_batch_norm_fashion_run_shows_every_layer(opened, tmp_path):
    app, ds = _fashion_app(tmp_path)
    layers = app.state.explorer.describe()["layers"]
    page = opened(app)
    assert "Draw an item" in page.locator("#draw-title").inner_text()
    assert "MNIST" not in page.get_by_test_id("downsampled").inner_text()
    for layer in layers:  # every layer has a node in the graph and a card
        expect(page.get_by_test_id(f"graph-node-{layer['name']}")).to_have_count(1)
        expect(page.get_by_test_id(f"layer-{layer['name']}")).to_have_count(1)
    assert any(layer["kind"] == "bn" for layer in layers)
    expect(page.get_by_test_id("sample-0")).to_be_visible(timeout=60000)
    page.get_by_test_id("sample-0").click()
    page.wait_for_function("document.body.dataset.pending === '0'")
    expect(page.get_by_test_id("first-guess")).not_to_have_text("–")
    _shot(page, "explorer-fashion.png")
    for layer in layers[1:]:  # scrolled to, each layer is filled with what the network computed
        page.get_by_test_id(f"layer-{layer['name']}").scroll_into_view_if_needed()
        sel = "canvas.map" if len(layer["shape"]) == 3 and layer["shape"][1] > 1 else ".cell"
        expect(page.get_by_test_id(f"layer-{layer['name']}").locator(sel).first).to_be_visible(timeout=60000)
    # the class names are whole in the output layer and in the bars
    cells = page.get_by_test_id(f"layer-{layers[-1]['name']}").locator(".cell")
    assert cells.all_inner_texts() == ds.classes
    clipped = cells.evaluate_all("cs => cs.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent)")
    assert not clipped, clipped
    labs = page.locator(".bar .lab").evaluate_all("ls => ls.filter(l => l.scrollWidth > l.clientWidth + 1).map(l => l.textContent)")
    assert not labs, labs


def _colour_run(tmp_path) -> Path:
    """A 3x32x32 RGB run trained for one epoch on a tiny folder of red and blue pictures."""
    from convscope.train import train

    rng = np.random.default_rng(0)
    root = tmp_path / "colours"
    for cls, channel in (("red", 0), ("blue", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            a = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            a[..., channel] = rng.integers(160, 255, (40, 40))
            Image.fromarray(a).save(root / cls / f"{i}.png")
    return train(model="convnet_small", data=f"folder:{root}", out=tmp_path / "run", epochs=1, batch_size=8,
                 progress=False, threads=1, image_size=32, model_kwargs={"in_chans": 3})


def test_an_rgb_run_shows_the_three_channels_it_is_fed(opened, tmp_path):
    from convscope.web import create_app

    page = opened(create_app(_colour_run(tmp_path)))
    expect(page.locator("#draw-card")).to_be_hidden()  # photos, not drawings
    img = np.zeros((50, 70, 3), np.uint8)
    img[..., 0] = 230
    img[..., 2] = 20
    _upload(page, _png(img), "red.png", "image/png")
    for i in range(3):
        expect(page.get_by_test_id(f"input-channel-{i}")).to_be_visible()
    _shot(page, "explorer-rgb.png", "layer-input")
    fed = page.evaluate("() => { const c = CS.net.views.input.canvases[0]; return Array.from(c.getContext('2d').getImageData(16, 16, 1, 1).data); }")
    assert fed[0] == pytest.approx(230, abs=3) and fed[2] == pytest.approx(20, abs=3)
    # colour scales: per map, per layer, whole network, with the scale said
    conv = page.get_by_test_id("layer-features.conv1_1.conv").locator("canvas.map").first
    pixels = lambda: conv.evaluate("c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).join()")  # noqa: E731
    per_map = pixels()
    page.get_by_test_id("colour-mode").select_option("network")
    assert "whole network" in page.get_by_test_id("scale-note").inner_text()
    assert pixels() != per_map
    page.get_by_test_id("colour-mode").select_option("map")
    assert pixels() == per_map


def test_a_zoo_resnet18_reads_an_uploaded_photo_and_says_its_weights_are_random(opened):
    from convscope.web import create_app

    torch.manual_seed(0)
    page = opened(create_app(model="resnet18"))
    expect(page.get_by_test_id("model-info")).to_contain_text("RANDOM WEIGHTS")
    photo = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    _upload(page, _png(photo, "JPEG"), "photo.jpg", "image/jpeg")
    expect(page.get_by_test_id("trust")).to_contain_text("random weights")
    node = page.get_by_test_id("graph-node-layer1.0.add")
    expect(node).to_contain_text("add")
    assert "layer1.0.bn2" in node.inner_text() and "maxpool" in node.inner_text()  # both inputs, with shapes
    # a deep layer is fetched when its node is clicked
    page.get_by_test_id("graph-node-layer4.1.add").click()
    maps = page.get_by_test_id("layer-layer4.1.add").locator("canvas.map")
    expect(maps.first).to_be_visible(timeout=60000)
    assert maps.count() == 16
    page.get_by_test_id("more-layer4.1.add").click()
    expect(maps).to_have_count(32, timeout=60000)
    # hover a unit: its receptive field on the input, computed through the residual branches
    layer = page.evaluate("() => CS.net.byName['layer1.0.conv1']")
    page.get_by_test_id("layer-layer1.0.conv1").scroll_into_view_if_needed()  # fetched when scrolled to
    canvas = page.get_by_test_id("layer-layer1.0.conv1").locator("canvas.map").first
    expect(canvas).to_be_visible(timeout=60000)
    box = canvas.bounding_box()
    y, x = 10, 20
    canvas.hover(position={"x": (x + 0.5) * box["width"] / 56, "y": (y + 0.5) * box["height"] / 56})
    hl = page.get_by_test_id("rf-highlight")
    expect(hl).to_be_visible()
    page.screenshot(path=str(SHOTS / "explorer-resnet18.png"))
    y0 = layer["start"][0] + y * layer["jump"][0] - (layer["rf"][0] - 1) / 2
    assert float(hl.get_attribute("data-y0")) == pytest.approx(max(0, y0))


def test_a_folder_run_samples_its_test_images_with_their_labels(opened, tmp_path):
    from convscope.web import create_app

    page = opened(create_app(_colour_run(tmp_path)))
    expect(page.get_by_test_id("sample-0")).to_be_visible(timeout=60000)
    labels = page.get_by_test_id("samples").locator(".sample span").all_inner_texts()
    assert labels and set(labels) <= {"red", "blue"}
    page.get_by_test_id("samples-wrong").check()
    expect(page.locator("#samples-info")).to_contain_text("misclassified")
    page.get_by_test_id("samples-wrong").uncheck()
    expect(page.get_by_test_id("sample-0")).to_be_visible()
    page.get_by_test_id("sample-0").click()
    page.wait_for_function("document.body.dataset.pending === '0'")
    expect(page.get_by_test_id("first-guess")).to_have_text(page.locator(".bar.best .lab").inner_text())


def test_why_this_class_overlays_gradcam_for_each_guess(opened, tmp_path):
    from convscope.web import create_app

    app = create_app(_colour_run(tmp_path))
    page = opened(app)
    img = np.zeros((32, 32, 3), np.uint8)
    img[4:14, 4:14, 0] = 250
    _upload(page, _png(img), "corner.png", "image/png")
    page.get_by_test_id("gradcam-first").click()
    overlay = page.get_by_test_id("gradcam-overlay")
    expect(overlay).to_be_visible(timeout=60000)
    assert overlay.get_attribute("data-label") == page.get_by_test_id("first-guess").inner_text()
    page.get_by_test_id("gradcam-second").click()
    expect(overlay).to_have_attribute("data-label", page.get_by_test_id("second-guess").inner_text(), timeout=60000)
    page.get_by_test_id("gradcam-second").click()
    expect(overlay).to_be_hidden()


def test_inception_branches_sit_side_by_side_and_meet_in_their_concat(opened):
    """inception_v4's first Inception-A block: four branches in one row, each with the layers
    that lead to one input of the block's concatenation (the graph of /api/model)."""
    from convscope.web import create_app

    app = create_app(model="inception_v4")
    layers = {layer["name"]: layer for layer in app.state.explorer.describe()["layers"]}
    page = opened(app)
    join = next(n for n, layer in layers.items() if n.startswith("inception_a.0") and layer["kind"] == "concat")
    row = page.locator(f'.gbranches[data-join="{join}"]')
    expect(row).to_have_count(1)
    cols = row.locator(".gbranch")
    assert cols.count() == len(layers[join]["inputs"]) == 4
    row.scroll_into_view_if_needed()
    tops = [cols.nth(i).bounding_box()["y"] for i in range(4)]
    assert max(tops) - min(tops) < 2  # side by side
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.get_by_test_id("graph").screenshot(path=str(SHOTS / "explorer-inception-graph.png"))
    for k, start in enumerate(layers[join]["inputs"]):  # each column ends with the layer the concat reads
        last = cols.nth(k).locator(".gnode").last
        assert last.get_attribute("data-testid") == f"graph-node-{start}"


@pytest.mark.parametrize("name", ["features.pool1", "features.conv2_1.conv", "features.conv1_1.bn",
                                  "features.conv1_1.conv"])
def test_what_a_click_writes_out_is_what_the_network_computed(opened, tmp_path, name):
    """A pool after batch norm + ReLU, a conv reading a pool, a batch norm: the value written out
    from the layer's inputs agrees with the network's own (both travel as 8 bits per map)."""
    from convscope.web import create_app

    page = opened(create_app(_colour_run(tmp_path)))
    img = np.random.default_rng(3).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    _upload(page, _png(img), "noise.png", "image/png")
    section = page.get_by_test_id(f"layer-{name}")
    section.scroll_into_view_if_needed()
    maps = section.locator("canvas.map")
    expect(maps.first).to_be_visible(timeout=60000)
    layer = page.evaluate(f"() => CS.net.byName['{name}']")
    h, w = layer["shape"][1:]
    box = maps.nth(1).bounding_box()
    maps.nth(1).click(position={"x": (w // 2 + 0.5) * box["width"] / w, "y": (h // 3 + 0.5) * box["height"] / h})
    comp = page.get_by_test_id("computation")
    expect(comp).to_be_visible(timeout=60000)
    got, net = float(comp.get_attribute("data-activation")), float(comp.get_attribute("data-network"))
    span = page.evaluate(f"() => {{ const l = CS.net.acts['{name}'].layer; return l.layer_max - l.layer_min; }}")
    assert got == pytest.approx(net, abs=0.03 * span + 1e-3), (got, net, span)
