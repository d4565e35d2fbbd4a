"""Error analysis: most-confused pairs, the misclassified list (top losses first) and the gallery."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion
from torch import nn

from convscope.cli import main
from convscope.data import Dataset, Split
from convscope.train import evaluate
from convscope.train.evaluation import most_confused

CLASSES = ["a", "b", "c"]
TRUTH = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
# each image's logits, set by hand: mistakes 0->1 (twice), 2->0 (three times), 1->2 (once)
LOGITS = [[3, 0, 0], [0, 2, 0], [0, 5, 0], [4, 1, 0],
          [0, 3, 1], [1, 0, 2], [0, 4, 0],
          [2, 0, 1], [6, 0, 0], [0, 0, 3], [1.5, 0, 1], [0, 0, 1]]


class Lookup(nn.Module):
    """Reads the image's number from pixel (0, 0) and answers that row of LOGITS."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.tensor(LOGITS, dtype=torch.float32), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = (x[:, 0, 0, 0] * 255).round().long()
        return self.table[i]


def _tiny() -> Dataset:
    n = len(TRUTH)
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    images[:, 0, 2, 2] = torch.linspace(40, 250, n).to(torch.uint8)  # something to see in the gallery
    split = Split(images, torch.tensor(TRUTH))
    return Dataset("tiny", CLASSES, split, split, split, (0.0,), (1.0,), (1, 4, 4), "synthetic", "hand-made")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    png = tmp_path_factory.mktemp("gallery") / "top.png"
    return evaluate(Lookup(), _tiny(), config={"normalization": {"mean": [0.0], "std": [1.0]}},
                    device="cpu", gallery=png, gallery_count=4), png


def test_confusion_and_most_confused_match_sklearn_and_a_hand_count(result):
    res, _ = result
    pred = np.asarray(LOGITS).argmax(1)
    assert res["confusion"] == sk_confusion(TRUTH, pred, labels=[0, 1, 2]).tolist()
    assert res["most_confused"] == [{"truth": "c", "predicted": "a", "count": 3},
                                    {"truth": "a", "predicted": "b", "count": 2},
                                    {"truth": "b", "predicted": "c", "count": 1}]
    assert res["top1"] == pytest.approx(6 / 12) and res["n"] == 12
    assert res["per_class"] == {"a": pytest.approx(2 / 4), "b": pytest.approx(2 / 3), "c": pytest.approx(2 / 5)}


def test_misclassified_lists_every_mistake_highest_loss_first(result):
    res, _ = result
    logits = np.asarray(LOGITS, dtype=np.float64)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = logits.argmax(1)
    wrong = [i for i in range(len(TRUTH)) if pred[i] != TRUTH[i]]
    loss = {i: -np.log(probs[i, TRUTH[i]]) for i in wrong}
    expect = sorted(wrong, key=lambda i: -loss[i])
    got = res["misclassified"]
    assert [m["index"] for m in got] == expect == [8, 2, 5, 1, 7, 10]
    for m in got:
        i = m["index"]
        assert m["truth"] == CLASSES[TRUTH[i]] and m["predicted"] == CLASSES[pred[i]]
        assert m["probability"] == pytest.approx(probs[i, pred[i]], rel=1e-5)
        assert m["truth_probability"] == pytest.approx(probs[i, TRUTH[i]], rel=1e-5)
        assert m["loss"] == pytest.approx(loss[i], rel=1e-5)


def test_gallery_png_is_drawn(result):
    res, png = result
    assert res["gallery_png"] == str(png)
    w, h = Image.open(png).size
    assert w > 300 and h > 150


def test_most_confused_min_count_and_ties():
    conf = torch.tensor([[5, 1, 1], [1, 5, 0], [0, 2, 5]])
    assert most_confused(conf, CLASSES, min_count=2) == [{"truth": "c", "predicted": "b", "count": 2}]
    assert [(p["truth"], p["predicted"]) for p in most_confused(conf, CLASSES)] == \
        [("c", "b"), ("a", "b"), ("a", "c"), ("b", "a")]


def test_evaluate_cli_json_and_gallery(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--batch-size", "64",
                 "--lr", "0.02", "--out", str(run), "--quiet"]) == 0
    gallery = tmp_path / "errors.png"
    assert main(["evaluate", str(run), "--json", "--gallery", str(gallery), "--top-losses", "6"]) == 0
    res = json.loads(capsys.readouterr().out)
    conf = np.asarray(res["confusion"])
    wrong = res["n"] - int(np.trace(conf))
    assert wrong == round(res["n"] * (1 - res["top1"])) == len(res["misclassified"])
    assert sum(p["count"] for p in res["most_confused"]) == wrong
    losses = [m["loss"] for m in res["misclassified"]]
    assert losses == sorted(losses, reverse=True)
    assert all(m["truth"] != m["predicted"] for m in res["misclassified"])
    assert res["gallery_png"] == str(gallery) and Image.open(gallery).size[0] > 300
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"misclassified: {wrong} of {res['n']}" in out
    assert (run / "top-losses-synthetic-test.png").is_file()
    assert main(["evaluate", str(run), "--top-losses", "-1"]) == 2
