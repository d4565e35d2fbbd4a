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
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    helptext = subprocess.run([sys.executable, "-m", "convscope", "--help"], capture_output=True, text=True,
                              timeout=120).stdout
    assert "conv " in helptext and "(N - F + 2P)/S + 1" in helptext
