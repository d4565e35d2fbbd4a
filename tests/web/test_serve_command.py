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
    (["serve", "--answer-processes", "many"], "--answer-processes"),
    (["serve", "--answer-processes", "-1"], "--answer-processes"),
    (["serve", "--answer-processes", "2", "--workers", "2"], "--workers 1"),
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


def test_an_rgb_run_of_another_size_is_served(tmp_path):
    """A 3x32x32 run: once refused ("28x28 only"), now described and answered."""
    from fastapi.testclient import TestClient

    from convscope.models import create_model
    from convscope.train.checkpoint import save_run
    from convscope.web import create_app

    run = save_run(tmp_path / "cifar", create_model("convnet_small", in_chans=3),
                   {"model": {"name": "convnet_small", "kwargs": {"in_chans": 3}},
                    "input_size": [3, 32, 32], "classes": [str(i) for i in range(10)],
                    "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
                    "preprocessing": {"kind": "resize", "size": [32, 32], "channels": 3}})
    with TestClient(create_app(run)) as c:
        assert c.get("/api/model").json()["input_size"] == [3, 32, 32]
        rgb = [[[0.9, 0.1, 0.1]] * 40] * 40
        body = c.post("/api/predict", json={"file": _png_url(rgb)}).json()
    assert len(body["input"]) == 3 and len(body["input"][0]) == 32  # the three channels fed
    assert body["input"][0][5][5] == pytest.approx(0.9, abs=0.01) and body["input"][1][5][5] == pytest.approx(0.1, abs=0.01)


def _png_url(rgb) -> str:
    import base64
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.asarray(rgb) * 255).round().astype(np.uint8), "RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("argv, words", [
    (["serve", "--model", "resnet_nineteen"], "unknown model"),
    (["serve", "--model", "torchvision:nosuchnet"], "nosuchnet"),
    (["serve", "--run", "x", "--model", "resnet18"], "not allowed with"),
])
def test_bad_model_names_exit_2_in_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_torchvision_offline_is_one_clear_line(capsys, monkeypatch):
    """Without network and without the weights in torch's cache, the message says where to put them."""
    import urllib.request

    from convscope.transfer.sources import _weights_entry, cache_path

    if cache_path(_weights_entry("resnet18", None)).is_file():
        pytest.skip("torchvision's resnet18 weights are cached here; nothing to download")

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["serve", "--model", "torchvision:resnet18", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "resnet18" in err and "Offline" in err


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
        batching = health.pop("batching")
        assert health == {"status": "ok", "model": "lenet5", "run": run.name, "dataset": "mnist",
                          "classes": [str(i) for i in range(10)], "random_weights": False, "origin": run.name}
        assert batching["max_batch"] == 32
        # one server process computes its answers in answer processes (one per core here)
        from convscope.web.pool import default_processes

        expected = default_processes() if workers == 1 else 0
        assert (batching["answer_processes"] or {}).get("processes", 0) == expected
        with urllib.request.urlopen(url + "/", timeout=10) as r:
            assert b'data-testid="draw-canvas"' in r.read()
    finally:
        alive = proc.poll() is None  # still serving when asked to stop, not crashed on its own
        proc.terminate()
        code = proc.wait(15)
    assert alive and code in (0, -signal.SIGTERM), f"serve ended with {code} (alive: {alive})"


@pytest.mark.parametrize("damage", ["weights", "config", "no-weights"])
def test_a_damaged_run_exits_2_in_one_line(tmp_path, capsys, damage):
    run = _run(tmp_path)
    if damage == "weights":
        (run / "model.safetensors").write_bytes(b"\x00" * 64)
    elif damage == "config":
        (run / "config.json").write_text("{not json")
    else:
        (run / "model.safetensors").unlink()
    assert main(["serve", "--run", str(run), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convscope serve: error:") and "\n" not in err and str(run) in err
