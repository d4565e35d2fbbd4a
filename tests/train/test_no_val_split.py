"""Training with no validation split (--val-fraction 0, and --test-fraction 0 for data without a
test set): every image trains, the val figures are null and said so, nothing is picked by them."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from convscope.cli import main
from convscope.train import evaluate, train
from convscope.train.checkpoint import load
from convscope.train.plots import plot_curves

FAST = dict(model="lenet5", data="synthetic", epochs=2, batch_size=64, lr=0.05)


@pytest.fixture(scope="module")
def no_val_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("noval") / "run"
    train(out=out, val_fraction=0.0, progress=False, **FAST)
    return out


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_every_train_image_trains_and_the_val_keys_are_null(no_val_run, synthetic):
    rows = _rows(no_val_run)
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:  # DESIGN's keys all there; the val ones null, not 0 (0 would read as "all wrong")
        assert {"epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "seconds"} <= r.keys()
        assert r["val_loss"] is None and r["val_top1"] is None and r["val_top5"] is None
        assert r["train_loss"] > 0
    cfg = json.loads((no_val_run / "config.json").read_text())
    # synthetic's default keeps 10% of its 2,200 pool images for validation: here all 2,200 train
    assert len(synthetic.train) == 1980
    assert cfg["split"] == {"seed": 0, "val_fraction": 0.0, "test_fraction": None,
                            "train": 2200, "val": 0, "test": 500}
    assert cfg["result"]["val_top1"] is None
    assert Image.open(no_val_run / "curves.png").size[0] > 100


def test_the_test_split_still_scores_like_plain_torch(no_val_run, synthetic):
    model, _ = load(no_val_run)
    with torch.no_grad():
        hits = (model(synthetic.normalize(synthetic.test.images)).argmax(1) == synthetic.test.labels).sum().item()
    res = evaluate(no_val_run)
    assert res["n"] == 500 and res["top1"] == pytest.approx(hits / 500)
    from types import SimpleNamespace

    from convscope.web.samples import Samples

    samples = Samples(SimpleNamespace(config=json.loads((no_val_run / "config.json").read_text()), run_dir=no_val_run),
                      guesses=None)  # the split alone: nothing is guessed
    assert samples.split_name == "test" and torch.equal(samples.labels, synthetic.test.labels)


def test_progress_and_result_line_say_there_is_no_validation_split(tmp_path, capsys):
    train(out=tmp_path / "run", val_fraction=0.0, **FAST)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and all("no validation split" in line and "img/s" in line for line in lines)
    assert "val_top1" not in captured.err and "nan" not in captured.err.lower()
    out = captured.out.strip().splitlines()
    assert len(out) == 1 and "val top-1 n/a (no validation split" in out[0] and "best" not in out[0]


def test_evaluate_split_val_of_such_a_run_is_one_clear_line(no_val_run, capsys):
    assert main(["evaluate", str(no_val_run), "--split", "val"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--val-fraction 0" in err[0] and "no val split" in err[0] and "--split test" in err[0]


def test_both_fractions_zero_on_offline_mnist_leaves_nothing_to_evaluate(tmp_path, capsys):
    out = tmp_path / "all"
    assert main(["train", "--model", "lenet5", "--data", "mnist", "--epochs", "1", "--val-fraction", "0",
                 "--test-fraction", "0", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["split"] == {
        "seed": 0, "val_fraction": 0.0, "test_fraction": 0.0, "train": 5000, "val": 0, "test": 0}
    capsys.readouterr()
    # the default test split of mnist would be 1,000 digits this run trained on: refused, not scored
    for split in ("test", "val"):
        assert main(["evaluate", str(out), "--split", split]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--{split}-fraction 0" in err[0] and "--data" in err[0]
    assert main(["evaluate", str(out), "--data", "mnist", "--split", "test"]) == 2  # the same data by name
    capsys.readouterr()
    assert main(["evaluate", str(out), "--split", "train", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 5000
    # the explorer's samples of such a run are its training digits, and say so
    from types import SimpleNamespace

    from convscope.web.samples import Samples

    cfg = json.loads((out / "config.json").read_text())
    samples = Samples(SimpleNamespace(config=cfg, run_dir=out), guesses=None)
    assert samples.split_name == "train" and len(samples.labels) == 5000


def test_plateau_needs_a_validation_split_and_says_so_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="--schedule plateau .* no validation split"):
        train(out=tmp_path / "run", val_fraction=0.0, schedule="plateau", progress=False, **FAST)
    assert not (tmp_path / "run").exists()


def test_resume_keeps_the_split_and_refuses_another(tmp_path):
    run = train(out=tmp_path / "run", val_fraction=0.0, progress=False, **dict(FAST, epochs=1))
    train(out=run, resume=True, epochs=2, progress=False)  # no --val-fraction: the run's own
    assert [r["val_top1"] for r in _rows(run)] == [None, None]
    with pytest.raises(ValueError, match="was trained with --val-fraction 0.0, not 0.1"):
        train(out=run, resume=True, epochs=3, val_fraction=0.1, progress=False)


def test_a_val_fraction_for_data_that_brings_its_own_val_split_is_refused(tmp_path):
    for part in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / "imgs" / part / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("L", (8, 8), 40 * i + (100 if cls == "b" else 0)).save(tmp_path / "imgs" / part / cls / f"{i}.png")
    with pytest.raises(ValueError, match="brings its own validation split"):
        train(out=tmp_path / "run", model="lenet5", data=f"folder:{tmp_path / 'imgs'}", val_fraction=0.0,
              epochs=1, progress=False)


def test_curves_cope_with_null_and_mixed_val_rows(tmp_path):
    rows = [{"epoch": 1, "train_loss": 1.0, "val_loss": None, "val_top1": None, "val_top5": None},
            {"epoch": 2, "train_loss": 0.5, "val_loss": 0.6, "val_top1": 0.8, "val_top5": 1.0}]
    plot_curves(rows[:1], tmp_path / "none.png")
    plot_curves(rows, tmp_path / "mixed.png")
    assert Image.open(tmp_path / "none.png").size == Image.open(tmp_path / "mixed.png").size


def test_lr_find_sweeps_the_same_train_split_as_the_run():
    from convscope.train.lr_find import range_test

    # the sweep stops after one pass over the train split: its step count is that split's batch count
    full, _ = range_test(model="lenet5", data="synthetic", batch_size=64, steps=200, device="cpu", val_fraction=0.0)
    default, _ = range_test(model="lenet5", data="synthetic", batch_size=64, steps=200, device="cpu")
    assert (full.settings["steps"], default.settings["steps"]) == (2200 // 64, 1980 // 64)
