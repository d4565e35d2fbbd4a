"""The server fails well too: no absolute paths, JSON only as JSON, a quiet Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from .conftest import SRC

pytestmark = pytest.mark.xdist_group("web")


@pytest.fixture(scope="module")
def client(finished_run):
    from fastapi.testclient import TestClient

    from convscope.web import create_app

    with TestClient(create_app(finished_run), base_url="http://127.0.0.1") as c:
        yield c


def test_health_names_the_run_without_its_path(client, finished_run):
    body = client.get("/api/health").json()
    assert body["run"] == finished_run.name
    assert str(finished_run.parent) not in json.dumps(body)
    assert str(finished_run.parent) not in client.get("/api/model").text


GOOD = {"image": [[0.0] * 28 for _ in range(28)]}


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x",
                                   "image/png", "text/html; charset=utf-8"])
def test_json_under_another_content_type_is_415(client, ctype):
    res = client.post("/api/predict", content=json.dumps(GOOD), headers={"Content-Type": ctype})
    assert res.status_code == 415, res.text
    assert "application/json" in res.json()["detail"]


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", None])
def test_json_as_json_is_answered(client, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    res = client.post("/api/predict", content=json.dumps(GOOD), headers=headers)
    assert res.status_code == 200, res.text
    assert len(res.json()["probabilities"]) == 10


def test_ctrl_c_while_a_client_is_mid_body_prints_no_traceback(finished_run):
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "convscope", "serve", "--run", str(finished_run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "open http" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "open http" in line, proc.stderr.read()
        port = int(line.split("127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"image\": [[0")
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err and "CancelledError" not in err, err
    assert proc.returncode in (0, 130), err
