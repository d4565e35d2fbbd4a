"""`convscope units` and `convscope tuning` end to end: JSON keys, files, and one-line errors."""
from __future__ import annotations

import json

import pytest

from convscope.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_units_json(lenet_run, tmp_path, capsys):
    code, out, _ = _run(capsys, "units", str(lenet_run), "--layer", "conv2", "--top", "4", "--split", "test",
                        "--out", str(tmp_path), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["layer"] == "conv2" and data["method"] == "patches"
    assert [c["channel"] for c in data["channels"]] == list(range(16))
    for c in data["channels"]:
        acts = [t["activation"] for t in c["top"]]
        assert len(acts) == 4 and acts == sorted(acts, reverse=True)
        assert set(c["top"][0]) >= {"index", "y", "x", "activation"}
    assert (tmp_path / "units-conv2.png").stat().st_size > 1000


def test_units_optimize_and_hierarchy(lenet_run, tmp_path, capsys):
    code, out, _ = _run(capsys, "units", str(lenet_run), "--layer", "all", "--method", "optimize", "--steps", "16",
                        "--split", "test", "--out", str(tmp_path), "--json")
    assert code == 0
    data = json.loads(out)
    assert [d["layer"] for d in data["layers"]] == ["conv1", "conv2"]
    for d in data["layers"]:
        for c in d["channels"]:
            assert c["best_patch_activation"] == c["top"][0]["activation"]
            assert isinstance(c["optimized_activation"], float)
    assert (tmp_path / "hierarchy.png").is_file() and (tmp_path / "units-conv1-optimized.png").is_file()


def test_tuning_json_and_verdict(lenet_run, tmp_path, capsys):
    code, out, _ = _run(capsys, "tuning", str(lenet_run), "--layer", "conv1", "--out", str(tmp_path), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["layer"] == "conv1" and len(data["units"]) == 6
    for u in data["units"]:
        assert 0 <= u["preferred_orientation"] < 180 and 0 <= u["osi"] <= 1
    import statistics

    assert data["median_osi"] == pytest.approx(statistics.median(u["osi"] for u in data["units"]))
    word = "more" if data["median_osi"] > data["baseline_median_osi"] else "less"
    assert f"are {word} orientation-selective" in data["verdict"]
    assert (tmp_path / "tuning-conv1.png").is_file()
    code, out, _ = _run(capsys, "tuning", str(lenet_run), "--layer", "conv1", "--out", str(tmp_path))
    assert code == 0 and "median OSI" in out


@pytest.mark.parametrize("argv, words", [
    (["--layer", "nope"], ["no layer named 'nope'", "conv1, pool1, conv2, pool2"]),
    (["--layer", "fc1"], ["fc1 is a Linear", "conv1"]),
    (["--layer", "conv1", "--channels", "9"], ["channels 0-5"]),
])
def test_bad_input_is_one_line(lenet_run, tmp_path, capsys, argv, words):
    for command in ("units", "tuning"):
        if command == "tuning" and "--channels" in argv:
            continue
        code, out, err = _run(capsys, command, str(lenet_run), *argv, "--out", str(tmp_path))
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith(f"convscope {command}: error: ")
        for w in words:
            assert w in err


def test_unwritable_out_is_one_line(lenet_run, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for command in ("units", "tuning"):
        code, _, err = _run(capsys, command, str(lenet_run), "--layer", "conv1", "--out", str(blocker / "sub"))
        assert code == 2 and err.count("\n") == 1 and "--out" in err and str(blocker) in err


def test_a_name_needs_data(tmp_path, capsys):
    code, _, err = _run(capsys, "units", "lenet5", "--layer", "conv1", "--out", str(tmp_path))
    assert code == 2 and "--data" in err
    code, out, _ = _run(capsys, "units", "lenet5", "--layer", "conv1", "--data", "mnist", "--split", "test",
                        "--top", "2", "--out", str(tmp_path), "--json")
    assert code == 0 and len(json.loads(out)["channels"]) == 6


def test_tuning_a_name_is_its_own_baseline(tmp_path, capsys):
    code, out, _ = _run(capsys, "tuning", "lenet5", "--layer", "conv1", "--out", str(tmp_path), "--json")
    data = json.loads(out)
    assert code == 0 and data["median_osi"] == data["baseline_median_osi"]
    assert "its own baseline" in data["verdict"]
