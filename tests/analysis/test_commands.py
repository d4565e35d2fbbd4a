"""`convscope models`, `summary` and `compare` through the real CLI entry point."""
from __future__ import annotations

import json

import pytest
import torch
import torchvision

from convscope.analysis import summary
from convscope.cli import main
from convscope.models import create_model


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json_counts_real_parameters(capsys):
    code, out, _ = _run(capsys, "models", "lenet*", "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert sorted(rows) == ["lenet5", "lenet5_harley"]
    for name, row in rows.items():
        assert row["default_input_size"] == [1, 28, 28]
        assert row["params"] == sum(p.numel() for p in create_model(name).parameters())


def test_models_table_and_no_match(capsys):
    code, out, _ = _run(capsys, "models")
    # LeCun's widths (120-84-10) and Harley's (120-100-10), counted by hand
    lecun = (25 * 6 + 6) + (25 * 6 * 16 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    harley = (25 * 6 + 6) + (25 * 6 * 16 + 16) + (400 * 120 + 120) + (120 * 100 + 100) + (100 * 10 + 10)
    assert code == 0 and f"{lecun:,}" in out and f"{harley:,}" in out
    code, _, err = _run(capsys, "models", "nothing*")
    assert code == 2 and "no model matches 'nothing*'" in err


def test_summary_name_json_is_to_dict(capsys):
    code, out, _ = _run(capsys, "summary", "lenet5", "--json")
    assert code == 0 and json.loads(out) == summary("lenet5").to_dict()


def test_summary_of_a_run_reads_its_config(capsys, lenet_run):
    code, out, _ = _run(capsys, "summary", str(lenet_run), "--json")
    assert code == 0
    d = json.loads(out)
    assert d["model"].startswith("lenet5") and d["input_size"] == [1, 28, 28] and d["total_params"] == sum(
        p.numel() for p in create_model("lenet5").parameters())  # torch's own count, whatever lenet5's widths
    code, out, _ = _run(capsys, "summary", str(lenet_run))
    assert code == 0 and "MACs = multiply-accumulates" in out


def test_summary_bad_input(capsys, tmp_path):
    code, _, err = _run(capsys, "summary", "lenet5", "--input", "1x8x8")
    assert code == 2 and "conv2" in err and "1x12x12" in err
    code, _, err = _run(capsys, "summary", "vgg17")
    assert code == 2 and "unknown model 'vgg17'" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, "summary", str(empty))
    assert code == 2 and "config.json is missing" in err
    (empty / "config.json").write_text(json.dumps({"dataset": "mnist"}))
    code, _, err = _run(capsys, "summary", str(empty))
    assert code == 2 and "names no model" in err


def test_compare_measures_and_cites(capsys, tmp_path):
    png = tmp_path / "zoo.png"
    code, out, _ = _run(capsys, "compare", "lenet5", "resnet18", "--json", "--out", str(png))
    assert code == 0 and png.stat().st_size > 10_000
    d = json.loads(out)
    assert "lenet5" in d["skipped"]
    (row,) = d["models"]
    reference = torchvision.models.resnet18()
    assert row["params"] == sum(p.numel() for p in reference.parameters())
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert round(row["macs"] / 1e9, 3) == weights.meta["_ops"]  # torchvision's "GFLOPS" are multiply-adds
    assert row["top1"] == 69.758 and "ResNet18_Weights" in row["source"]


def test_accuracy_table_cites_every_row_and_matches_torchvision():
    from torchvision.models import get_model_weights

    from convscope.analysis.compare import accuracies

    table = accuracies()
    assert "lenet5" not in table
    for name, entry in table.items():
        assert entry["source"] and entry["cite"] and 50 < entry["top1"] < 90, name
        if entry["source"].startswith("torchvision"):
            weights = get_model_weights(name).IMAGENET1K_V1
            assert entry["top1"] == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
            s = summary(name)
            assert weights.meta["num_params"] == s.params_in_forward  # googlenet: aux heads left out
            assert round(s.total_macs / 1e9, 3) == weights.meta["_ops"]


def test_compare_nothing_to_compare(capsys):
    code, _, err = _run(capsys, "compare", "lenet5")
    assert code == 2 and "published ImageNet accuracy" in err
