"""Draw with the mouse in Chromium and check what the explorer shows."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("web")]  # one worker: one server, one browser
LAYERS = ["input", "conv1", "pool1", "conv2", "pool2", "fc1", "fc2", "output"]


def draw(page, *strokes: list[tuple[float, float]]) -> None:
    """Mouse strokes given in the canvas's own 280x280 coordinates."""
    canvas = page.get_by_test_id("draw-canvas")
    box = canvas.bounding_box()
    s = box["width"] / 280
    for points in strokes:
        x, y = points[0]
        page.mouse.move(box["x"] + x * s, box["y"] + y * s)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x * s, box["y"] + y * s, steps=4)
        page.mouse.up()
    # the page sets data-pending="0" once the answer for the finished drawing is shown
    page.wait_for_function("document.body.dataset.pending === '0'", timeout=60000)


def probabilities(page) -> list[float]:
    return [float(page.get_by_test_id(f"prob-bar-{i}").get_attribute("data-probability")) for i in range(10)]


def ellipse(cx, cy, rx, ry, n=36):
    return [(cx + rx * math.sin(2 * math.pi * k / n), cy - ry * math.cos(2 * math.pi * k / n)) for k in range(n + 1)]


@pytest.mark.parametrize("digit, strokes", [
    ("1", [[(140, 40), (140, 240)]]),
    ("7", [[(70, 60), (210, 60), (120, 235)]]),
    ("0", [ellipse(140, 140, 65, 95)]),
])
def test_drawn_digit_reads_right(page, digit, strokes):
    draw(page, *strokes)
    expect(page.get_by_test_id("first-guess")).to_have_text(digit)
    probs = probabilities(page)
    assert int(np.argmax(probs)) == int(digit)
    second = page.get_by_test_id("second-guess").inner_text()
    assert second == str(int(np.argsort(probs)[-2]))
    expect(page.get_by_test_id("downsampled")).to_be_visible()


def test_the_ten_bars_add_up_to_1(page):
    draw(page, [(90, 70), (200, 70), (110, 230)])
    expect(page.get_by_test_id("first-guess")).not_to_have_text("–")
    probs = probabilities(page)
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)
    assert all(0 <= p <= 1 for p in probs)
    widths = [float(page.get_by_test_id(f"prob-bar-{i}").locator(".fill").evaluate("e => e.style.width")[:-1])
              for i in range(10)]
    np.testing.assert_allclose(widths, np.asarray(probs) * 100, atol=0.051)


def test_clear_empties_the_canvas_and_the_guesses(page):
    draw(page, [(140, 40), (140, 240)])
    expect(page.get_by_test_id("first-guess")).to_have_text("1")
    page.get_by_test_id("clear").click()
    expect(page.get_by_test_id("first-guess")).to_have_text("–")
    assert sum(probabilities(page)) == 0
    ink = page.get_by_test_id("draw-canvas").evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 < 3 && v > 0)")
    assert not ink


def test_each_toggle_hides_and_shows_its_layer(page):
    draw(page, [(140, 40), (140, 240)])
    for name in LAYERS:
        layer, toggle = page.get_by_test_id(f"layer-{name}"), page.get_by_test_id(f"layer-toggle-{name}")
        expect(layer).to_be_visible()
        toggle.click()
        expect(layer).to_be_hidden()
        others = [n for n in LAYERS if n != name]
        expect(page.get_by_test_id(f"layer-{others[0]}")).to_be_visible()
        toggle.click()
        expect(layer).to_be_visible()


def test_layers_are_drawn_as_they_are(page):
    draw(page, [(140, 40), (140, 240)])
    expect(page.get_by_test_id("first-guess")).to_have_text("1")
    for name, maps in [("conv1", 6), ("pool1", 6), ("conv2", 16), ("pool2", 16)]:
        assert page.get_by_test_id(f"layer-{name}").locator("canvas.map").count() == maps
    for name, units in [("fc1", 120), ("fc2", 84), ("output", 10)]:  # LeNet-5's C5, F6, output
        assert page.get_by_test_id(f"layer-{name}").locator(".cell").count() == units


@pytest.mark.parametrize("unit", [(10, 12), (0, 0), (27, 20)])
def test_hovering_a_conv1_unit_lights_its_receptive_field(page, unit):
    draw(page, [(140, 40), (140, 240)])
    expect(page.get_by_test_id("first-guess")).to_have_text("1")
    y, x = unit
    maps = page.get_by_test_id("layer-conv1").locator("canvas.map")
    box = maps.nth(2).bounding_box()
    maps.nth(2).hover(position={"x": (x + 0.5) * box["width"] / 28, "y": (y + 0.5) * box["height"] / 28})
    hl = page.get_by_test_id("rf-highlight")
    expect(hl).to_be_visible()
    # conv1 is 5x5 with padding 2: unit (y, x) sees rows y-2..y+2 and columns x-2..x+2 (clipped)
    got = [int(hl.get_attribute(f"data-{k}")) for k in ("y0", "x0", "y1", "x1")]
    assert got == [max(0, y - 2), max(0, x - 2), min(27, y + 2), min(27, x + 2)]
    inp = page.get_by_test_id("layer-input").locator("canvas").bounding_box()
    hb = hl.bounding_box()
    cell = inp["width"] / 28
    assert hb["x"] == pytest.approx(inp["x"] + got[1] * cell, abs=1.5)
    assert hb["width"] == pytest.approx((got[3] - got[1] + 1) * cell, abs=1.5)
    assert "kernel 2" in page.get_by_test_id("inspect").inner_text()


def test_clicking_a_unit_writes_out_its_computation(page, server_url):
    draw(page, [(140, 40), (140, 240)])
    expect(page.get_by_test_id("first-guess")).to_have_text("1")
    y, x, m = 12, 14, 3
    maps = page.get_by_test_id("layer-conv1").locator("canvas.map")
    box = maps.nth(m).bounding_box()
    maps.nth(m).click(position={"x": (x + 0.5) * box["width"] / 28, "y": (y + 0.5) * box["height"] / 28})
    comp = page.get_by_test_id("computation")
    expect(comp).to_be_visible()
    model = page.evaluate("() => window.CS.net.model")
    fed = torch.tensor(page.evaluate("() => window.CS.net.response.input")).view(1, 1, 28, 28)
    k = model["kernels"]["conv1"]
    norm = model["normalization"]
    z = F.conv2d((fed - norm["mean"][0]) / norm["std"][0], torch.tensor(k["weight"]), torch.tensor(k["bias"]), padding=2)
    want = float(z[0, m, y, x])
    assert float(comp.get_attribute("data-z")) == pytest.approx(want, abs=1e-4)
    assert float(comp.get_attribute("data-activation")) == pytest.approx(max(0.0, want), abs=1e-4)
    assert re.search(r"\(bias\) = -?[0-9.]+", comp.inner_text())


@pytest.mark.parametrize("n, f, p, s", [(7, 3, 0, 1), (7, 3, 0, 2), (7, 3, 1, 3), (32, 5, 0, 1), (28, 5, 2, 1), (227, 11, 0, 4)])
def test_conv_arithmetic_matches_torch(page, n, f, p, s):
    page.get_by_test_id("tab-arith").click()
    for key, v in zip("npfs", (n, p, f, s)):
        page.get_by_test_id(f"arith-{key}").fill(str(v))
    out = torch.nn.Conv2d(1, 1, f, stride=s, padding=p)(torch.zeros(1, 1, n, n)).shape[-1]
    text = page.get_by_test_id("arith-result").inner_text()
    assert text.endswith(f"= {out}"), text


def test_conv_arithmetic_explains_a_misfit(page):
    page.get_by_test_id("tab-arith").click()
    for key, v in zip("npfs", (7, 0, 3, 3)):
        page.get_by_test_id(f"arith-{key}").fill(str(v))
    assert "2.33" in page.get_by_test_id("arith-result").inner_text()
    why = page.get_by_test_id("arith-why").inner_text()
    assert "padding 1 gives 3×3" in why and "not a multiple" in why


def test_the_lectures_kernel_slides_step_by_step(page):
    image = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
    kernel = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    want = F.conv2d(torch.tensor(image).view(1, 1, 5, 5).float(), torch.tensor(kernel).view(1, 1, 3, 3).float())[0, 0]
    page.get_by_test_id("tab-arith").click()
    page.get_by_test_id("slide-next").click()
    assert page.get_by_test_id("slide-dot").inner_text().endswith("= 4")
    for _ in range(8):
        page.get_by_test_id("slide-next").click()
    cells = page.get_by_test_id("slide-output").locator("td").all_inner_texts()
    assert [int(c) for c in cells] == want.int().flatten().tolist()


def test_drawing_does_not_scroll_the_page_on_touch(page):
    style = page.get_by_test_id("draw-canvas").evaluate("c => getComputedStyle(c).touchAction")
    assert style == "none"



def test_screenshots_for_the_docs_and_a_phone_sized_page(page):
    """Kept as artifacts (docs/img/explorer*.png are copies of them); on a phone nothing
    overflows sideways, so the page reads without horizontal scrolling."""
    shots = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
    shots.mkdir(parents=True, exist_ok=True)
    draw(page, [(70, 60), (210, 60), (120, 235)])
    maps = page.get_by_test_id("layer-conv1").locator("canvas.map")
    box = maps.nth(0).bounding_box()
    maps.nth(0).hover(position={"x": 14.5 * box["width"] / 28, "y": 8.5 * box["height"] / 28})
    expect(page.get_by_test_id("rf-highlight")).to_be_visible()
    page.screenshot(path=str(shots / "explorer.png"))
    page.get_by_test_id("tab-arith").click()
    for _ in range(5):
        page.get_by_test_id("slide-next").click()
    page.screenshot(path=str(shots / "explorer-arith.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    for tab in ("tab-arith", "tab-draw"):
        page.get_by_test_id(tab).click()
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{tab}: the page is {overflow}px wider than a phone"
    page.screenshot(path=str(shots / "explorer-phone.png"))


def test_the_eraser_rubs_out_ink(page):
    draw(page, [(140, 40), (140, 240)])
    expect(page.get_by_test_id("first-guess")).to_have_text("1")
    page.get_by_test_id("eraser").check()
    draw(page, [(140, 20), (140, 260)])  # the eraser is wider than the pencil
    expect(page.get_by_test_id("first-guess")).to_have_text("–")
    assert sum(probabilities(page)) == 0
    page.get_by_test_id("pencil").check()
    draw(page, [(80, 60), (200, 60), (120, 230)])
    expect(page.get_by_test_id("first-guess")).to_have_text("7")


def test_a_finger_draws_too(page):
    """Touch arrives as pointer events with pointerType "touch": the same strokes."""
    page.get_by_test_id("draw-canvas").evaluate("""c => {
        const r = c.getBoundingClientRect(), s = r.width / 280;
        const at = (type, x, y) => c.dispatchEvent(new PointerEvent(type, {pointerId: 7, pointerType: "touch",
            isPrimary: true, bubbles: true, cancelable: true, clientX: r.left + x * s, clientY: r.top + y * s}));
        at("pointerdown", 140, 40);
        for (let y = 50; y <= 240; y += 10) at("pointermove", 140, y);
        at("pointerup", 140, 240);
    }""")
    page.wait_for_function("document.body.dataset.pending === '0'", timeout=60000)
    expect(page.get_by_test_id("first-guess")).to_have_text("1")


def test_before_anything_is_fed_there_is_no_unit_to_pin(page):
    """Layers say they are shown once an image is fed; nothing can be pinned before that."""
    for name in ("conv1", "output"):
        layer = page.get_by_test_id(f"layer-{name}")
        expect(layer).to_contain_text("shown once an image is fed")
        assert layer.locator("canvas.map, .cell").count() == 0
    page.get_by_test_id("layer-conv1").click()
    assert page.evaluate("() => CS.net.pinned") is None


def test_a_pinned_unit_says_so_and_hover_leaves_it_and_its_box_alone(page):
    draw(page, [(140, 40), (140, 240)])
    maps = page.get_by_test_id("layer-conv1").locator("canvas.map")
    box = maps.nth(0).bounding_box()
    maps.nth(0).click(position={"x": 3.5 * box["width"] / 28, "y": 3.5 * box["height"] / 28})
    expect(page.get_by_test_id("computation")).to_contain_text("pinned")
    hl = page.get_by_test_id("rf-highlight")
    pinned_box = [hl.get_attribute(f"data-{k}") for k in ("y0", "x0", "y1", "x1")]
    maps.nth(1).hover(position={"x": 20.5 * box["width"] / 28, "y": 20.5 * box["height"] / 28})
    assert [hl.get_attribute(f"data-{k}") for k in ("y0", "x0", "y1", "x1")] == pinned_box
    expect(page.get_by_test_id("computation")).to_be_visible()
    page.get_by_test_id("unpin").click()
    maps.nth(1).hover(position={"x": 20.5 * box["width"] / 28, "y": 20.5 * box["height"] / 28})
    assert hl.get_attribute("data-y0") == "18"


def test_the_panel_keeps_its_height_so_the_layers_do_not_jump(page):
    """Hovering units of layers with different panels (a kernel of 6 slices, a pool's one
    line) must not move the layers under a still page."""
    draw(page, [(140, 40), (140, 240)])
    conv2 = page.get_by_test_id("layer-conv2")
    conv2.locator("canvas.map").first.hover()  # scrolls once, so that conv2 is in view
    tops = [conv2.bounding_box()["y"]]
    for name, i in (("pool2", 0), ("conv2", 5), ("pool1", 2), ("conv2", 1)):
        box = page.get_by_test_id(f"layer-{name}").locator("canvas.map").nth(i).bounding_box()
        if not 0 < box["y"] + box["height"] / 2 < 900:
            continue  # off screen: moving there would scroll
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_timeout(50)
        tops.append(conv2.bounding_box()["y"])
    assert len(tops) >= 3 and max(tops) - min(tops) < 1, tops
    assert "kernel" in page.get_by_test_id("inspect").inner_text() or "pool" in page.get_by_test_id("inspect").inner_text()


def test_clicking_an_output_unit_explains_its_logit_and_softmax(page):
    draw(page, [(140, 40), (140, 240)])
    expect(page.get_by_test_id("first-guess")).to_have_text("1")
    page.get_by_test_id("layer-output").locator(".cell").nth(1).click()
    comp = page.get_by_test_id("computation")
    expect(comp).to_contain_text("softmax")
    p1 = float(page.get_by_test_id("prob-bar-1").get_attribute("data-probability"))
    assert float(comp.get_attribute("data-probability")) == pytest.approx(p1, abs=0.02)
    # the logit, from the weights written out, is the network's own (8-bit layers in between)
    logit = page.evaluate("() => CS.net.acts.output.value(0, 1)")
    span = page.evaluate("() => CS.net.acts.output.layer.map_max[0] - CS.net.acts.output.layer.map_min[0]")
    assert float(comp.get_attribute("data-z")) == pytest.approx(logit, abs=0.05 * max(1.0, span))


def test_units_are_reachable_with_the_keyboard(page):
    draw(page, [(140, 40), (140, 240)])
    first = page.get_by_test_id("layer-conv1").locator("canvas.map").first
    first.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_test_id("inspect")).to_contain_text("unit (1, 1)")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("computation")).to_contain_text("unit (1, 1)")


@pytest.mark.parametrize("field, value, words", [("s", "0", "at least 1"), ("p", "-1", "at least 0"),
                                                 ("n", "600", "at most 512"), ("f", "2.5", "whole number")])
def test_the_arithmetic_tab_marks_bad_fields_instead_of_replacing_them(page, field, value, words):
    page.get_by_test_id("tab-arith").click()
    box = page.get_by_test_id(f"arith-{field}")
    box.fill(value)
    assert box.input_value() == value  # what was typed stays
    assert box.get_attribute("aria-invalid") == "true"
    assert words in page.get_by_test_id("arith-result").inner_text()


def test_the_arithmetic_tab_counts_in_words(page):
    page.get_by_test_id("tab-arith").click()
    for key, v in zip("npfs", (3, 0, 3, 1)):
        page.get_by_test_id(f"arith-{key}").fill(str(v))
    assert "fits 1 time along" in page.get_by_test_id("arith-why").inner_text()
    for key, v in zip("npfs", (5, 0, 3, 3)):
        page.get_by_test_id(f"arith-{key}").fill(str(v))
    assert "after 0 steps" in page.get_by_test_id("arith-why").inner_text() or \
        "after 1 step " in page.get_by_test_id("arith-why").inner_text()


def test_a_dot_is_flagged_as_untrustworthy(page):
    draw(page, [(140, 140), (142, 141)])
    expect(page.get_by_test_id("trust")).to_be_visible()
    expect(page.get_by_test_id("trust")).to_contain_text("tiny")
