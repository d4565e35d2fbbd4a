"""The Train tab in Chromium: train lenet5 for one epoch from the page, stop, resume, draw on
the finished run, and find the run folder equal to the one the CLI trains with the same seed."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from playwright.sync_api import expect
from safetensors.torch import load_file

from convscope.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("web")]


@pytest.fixture(scope="module")
def train_server(tmp_path_factory):
    from convscope.web import create_app
    from convscope.web.live import live_server

    root = tmp_path_factory.mktemp("train-tab")
    app = create_app(model="lenet5")  # random weights until the training ends
    app.state.runs_root = str(root / "runs")
    app.state.train_folders = [str(root / "no-such-folder")]  # as `convscope serve --train-folder` does
    app.state.train_defaults = {"threads": 1}  # the CLI run below uses --threads 1 too
    with live_server(app) as url:
        yield url, app, root
    trainer = getattr(app.state, "trainer", None)
    if trainer is not None:
        trainer.kill()


def _loss(text: str) -> float | None:
    m = re.search(r"loss ([0-9.]+)", text)
    return float(m.group(1)) if m else None


def test_a_missing_dataset_is_a_clear_message_on_the_page(browser_context, train_server):
    url, app, root = train_server
    page = browser_context.new_page()
    page.goto(url)
    page.wait_for_selector('body[data-ready="1"]', timeout=60000)
    page.get_by_test_id("train-tab").click()
    page.get_by_test_id("train-data").select_option("cifar10")  # no offline copy of CIFAR-10 here
    page.get_by_test_id("train-start").click()
    expect(page.get_by_test_id("train-error")).to_contain_text("cifar", timeout=60000)
    page.get_by_test_id("train-folder").fill("/etc")  # not a folder the server was started with
    page.get_by_test_id("train-start").click()
    expect(page.get_by_test_id("train-error")).to_contain_text("not a folder this server may read", timeout=60000)
    page.get_by_test_id("train-folder").fill(str(root / "no-such-folder"))  # allowed, but missing
    page.get_by_test_id("train-start").click()
    expect(page.get_by_test_id("train-error")).to_contain_text("no-such-folder", timeout=60000)
    # the fields' ranges are the server's (limits.LIMITS), not numbers of the page's own
    from convscope.limits import LIMITS

    epochs = page.get_by_test_id("train-epochs")
    assert (epochs.get_attribute("min"), epochs.get_attribute("max")) == ("1", f"{LIMITS['epochs'].high}")
    assert page.get_by_test_id("train-data").locator("option").count() == 5  # 4 datasets and the one folder
    assert not (root / "runs").exists()
    assert app.state.trainer.state == "idle"
    page.close()


def _draw_line(page) -> None:
    canvas = page.get_by_test_id("draw-canvas")
    box = canvas.bounding_box()
    s = box["width"] / 280
    page.mouse.move(box["x"] + 140 * s, box["y"] + 40 * s)
    page.mouse.down()
    page.mouse.move(box["x"] + 140 * s, box["y"] + 240 * s, steps=12)
    page.mouse.up()
    page.wait_for_function("document.body.dataset.pending === '0'", timeout=60000)


def test_train_tab_end_to_end(browser_context, train_server):
    url, app, root = train_server
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector('body[data-ready="1"]', timeout=60000)
    page.get_by_test_id("train-tab").click()
    expect(page.get_by_test_id("train-start")).to_be_visible()
    page.get_by_test_id("train-model").select_option("lenet5")
    page.get_by_test_id("train-data").select_option("mnist")
    page.get_by_test_id("train-epochs").fill("1")
    page.get_by_test_id("train-pace").select_option("100")  # 28 steps of 100 ms: time to watch
    status = page.get_by_test_id("train-status")
    page.get_by_test_id("train-start").click()

    # at least 3 progress updates, each changing the status text, with a falling loss
    seen: list[str] = []
    for _ in range(600):
        text = status.inner_text()
        if _loss(text) is not None and (not seen or text != seen[-1]):
            seen.append(text)
        step = re.search(r"step (\d+)/", text)
        if len(seen) >= 3 and step and int(step.group(1)) >= 16:
            break
        page.wait_for_timeout(50)
    losses = [_loss(t) for t in seen]
    assert len(seen) >= 3, seen
    steps = page.evaluate("() => window.CS.train.stepLoss.map(p => p[1])")
    assert steps[-1] < steps[0], steps  # the loss falls while we watch
    assert losses[-1] < losses[0], seen
    expect(page.get_by_test_id("train-kernels").locator("canvas")).to_have_count(6)
    expect(page.get_by_test_id("train-strip").locator("figure")).to_have_count(10)

    shots = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "train-tab-while-training.png"), full_page=True)
    page.get_by_test_id("train-stop").click()
    expect(status).to_contain_text("stopped", timeout=60000)
    page.get_by_test_id("train-resume").click()
    expect(status).to_contain_text("is open in the explorer", timeout=120000)
    run = page.get_by_test_id("train-tab").evaluate("() => document.getElementById('view-train').dataset.opened")
    trainer = app.state.trainer
    assert trainer.state == "done" and run == trainer.run
    kinds = [e["type"] for e in trainer.events]
    assert kinds.count("hello") == 2  # two processes: the one stopped and the resumed one

    # the finished run answers a drawing
    page.get_by_test_id("tab-draw").click()
    _draw_line(page)
    fed = torch.tensor(page.evaluate("() => window.CS.net.response.input")).view(1, 1, 28, 28)
    shown = [float(page.get_by_test_id(f"prob-bar-{i}").get_attribute("data-probability")) for i in range(10)]
    from convscope.runs import RunDir

    model, config = RunDir(run).load()
    norm = config["normalization"]
    with torch.no_grad():
        want = model((fed - norm["mean"][0]) / norm["std"][0]).softmax(1)[0]
    assert shown == pytest.approx(want.tolist(), abs=2e-3)
    page.close()
    assert not errors, errors

    # the same training from the command line, same seed: the very same weights
    cli = root / "cli"
    assert main(["train", "--model", "lenet5", "--data", "mnist", "--epochs", "1", "--threads", "1",
                 "--out", str(cli), "--quiet"]) == 0
    a, b = load_file(f"{run}/model.safetensors"), load_file(str(cli / "model.safetensors"))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) == 0
    ra, rb = (json.loads((p / "config.json").read_text()) for p in (Path(run), cli))
    assert ra["recipe"] == rb["recipe"] and ra["seed"] == rb["seed"]
    shutil.rmtree(cli)
