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
    with TestClient(create_app(run), base_url="http://127.0.0.1") as c:  # the guard answers this machine's names
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
        assert health == {"status": "ok", "model": "lenet5", "version": 1, "run": run.name, "dataset": "mnist",
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


# ---- a server that holds under abuse ------------------------------------------------------

def _half_open(url: str, n: int) -> list[socket.socket]:
    """`n` connections that send half a request header and never finish it."""
    host, port = url.split("//")[1].split(":")
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Never-Ends: ")
        socks.append(s)
    return socks


def _closed_by_server(socks: list[socket.socket], within_s: float) -> int:
    """How many of `socks` the server closed (EOF or reset) within `within_s`."""
    import selectors

    waiting, closed = set(socks), 0
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + within_s
        while waiting and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                try:
                    data = key.fileobj.recv(1024)
                except ConnectionResetError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    waiting.discard(key.fileobj)
                    closed += 1
    return closed


def _health(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/api/health", timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_half_open_connections_cannot_starve_the_server():
    """320 sockets that never finish their header: /api/health still answers, and the server
    closes each of them once the header deadline has passed (uvicorn alone never does)."""
    from convscope.web import create_app
    from convscope.web.live import live_server

    app = create_app(model="lenet5", processes=0)
    with live_server(app, header_deadline_s=1.0) as url:
        socks = _half_open(url, 320)
        try:
            assert _health(url) == 200
            assert _closed_by_server(socks, within_s=60) == len(socks)
            assert _health(url) == 200
        finally:
            for s in socks:
                s.close()


def test_a_slow_but_complete_header_within_the_deadline_is_answered():
    from convscope.web import create_app
    from convscope.web.live import live_server

    with live_server(create_app(model="lenet5", processes=0), header_deadline_s=3.0) as url:
        host, port = url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            time.sleep(0.5)
            s.sendall(b"Connection: close\r\n\r\n")
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in reply


def test_beyond_the_connection_cap_requests_get_503_until_the_idle_ones_are_closed():
    from convscope.web import create_app
    from convscope.web.live import live_server

    with live_server(create_app(model="lenet5", processes=0), header_deadline_s=1.0, max_connections=16) as url:
        socks = _half_open(url, 20)
        try:
            assert _health(url) == 503  # 21 open connections >= the cap of 16
            assert _closed_by_server(socks, within_s=60) == len(socks)
            assert _health(url) == 200
        finally:
            for s in socks:
                s.close()


def test_serve_settings_cap_connections_and_close_slow_headers():
    from convscope.web.live import HEADER_DEADLINE_S, KEEP_ALIVE_S, HeaderDeadline, server_settings

    settings = server_settings()
    assert issubclass(settings["http"], HeaderDeadline) and settings["http"].header_deadline_s == HEADER_DEADLINE_S
    assert settings["timeout_keep_alive"] == KEEP_ALIVE_S and 256 <= settings["limit_concurrency"] <= 2048


def test_off_loopback_serve_prints_a_token_url_and_every_route_needs_it(tmp_path):
    """--host 0.0.0.0: the printed URL carries ?token=; without it a request is refused."""
    run = _run(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "convscope", "serve", "--run", str(run), "--host", "0.0.0.0",
                             "--port", "0", "--answer-processes", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "open http://" in line:
                url = line.split("open ")[1].split()[0]
        assert url and "/?token=" in url, "serve did not print a URL with its token"
        base, token = url.split("/?token=")
        assert len(token) >= 32
        assert _health(base) == 401
        req = urllib.request.Request(base + "/api/health", headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.load(r)["status"] == "ok"
        with urllib.request.urlopen(url, timeout=30) as r:  # the printed URL opens the page, sets the cookie
            assert "convscope_token=" in r.headers["Set-Cookie"]
    finally:
        proc.terminate()
        proc.wait(30)
