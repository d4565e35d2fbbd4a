"""The Train tab's API: one training at a time in its own process, progress as server-sent
events, stop/resume ending in the very run the CLI trains, bad requests refused before
anything is written."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from convscope.cli import main
from convscope.web import training


def _app(tmp_path) -> FastAPI:
    app = FastAPI()
    app.include_router(training.router)
    app.state.runs_root = str(tmp_path / "runs")
    app.state.train_defaults = {"threads": 1}
    return app


def _wait(trainer, states, timeout=120.0):
    deadline = time.monotonic() + timeout
    while trainer.state not in states:
        assert time.monotonic() < deadline, f"still {trainer.state}: {trainer.message} {trainer.stderr_tail[-3:]}"
        time.sleep(0.05)


@pytest.fixture
def client(tmp_path):
    app = _app(tmp_path)
    with TestClient(app) as c:
        yield c, app
    trainer = getattr(app.state, "trainer", None)
    if trainer is not None:
        trainer.kill()


def test_stop_and_resume_end_in_the_run_the_cli_trains(client, tmp_path):
    c, app = client
    out = tmp_path / "page"
    spec = {"model": "lenet5", "data": "synthetic", "epochs": 2, "batch_size": 32, "out": str(out), "pace_ms": 30}
    r = c.post("/api/train/start", json=spec)
    assert r.status_code == 202, r.text
    trainer = app.state.trainer
    second = c.post("/api/train/start", json=dict(spec, out=str(tmp_path / "other")))
    assert second.status_code == 409 and "one training at a time" in second.json()["detail"]
    assert not (tmp_path / "other").exists()
    _wait(trainer, {"running"})
    while sum(e["type"] == "step" for e in trainer.events) < 4:
        time.sleep(0.05)
    assert c.post("/api/train/pause").status_code == 200
    seq = trainer.seq
    time.sleep(0.6)
    assert trainer.seq == seq  # paused: no step events
    assert c.post("/api/train/stop").status_code == 200  # stopping a paused run
    _wait(trainer, {"stopped"})
    stopped_at = [e for e in trainer.events if e["type"] == "step"][-1]
    assert (stopped_at["epoch"], stopped_at["step"]) < (1, 54)  # stopped inside the run (54 steps an epoch)
    assert c.post("/api/train/resume").status_code == 200
    _wait(trainer, {"done", "error"})
    assert trainer.state == "done", trainer.message
    kinds = [e["type"] for e in trainer.events]
    assert kinds.count("hello") == 2 and kinds.count("epoch") == 2 and "probe" in kinds
    probe = next(e for e in trainer.events if e["type"] == "probe")
    assert probe["kernels"]["layer"] == "conv1" and probe["kernels"]["shape"][0] == 6 and len(probe["strip"]) == 10

    cli = tmp_path / "cli"
    assert main(["train", "--model", "lenet5", "--data", "synthetic", "--epochs", "2", "--batch-size", "32",
                 "--threads", "1", "--out", str(cli), "--quiet"]) == 0
    a, b = load_file(str(out / "model.safetensors")), load_file(str(cli / "model.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0
    ca, cb = (json.loads((p / "config.json").read_text()) for p in (out, cli))
    assert ca["recipe"] == cb["recipe"] and ca["model"] == cb["model"] and ca["seed"] == cb["seed"]
    # the finished run is what the app now serves
    assert app.state.explorer.run_dir == str(out)


def test_events_stream_at_least_once_a_second(client):
    c, app = client
    got: list[tuple[float, str]] = []

    def read():
        with c.stream("GET", "/api/train/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data:"):
                    got.append((time.monotonic(), line))
                if len(got) >= 3:
                    return

    t = threading.Thread(target=read, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(10)
    assert len(got) >= 3 and got[-1][0] - t0 < 4.5  # idle, it still says where it stands every second
    assert json.loads(got[0][1][5:])["state"] == "idle"


@pytest.mark.parametrize("body, message", [
    ({"model": "vgg11", "data": "mnist"}, "does not fit mnist"),
    ({"model": "nope", "data": "mnist"}, "unknown model 'nope'"),
    ({"model": "lenet5", "data": "cifar10"}, "cifar"),
    ({"model": "lenet5", "data": "folder:/no/such/folder"}, "/no/such/folder"),
    ({"model": "lenet5", "data": "mnist", "epochs": 0}, "epochs 0 is out of range"),
    ({"model": "lenet5", "data": "mnist", "epochs": "many"}, "epochs must be a number"),
])
def test_impossible_requests_get_a_clear_422_and_nothing_is_written(client, tmp_path, body, message):
    c, app = client
    r = c.post("/api/train/start", json=body)
    assert r.status_code == 422 and message in r.json()["detail"], r.text
    assert not (tmp_path / "runs").exists()
    assert c.get("/api/train/status").json()["state"] == "idle"


def test_unwritable_folder_and_an_existing_run_are_refused(client, tmp_path):
    c, _ = client
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    r = c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "out": str(blocker / "run")})
    assert r.status_code == 422 and "cannot write the run folder" in r.json()["detail"]
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            r = c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "out": str(locked / "run")})
            assert r.status_code == 422 and "cannot write the run folder" in r.json()["detail"]
            assert list(locked.iterdir()) == []
        finally:
            locked.chmod(0o700)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "config.json").write_text(json.dumps({"model": {"name": "lenet5", "kwargs": {}}}))
    r = c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "out": str(existing)})
    assert r.status_code == 422 and "already holds a run" in r.json()["detail"]
    assert c.post("/api/train/stop").status_code == 409
    assert c.post("/api/train/resume").status_code == 409
    assert c.post("/api/train/start", content=b"not json").status_code == 400


def test_a_crash_in_the_worker_reaches_the_page(client, tmp_path):
    c, app = client
    r = c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "lr": 90, "batch_size": 16,
                                         "out": str(tmp_path / "nan")})
    assert r.status_code == 202
    _wait(app.state.trainer, {"done", "error"})
    trainer = app.state.trainer
    assert trainer.state == "error" and "the loss became" in trainer.message  # the loop's own message
    assert c.get("/api/train/status").json()["message"] == trainer.message


def test_server_shutdown_stops_the_training_resumably(tmp_path):
    app = _app(tmp_path)
    out = tmp_path / "bye"
    with TestClient(app) as c:
        assert c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "epochs": 3,
                                                "out": str(out), "pace_ms": 50}).status_code == 202
        trainer = app.state.trainer
        _wait(trainer, {"running"})
    _wait(trainer, {"stopped"}, timeout=40)  # leaving the client is the server's shutdown
    assert (out / "state" / "state.pt").is_file() and (out / "config.json").is_file()
