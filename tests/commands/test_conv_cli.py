"""`convscope conv`: the lecture's questions through the command line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from convscope.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["conv", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("stride,size", [("1", 5), ("2", 3)])
def test_valid_setting_shows_the_arithmetic(capsys, stride, size):
    code, out, _ = _run(capsys, "--input", "7", "--kernel", "3", "--stride", stride)
    assert code == 0
    assert f"(7 - 3)/{stride} + 1 = {size}" in out
    assert f"a 7x7 input gives a {size}x{size} output" in out


def test_padding_keeps_7x7(capsys):
    code, out, _ = _run(capsys, "--input", "7", "--kernel", "3", "--padding", "1")
    assert code == 0 and "(7 - 3 + 2*1)/1 + 1 = 7" in out


def test_stride_3_does_not_fit_and_says_what_does(capsys):
    code, out, err = _run(capsys, "--input", "7", "--kernel", "3", "--stride", "3")
    assert code == 2
    assert "(7 - 3)/3 + 1 = 2.33" in out and "not a whole number" in out
    assert "fits with padding: 1 -> 3x3" in out
    assert err.startswith("convscope conv: error:") and "padding 1 (gives 3)" in err


def test_the_fix_works(capsys):
    code, out, _ = _run(capsys, "--input", "7", "--kernel", "3", "--stride", "3", "--padding", "1")
    assert code == 0 and "a 7x7 input gives a 3x3 output" in out


def test_json_valid(capsys):
    code, out, _ = _run(capsys, "--input", "227", "--kernel", "11", "--stride", "4", "--json")
    data = json.loads(out)
    assert code == 0
    assert {"input", "kernel", "stride", "padding", "dilation", "output", "valid", "fixes"} <= data.keys()
    assert data["output"] == 55 and data["valid"] is True   # AlexNet's conv1 on 227x227


def test_alexnet_224_does_not_tile(capsys):
    """The paper's 224x224 input with an 11x11 stride-4 kernel is the famous misfit."""
    code, out, _ = _run(capsys, "--input", "224", "--kernel", "11", "--stride", "4", "--padding", "2", "--json")
    data = json.loads(out)
    assert code == 2 and data["arithmetic"] == "(224 - 11 + 2*2)/4 + 1 = 55.25"
    assert data["output_if_rounded_down"] == 55 and data["fixes"]["padding"] == []


def test_alexnet_224_says_the_strict_answer_and_what_pytorch_does(capsys):
    """Both stories: the lecture's rule (55.25 is not allowed) and torch's floor (55, and what it leaves out)."""
    import torch

    code, out, err = _run(capsys, "--input", "224", "--kernel", "11", "--stride", "4", "--padding", "2")
    assert code == 2 and "55.25 is not a whole number" in out
    conv = torch.nn.Conv2d(1, 1, 11, stride=4, padding=2)
    torch_side = conv(torch.zeros(1, 1, 224, 224)).shape[-1]
    assert torch_side == 55 and f"PyTorch (Conv2d, MaxPool2d) rounds down to {torch_side}x{torch_side}" in out
    # windows start at 0, 4, ..., 216 of the 228-wide padded input and end at 226: column 227 (padding) is left
    last_end = (torch_side - 1) * 4 + 11
    assert 228 - last_end == 1 and "the last 1 row/column of the padded input is never covered" in out
    assert "all of it padding, so no image pixel is lost" in out
    assert "1 before + 2 after -> 55x55" in out and "227 -> 56x56" in out and "223 -> 55x55" in out
    assert err.startswith("convscope conv: error:") and "round down to 55" in err


@pytest.mark.parametrize("n,k,s,p", [(7, 3, 3, 0), (10, 3, 4, 0), (224, 11, 4, 2), (30, 5, 4, 1), (13, 2, 2, 0)])
def test_uncovered_rows_match_torch_on_a_ramp(capsys, n, k, s, p):
    """Oracle: feed torch a one-hot image per row and see which rows no window ever reads."""
    import torch
    import torch.nn.functional as F

    code, out, _ = _run(capsys, "--input", str(n), "--kernel", str(k), "--stride", str(s), "--padding", str(p),
                        "--json")
    data = json.loads(out)
    assert code == 2
    w = torch.ones(1, 1, k, 1)
    never = []
    for row in range(n):
        x = torch.zeros(1, 1, n, 1)
        x[0, 0, row] = 1.0
        if F.conv2d(x, w, stride=(s, 1), padding=(p, 0)).sum() == 0:
            never.append(row)
    assert data["pytorch"]["output"] == F.conv2d(torch.zeros(1, 1, n, 1), w, stride=(s, 1), padding=(p, 0)).shape[2]
    trailing = 0
    while trailing < n and n - 1 - trailing in never:
        trailing += 1
    gaps = [r for r in never if r < n - trailing]
    assert data["pytorch"]["uncovered_input"] == trailing
    assert len(gaps) == data["pytorch"]["skipped_between_windows"] * (data["pytorch"]["output"] - 1) or not gaps
    assert data["pytorch"]["uncovered"] == data["pytorch"]["uncovered_input"] + data["pytorch"]["uncovered_padding"]
    for fix in data["fixes"]["asymmetric_padding"]:  # each suggested unequal padding really tiles
        span = n + fix["left"] + fix["right"] - k
        assert span % s == 0 and span // s + 1 == fix["output"]
    for fix in data["fixes"]["input"]:
        assert (fix["input"] + 2 * p - k) % s == 0


def test_explanation_lives_in_geometry():
    from convscope.geometry import explain

    report = explain(224, 11, 4, 2)
    assert report["valid"] is False and report["pytorch"] == {
        "output": 55, "uncovered": 1, "uncovered_padding": 1, "uncovered_input": 0, "skipped_between_windows": 0}
    assert explain(227, 11, 4)["output"] == 55


def test_json_invalid(capsys):
    code, out, _ = _run(capsys, "--input", "7", "--kernel", "3", "--stride", "3", "--json")
    data = json.loads(out)
    assert code == 2 and data["valid"] is False and data["output"] is None
    assert data["arithmetic"] == "(7 - 3)/3 + 1 = 2.33"
    assert {"padding": 1, "output": 3} in data["fixes"]["padding"]
    assert {"stride": 2, "output": 3} in data["fixes"]["stride"]


def test_dilation(capsys):
    code, out, _ = _run(capsys, "--input", "9", "--kernel", "3", "--dilation", "2")
    assert code == 0 and "spans 5" in out and "(9 - 5)/1 + 1 = 5" in out


@pytest.mark.parametrize("argv,match", [
    (["--input", "0", "--kernel", "3"], "input size must be a positive integer: got 0"),
    (["--input", "7", "--kernel", "3", "--stride", "-1"], "stride must be a positive integer"),
])
def test_bad_values(capsys, argv, match):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and match in err and out == ""


def test_kernel_larger_than_input(capsys):
    code, out, err = _run(capsys, "--input", "2", "--kernel", "5")
    assert code == 2 and "the kernel is larger than the padded input" in out
    assert "fits with padding: 2 -> 2x2" in out and "stride" not in out.splitlines()[-1]
    assert "5 > 2 + 2*0 = 2; use padding >= 2" in err


def test_installed_command_lists_conv_first_and_stays_light():
    """The real console entry point: `conv` is listed in --help and never loads torch."""
    code = ("import sys; from convscope.cli import main; rc = main(['conv', '--input', '7', '--kernel', '3']); "
            "assert 'torch' not in sys.modules; sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    helptext = subprocess.run([sys.executable, "-m", "convscope", "--help"], capture_output=True, text=True,
                              timeout=300).stdout
    assert "conv " in helptext and "(N - F + 2P)/S + 1" in helptext
