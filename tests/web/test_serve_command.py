"""`convscope serve`: clear errors before binding, and a real start on a free port."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from convscope.cli import main

pytestmark = pytest.mark.xdist_group("web")


def _run(tmp_path):
    from convscope.models import create_model
    from convscope.train.checkpoint import save_run

    config = {"model": {"name": "lenet5", "kwargs": {}}, "dataset": "mnist",
              "classes": [str(i) for i in range(10)], "input_size": [1, 28, 28],
              "normalization": {"mean": [0.1307], "std": [0.3081]},
              "preprocessing": {"kind": "digits", "invert": False}}
    return save_run(tmp_path / "run", create_model("lenet5"), config)


@pytest.mark.parametrize("argv, words", [
    (["serve", "--run", "no/such/run"], "no run folder"),
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--threads", "0"], "--threads"),
    (["serve", "--workers", "0"], "--workers"),
])
def test_bad_arguments_exit_2_with_a_message(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("convscope serve: error:") and words in err


def test_a_port_in_use_is_a_clear_error(tmp_path, capsys):
    run = _run(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--run", str(run), "--port", str(port)]) == 2
    assert "--port" in capsys.readouterr().err


def test_a_model_that_is_not_28x28_is_refused(tmp_path, capsys):
    from convscope.models import create_model
    from convscope.train.checkpoint import save_run

    run = save_run(tmp_path / "cifar", create_model("lenet5", in_chans=3, input_size=32),
                   {"model": {"name": "lenet5", "kwargs": {"in_chans": 3, "input_size": 32}},
                    "input_size": [3, 32, 32], "classes": [str(i) for i in range(10)]})
    assert main(["serve", "--run", str(run)]) == 2
    assert "28x28" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_starts_prints_its_address_and_answers(tmp_path, workers):
    run = _run(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "convscope", "serve", "--run", str(run), "--port", "0",
                             "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "http://127.0.0.1:" in line:
                url = line.split("open ")[1].split()[0]
        assert url, "serve did not print its address"
        health = None
        while health is None and time.monotonic() < deadline:  # workers may still be loading
            try:
                with urllib.request.urlopen(url + "/api/health", timeout=10) as r:
                    health = json.load(r)
            except OSError:
                time.sleep(0.2)
        assert health == {"status": "ok", "model": "lenet5", "run": str(run), "dataset": "mnist",
                          "classes": [str(i) for i in range(10)]}
        with urllib.request.urlopen(url + "/", timeout=10) as r:
            assert b'data-testid="draw-canvas"' in r.read()
    finally:
        alive = proc.poll() is None  # still serving when asked to stop, not crashed on its own
        proc.terminate()
        code = proc.wait(15)
    assert alive and code in (0, -signal.SIGTERM), f"serve ended with {code} (alive: {alive})"
