"""The Train tab's API: one training at a time in its own process, progress as server-sent
events, stop/resume ending in the very run the CLI trains, bad requests refused before
anything is written."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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
    app.state.opened = []  # what the explorer was asked to open (create_app's open_run swaps its slot)
    app.state.open_run = app.state.opened.append
    return app


def _wait(trainer, states, timeout=120.0):
    deadline = time.monotonic() + timeout
    while trainer.state not in states:
        assert time.monotonic() < deadline, f"still {trainer.state}: {trainer.message} {trainer.stderr_tail[-3:]}"
        time.sleep(0.05)


@pytest.fixture
def client(tmp_path):
    app = _app(tmp_path)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c, app
    trainer = getattr(app.state, "trainer", None)
    if trainer is not None:
        trainer.kill()


def test_stop_and_resume_end_in_the_run_the_cli_trains(client, tmp_path):
    c, app = client
    out = (tmp_path / "runs" / "page").resolve()
    spec = {"model": "lenet5", "data": "synthetic", "epochs": 2, "batch_size": 32, "out": "page", "pace_ms": 30}
    r = c.post("/api/train/start", json=spec)
    assert r.status_code == 202, r.text
    trainer = app.state.trainer
    second = c.post("/api/train/start", json=dict(spec, out="other"))
    assert second.status_code == 409 and "one training at a time" in second.json()["detail"]
    assert not (tmp_path / "runs" / "other").exists()
    _wait(trainer, {"running"})
    while sum(e["type"] == "step" for e in trainer.events) < 4:
        time.sleep(0.05)
    assert c.post("/api/train/pause", json={}).status_code == 200
    # the step in progress ends and says so; then quiet (unpaused, 30 ms steps would report
    # several times a second): wait for a quiet second, however loaded the machine is
    deadline, steps = time.monotonic() + 120, -1
    while steps != sum(e["type"] == "step" for e in trainer.events):
        assert time.monotonic() < deadline, "the training never went quiet after pause"
        steps = sum(e["type"] == "step" for e in trainer.events)
        time.sleep(1.0)
    time.sleep(1.0)
    assert sum(e["type"] == "step" for e in trainer.events) == steps  # paused: no step events
    assert trainer.proc.poll() is None  # paused, not ended
    assert c.post("/api/train/stop", json={}).status_code == 200  # stopping a paused run
    _wait(trainer, {"stopped"})
    stopped_at = [e for e in trainer.events if e["type"] == "step"][-1]
    assert (stopped_at["epoch"], stopped_at["step"]) < (1, 54)  # stopped inside the run (54 steps an epoch)
    assert c.post("/api/train/resume", json={}).status_code == 200
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
    # the finished run was handed to the explorer, once
    assert app.state.opened == [str(out)]
    assert "is open in the explorer" in trainer.message


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
    t.start()
    t.join(120)  # a hang guard; how often it speaks is the server's own 1 s timer
    assert len(got) >= 3  # idle, it still says where it stands, again and again
    assert json.loads(got[0][1][5:])["state"] == "idle"


@pytest.mark.parametrize("body, message", [
    ({"model": "vgg11", "data": "mnist"}, "does not fit mnist"),
    ({"model": "nope", "data": "mnist"}, "unknown model 'nope'"),
    ({"model": "lenet5", "data": "cifar10"}, "cifar"),
    ({"model": "lenet5", "data": "mnist", "epochs": 0}, "epochs must be a whole number from 1 to 100,000, got 0"),
    ({"model": "lenet5", "data": "mnist", "epochs": 100_001}, "from 1 to 100,000"),  # limits.LIMITS, not 500
    ({"model": "lenet5", "data": "mnist", "epochs": "many"}, "epochs must be a whole number"),
    ({"model": "lenet5", "data": "mnist", "model_kwargs": [1]}, "model_kwargs must be an object"),
    ({"model": "lenet5", "data": "mnist", "model_kwargs": {"num_classes": 84_000_000_000_000}},
     "model_kwargs num_classes must be a number"),
    ({"model": "vgg11", "data": "mnist", "model_kwargs": {"num_classes": 5_000_000}}, "20,"),  # 20 billion weights
    ({"model": "lenet5", "data": "mnist", "model_kwargs": {"num_classes": 3}}, "10 classes"),
    ({"model": "lenet5", "data": "mnist", "out": 7}, "out must be a folder name"),
    ({"model": "lenet5", "data": "mnist", "device": "cuda:7"}, "device cuda:7"),
    ({"model": "lenet5", "data": "mnist", "resume": True}, "unknown training setting 'resume'"),
    ({"model": "lenet5", "data": "mnist", "data_root": "/etc"}, "unknown training setting 'data_root'"),
])
def test_impossible_requests_get_a_clear_422_and_nothing_is_written(client, tmp_path, body, message):
    c, app = client
    r = c.post("/api/train/start", json=body)
    assert r.status_code == 422 and message in r.json()["detail"], r.text
    assert len(r.json()["detail"]) <= training.MAX_DETAIL
    assert not (tmp_path / "runs").exists()
    assert c.get("/api/train/status").json()["state"] == "idle"


def test_a_folder_the_server_was_started_with_is_read_and_checked(client, tmp_path):
    c, app = client
    pets = tmp_path / "pets"
    app.state.train_folders = [str(pets)]
    r = c.post("/api/train/start", json={"model": "lenet5", "data": f"folder:{pets}"})
    assert r.status_code == 422 and str(pets) in r.json()["detail"], r.text  # allowed, but not there
    assert not (tmp_path / "runs").exists()


def _tree(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_crafted_requests_cannot_write_or_read_outside_what_the_server_was_given(client, tmp_path):
    c, app = client
    root, outside, pets = tmp_path / "runs", tmp_path / "outside", tmp_path / "pets"
    root.mkdir()
    outside.mkdir()
    (pets / "cats").mkdir(parents=True)
    (tmp_path / "secret" / "a").mkdir(parents=True)
    (root / "link").symlink_to(outside, target_is_directory=True)
    (pets / "door").symlink_to(tmp_path / "secret", target_is_directory=True)
    app.state.train_folders = [str(pets)]
    base = {"model": "lenet5", "data": "synthetic", "epochs": 1}
    crafted = [
        ({"out": str(outside / "run")}, "not an absolute path"),
        ({"out": str(root / "run")}, "not an absolute path"),  # even inside: a name, never a path
        ({"out": "../outside/run"}, "leads outside the runs folder"),
        ({"out": "a/../../outside"}, "leads outside the runs folder"),
        ({"out": "link/run"}, "leads outside the runs folder"),  # a symlink out of the root
        ({"out": "."}, "leads outside the runs folder"),
        ({"out": "~/run"}, "not an absolute path"),
        ({"out": "/proc/self/x"}, "not an absolute path"),
        ({"data": "folder:/etc"}, "not a folder this server may read"),
        ({"data": f"folder:{pets / 'cats'}"}, "not a folder this server may read"),  # a subfolder
        ({"data": f"folder:{pets}/../secret"}, "not a folder this server may read"),
        ({"data": f"folder:{pets / 'door'}"}, "not a folder this server may read"),  # a link inside
        ({"data": "folder:" + "x" * 3000}, "not a folder this server may read"),
    ]
    for extra, message in crafted:
        r = c.post("/api/train/start", json=dict(base, **extra))
        assert r.status_code == 422 and message in r.json()["detail"], (extra, r.text)
        assert "x" * 50 not in r.json()["detail"]  # the caller's text is quoted short
    assert _tree(root) == ["link"] and _tree(outside) == [] and _tree(tmp_path / "secret") == ["a"]
    assert c.get("/api/train/status").json()["state"] == "idle"


def test_unwritable_folder_and_an_existing_run_are_refused(client, tmp_path):
    c, _ = client
    root = tmp_path / "runs"
    root.mkdir()
    (root / "notes.txt").write_text("a file, not a folder")
    r = c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "out": "notes.txt/run"})
    assert r.status_code == 422 and "cannot write the run folder" in r.json()["detail"]
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        locked = root / "locked"
        locked.mkdir(mode=0o500)
        try:
            r = c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "out": "locked/run"})
            assert r.status_code == 422 and "cannot write the run folder" in r.json()["detail"]
            assert list(locked.iterdir()) == []
        finally:
            locked.chmod(0o700)
    existing = root / "existing"
    existing.mkdir()
    (existing / "config.json").write_text(json.dumps({"model": {"name": "lenet5", "kwargs": {}}}))
    r = c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "out": "existing"})
    assert r.status_code == 422 and "already holds a run" in r.json()["detail"]
    assert c.post("/api/train/stop", json={}).status_code == 409
    assert c.post("/api/train/resume", json={}).status_code == 409
    assert c.post("/api/train/start", content=b"not json").status_code == 400
    assert c.post("/api/train/stop").status_code == 400  # a control POST needs a JSON body too
    assert c.post("/api/train/stop", json={"now": 1}).status_code == 422


def test_options_send_the_limits_the_server_checks(client, tmp_path):
    from convscope.limits import LIMITS

    c, app = client
    app.state.train_folders = [str(tmp_path / "pets")]
    opts = c.get("/api/train/options").json()
    for key in ("epochs", "lr", "batch_size", "seed", "pace_ms"):
        lim = LIMITS[key]
        assert (opts["ranges"][key]["min"], opts["ranges"][key]["max"]) == (lim.low, lim.high)
    assert opts["ranges"]["epochs"]["max"] == 100_000
    assert opts["folders"] == [str(tmp_path / "pets")]
    assert opts["datasets"] == ["mnist", "fashion-mnist", "synthetic", "cifar10"]


def test_a_crash_in_the_worker_reaches_the_page(client, tmp_path):
    c, app = client
    r = c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "lr": 90, "batch_size": 16,
                                         "epochs": 1, "out": "nan"})
    assert r.status_code == 202
    _wait(app.state.trainer, {"done", "error"})
    trainer = app.state.trainer
    assert trainer.state == "error" and "the loss became" in trainer.message  # the loop's own message
    assert c.get("/api/train/status").json()["message"] == trainer.message


def test_a_finished_run_without_an_explorer_to_open_it_says_so(tmp_path):
    app = _app(tmp_path)
    del app.state.open_run
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "epochs": 1, "out": "solo"})
        assert r.status_code == 202, r.text
        trainer = app.state.trainer
        _wait(trainer, {"done", "error"})
    assert trainer.state == "done"
    errors = [e["message"] for e in trainer.events if e["type"] == "error"]
    assert errors and "the explorer cannot open runs" in errors[0]


def _train_until_a_step(c, app, out: str, *, pace_ms: int):
    """Start a 3-epoch synthetic lenet5 into runs/`out` and wait for its first step; its Trainer."""
    assert c.post("/api/train/start", json={"model": "lenet5", "data": "synthetic", "epochs": 3,
                                            "out": out, "pace_ms": pace_ms}).status_code == 202
    trainer = app.state.trainer
    _wait(trainer, {"running"})
    deadline = time.monotonic() + 120  # a hang guard
    while not any(e["type"] == "step" for e in trainer.events):
        assert time.monotonic() < deadline, "no training step"
        time.sleep(0.05)
    return trainer


def test_server_shutdown_stops_the_training_resumably(tmp_path):
    app = _app(tmp_path)
    out = tmp_path / "runs" / "bye"
    with TestClient(app, base_url="http://127.0.0.1") as c:
        trainer = _train_until_a_step(c, app, "bye", pace_ms=50)
    assert trainer.proc.poll() is not None  # leaving the client is the server's shutdown: it waited
    _wait(trainer, {"stopped"}, timeout=120)
    assert (out / "state" / "state.pt").is_file() and (out / "config.json").is_file()


def test_ctrl_c_to_the_group_then_the_servers_stop_is_one_stop(client, tmp_path):
    """A Ctrl-C in the terminal reaches the worker (SIGINT), then the server's shutdown asks it to
    stop (SIGTERM): one stop at a step's end, the exact position saved, not a second Ctrl-C."""
    c, app = client
    trainer = _train_until_a_step(c, app, "twice", pace_ms=500)
    trainer.proc.send_signal(signal.SIGINT)
    time.sleep(0.1)  # taken, and the step (0.5 s of pace) still going: a second Ctrl-C would cut it
    trainer.shutdown()
    _wait(trainer, {"stopped"}, timeout=120)
    assert "checkpoint saved in" in trainer.message, trainer.message
    assert (tmp_path / "runs" / "twice" / "state" / "state.pt").is_file()


def test_shutdown_kills_a_training_that_does_not_stop(tmp_path):
    trainer = training.Trainer()
    # a process that ignores the stop it is asked for
    trainer.proc = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                     "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                     "signal.signal(signal.SIGINT, signal.SIG_IGN); print('ready', flush=True); "
                                     "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert trainer.proc.stdout.readline().strip() == "ready"
    trainer.shutdown(wait=0.5)
    assert trainer.proc.poll() == -signal.SIGKILL


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie nobody reaps has ended
    except FileNotFoundError:
        return True


SERVER = """
import os, sys, time
from convscope.train.request import TrainRequest
from convscope.web.training import Trainer

root = sys.argv[1]
t = Trainer(defaults={"threads": 1})
t.start(TrainRequest.parse({"model": "lenet5", "data": "synthetic", "epochs": 3, "out": "orphan", "pace_ms": 50},
                           runs_root=root))
while not any(e["type"] == "step" for e in t.since(0)):
    time.sleep(0.05)
print(t.proc.pid, flush=True)
os._exit(0)  # the server dies without stopping anything
"""


def test_the_worker_does_not_outlive_the_server(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(training.__file__).parents[2]),
                                                       os.environ.get("PYTHONPATH", "")]))
    server = subprocess.run([sys.executable, "-c", SERVER, str(tmp_path / "runs")], capture_output=True,
                            text=True, env=env, timeout=120)
    assert server.returncode == 0, server.stderr
    worker = int(server.stdout.split()[-1])
    deadline = time.monotonic() + 60  # slack for a loaded machine, not a speed claim
    while not _gone(worker):
        assert time.monotonic() < deadline, "the training process outlived its server"
        time.sleep(0.1)
    # it stopped as the Stop button does: the position is saved for resume
    assert (tmp_path / "runs" / "orphan" / "state" / "state.pt").is_file()


# ---- malformed bodies: never a 5xx, nothing written, the server keeps answering ----------------

def _nested(depth: int) -> list:
    v: list = []
    for _ in range(depth):
        v = [v]
    return v


JUNK = [[], [1, "a"], {"x": {"y": [None]}}, -1, -1e308, 1e308, 10**30, 10**400, float("nan"), float("inf"),
        "💥ü\u202e" * 10, "x" * 5000, "../../etc/passwd", "/proc/self/mem", _nested(200), {"num_classes": 10**15},
        {"a" * 100: 1}, {"dropout": [[[[1]]]]}, "folder:/etc", -0.5, 1_000_000.5]
ESCAPES = ["../x", "/tmp/x", "~/x", "a/../../x", "", "."]


def _malformed(rng) -> dict:
    """A body with one to three settings given a value that is wrong for them (by construction:
    every JUNK value is wrong for every key but `out`, whose junk is a non-string or an escape)."""
    from convscope.train.request import SERVER_KEYS

    body = {"model": "lenet5", "data": "synthetic", "epochs": 1}
    keys = sorted(SERVER_KEYS) + ["resume", "data_root", "download", "overwrite", "nope", "__proto__"]
    for key in rng.sample(keys, rng.randint(1, 3)):
        pool = [v for v in JUNK if not isinstance(v, str)] + ESCAPES[:4] if key == "out" else JUNK
        body[key] = rng.choice(pool)
    if body.get("model_kwargs") in ({}, {"x": {"y": [None]}}):  # {} is a valid model_kwargs
        body["model_kwargs"] = [1, "a"]
    return body


RAW = [b"", b"null", b"[]", b"42", b'"text"', b"\xff\xfe\x00", b'{"model": "lenet5"', b"{" * 50_000,
       b"[" * 30_000 + b"]" * 30_000, b'{"model": "' + b"x" * 70_000 + b'"}', b'{"epochs": NaN}',
       b'{"epochs": 1e999}', b'{"model": "lenet5", "data": "synthetic", "epochs": 1' + b' ' * 66_000 + b"}"]


def test_malformed_bodies_get_a_short_4xx_and_nothing_starts(client, tmp_path):
    import random

    c, app = client
    rng = random.Random(22)
    bodies = [json.dumps(_malformed(rng)).encode() for _ in range(400)] + RAW
    statuses = set()
    for raw in bodies:
        r = c.post("/api/train/start", content=raw, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500 and r.status_code != 409, (raw[:200], r.status_code, r.text[:300])
        detail = r.json()["detail"]
        assert isinstance(detail, str) and 0 < len(detail) <= training.MAX_DETAIL, (raw[:200], detail)
        statuses.add(r.status_code)
    assert statuses == {400, 413, 422}
    assert c.get("/api/train/status").json()["state"] == "idle"  # alive, and nothing started
    assert not (tmp_path / "runs").exists()
    for action in ("pause", "resume", "stop"):
        for raw in RAW:
            assert 400 <= c.post(f"/api/train/{action}", content=raw).status_code < 500
    assert c.get("/api/train/options").status_code == 200
