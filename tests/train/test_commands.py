"""convscope train / evaluate / predict through the CLI, in-process."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from convscope.cli import main
from convscope.train.checkpoint import load


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--model", "lenet5", "--data", "synthetic", "--epochs", "2", "--batch-size", "64",
                 "--lr", "0.05", "--out", str(out), "--quiet"]) == 0
    return out


def test_train_json(tmp_path, capsys, synthetic):
    out = tmp_path / "r"
    assert main(["train", "--data", "synthetic", "--epochs", "1", "--out", str(out), "--json", "--quiet",
                 "--model-arg", "dropout=0.1", "--schedule", "cosine", "--optimizer", "adamw", "--lr", "0.003"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["epochs"] == 1 and res["run"] == str(out)
    # the reported accuracy is the saved model's on the validation split, recounted by hand
    model, _ = load(out)
    with torch.no_grad():
        hits = (model(synthetic.normalize(synthetic.val.images)).argmax(1) == synthetic.val.labels).sum().item()
    assert res["final"]["val_top1"] == pytest.approx(hits / len(synthetic.val.labels), abs=1e-6)
    assert res["final"]["val_top1"] > 0.5  # one epoch of adamw learns this easy set (chance: 0.1)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == {"name": "lenet5", "kwargs": {"dropout": 0.1, "num_classes": 10, "in_chans": 1}}
    assert cfg["recipe"]["optimizer"] == "adamw" and cfg["recipe"]["schedule"] == "cosine"


def test_evaluate_json_and_confusion_png(run, capsys):
    assert main(["evaluate", str(run), "--data", "synthetic", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"top1", "top5", "per_class", "n"} <= res.keys()
    assert res["n"] == 500 and len(res["per_class"]) == 10 and res["top1"] > 0.8
    png = run / "confusion-synthetic-test.png"
    assert res["confusion_png"] == str(png) and Image.open(png).size[0] > 100
    assert main(["evaluate", str(run), "--split", "val"]) == 0  # dataset from the run's config
    assert "synthetic val (220 images): top-1" in capsys.readouterr().out


def test_predict_json_matches_the_model_applied_by_hand(run, tmp_path, synthetic, capsys):
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(synthetic.test.images[i, 0].numpy()).save(p)
        paths.append(str(p))
    assert main(["predict", str(run), *paths, "--top", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    model, _ = load(run)
    with torch.no_grad():
        probs = model(synthetic.normalize(synthetic.test.images[:3])).softmax(1)
    assert [r["image"] for r in res] == paths
    for r, p in zip(res, probs):
        assert [t["index"] for t in r["top"]] == p.topk(3).indices.tolist()
        assert r["top"][0]["label"] == synthetic.classes[r["top"][0]["index"]]
        assert r["top"][0]["probability"] == pytest.approx(p.max().item(), abs=1e-5)


def test_predict_bad_images_name_the_file(run, tmp_path, capsys):
    assert main(["predict", str(run), str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert main(["predict", str(run), str(bad)]) == 2
    assert "notes.png" in capsys.readouterr().err


def test_cli_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["train", "--model", "nope", "--data", "synthetic", "--out", str(tmp_path / "x")]) == 2
    assert "convscope train: error: unknown model 'nope'" in capsys.readouterr().err
    assert main(["train", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "none")]) == 2
    assert "no run folder" in capsys.readouterr().err
