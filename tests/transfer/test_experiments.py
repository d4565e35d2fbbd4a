"""transfer-vs-scratch and transferability end to end on tiny data; resuming; the A/B design."""
from __future__ import annotations

import json

import pytest

from convscope.cli import main
from convscope.transfer import transferability as tr
from convscope.transfer.subsets import class_subset, few_shot, per_class_counts


def test_few_shot_and_class_subset(synthetic):
    cut = few_shot(synthetic, 3, seed=1)
    assert set(per_class_counts(cut.train).values()) == {3} and len(cut.test) == len(synthetic.test)
    assert few_shot(synthetic, 3, seed=1).train.images.equal(cut.train.images)  # seeded
    half = class_subset(synthetic, [7, 2], name="two")
    assert half.classes == [synthetic.classes[7], synthetic.classes[2]]
    assert set(half.test.labels.tolist()) == {0, 1}
    assert (half.test.labels == 0).sum() == (synthetic.test.labels == 7).sum()


def test_split_classes_is_a_seeded_partition():
    a, b = tr.split_classes(10, seed=4)
    assert len(a) == len(b) == 5 and sorted(a + b) == list(range(10))
    assert (a, b) == tr.split_classes(10, seed=4) and (a, b) != tr.split_classes(10, seed=5)


def test_transfer_vs_scratch_command(lenet_run, tmp_path, capsys):
    out = tmp_path / "tvs"
    code = main(["transfer-vs-scratch", "--source", str(lenet_run), "--data", "synthetic", "--shots", "2,5",
                 "--epochs", "1", "--min-epoch", "64", "--batch-size", "32", "--threads", "1", "--json",
                 "--out", str(out)])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["k"] for r in result["rows"]] == [2, 5]
    for r in result["rows"]:  # each row is its two cells, and each accuracy a count of test images
        cells = {m: json.loads((out / "cells" / f"k{r['k']}-{m}-r0.json").read_text()) for m in ("finetune", "scratch")}
        for m, cell in cells.items():
            assert r[f"{m}_top1"] == cell["test_top1"] and cell["k"] == r["k"] and cell["method"] == m
            hits = cell["test_top1"] * cell["test_n"]
            assert cell["test_n"] == 500 and abs(hits - round(hits)) < 1e-6, cell
        assert r["gain"] == pytest.approx(r["finetune_top1"] - r["scratch_top1"])
    from PIL import Image

    with Image.open(out / "accuracy_vs_shots.png") as im:
        assert im.format == "PNG" and min(im.size) >= 200
    assert sorted(p.name for p in (out / "cells").iterdir()) == sorted(
        f"k{k}-{m}-r0.json" for k in (2, 5) for m in ("finetune", "scratch"))
    # a different budget in the same folder is refused (the cells would not be comparable)
    assert main(["transfer-vs-scratch", "--source", str(lenet_run), "--data", "synthetic", "--shots", "2",
                 "--epochs", "2", "--out", str(out)]) == 2
    assert "epochs: 1 there, 2 now" in capsys.readouterr().err


def test_transferability_runs_resumes_and_draws(tmp_path, monkeypatch, capsys):
    out = tmp_path / "tr"
    args = ["transferability", "--data", "synthetic", "--subset", "6", "--epochs", "1", "--batch-size", "20",
            "--threads", "1", "--quiet", "--out", str(out)]
    assert main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["layers"] == ["conv1", "conv2", "fc1", "fc2"]
    assert {(r["treatment"], r["n"]) for r in result["table"]} == {(t, n) for t in tr.TREATMENTS for n in range(1, 5)}
    assert len(result["splits"][0]["A"]) == 5 and not set(result["splits"][0]["A"]) & set(result["splits"][0]["B"])
    cell = json.loads((out / "cells" / "r0-AnB-n3.json").read_text())
    assert cell["copied"] == ["conv1", "conv2", "fc1"] and cell["frozen"] == ["conv1", "conv2", "fc1"]
    assert json.loads((out / "cells" / "r0-AnB+-n3.json").read_text())["frozen"] == []
    assert (out / "figure2.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["r0-baseA", "r0-baseB"]

    # resume: only the missing cells run again, the finished ones are read back
    (out / "cells" / "r0-BnB-n2.json").unlink()
    (out / "cells" / "r0-AnB+-n4.json").unlink()
    ran = []
    real = tr._run_cell
    monkeypatch.setattr(tr, "_run_cell", lambda cell, *a, **k: ran.append(cell) or real(cell, *a, **k))
    assert main(args + ["--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert ran == ["r0-BnB-n2", "r0-AnB+-n4"]
    assert again["base"] == result["base"]
