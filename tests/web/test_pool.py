"""Answer processes (web/pool.py): the same answers as the server process, the inputs kept
for /api/layer, a dead process or a swapped network answered in-process while a new pool starts."""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from convscope.models import create_model
from convscope.web.decode import InputError
from convscope.web.engine import Explorer
from convscope.web.pool import AnswerPool

CFG = {"model": {"name": "lenet5_harley", "kwargs": {}}, "dataset": "mnist", "classes": [str(i) for i in range(10)],
       "input_size": [1, 28, 28], "normalization": {"mean": [0.1307], "std": [0.3081]},
       "preprocessing": {"kind": "digits", "invert": False}}


def explorer(seed: int, config: dict = CFG) -> Explorer:
    torch.manual_seed(seed)
    return Explorer(create_model("lenet5_harley"), config)


def stroke(points) -> dict:
    img = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(img).line(points, fill=255, width=22, joint="curve")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {"png": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


BODIES = [stroke([(70, 60), (210, 60), (120, 235)]), stroke([(140, 40), (140, 240)]),
          {"png": "data:image/png;base64,bm90IGEgcG5n"},              # not a PNG: 415, alone
          {"image": np.eye(28).round(3).tolist(), "preprocess": False},
          stroke([(60, 200), (200, 60), (220, 220)])]


def wait_ready(pool: AnswerPool, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not pool.ready:
        assert time.monotonic() < deadline, "the answer processes did not start"
        time.sleep(0.1)


def strip(answer):
    if isinstance(answer, InputError):
        return ("error", answer.status, str(answer))
    d = answer.to_dict()
    return d.pop("input_id"), d


@pytest.fixture(scope="module")
def pooled():
    e = explorer(0)
    pool = AnswerPool(e, 2)
    wait_ready(pool)
    yield e, pool
    pool.close()


def test_an_answer_process_answers_as_the_server_process_does(pooled):
    e, pool = pooled
    here = explorer(0).answer(BODIES)
    there = pool.answer(BODIES)
    assert there is not None and len(there) == len(BODIES)
    for h, t in zip(here, there):
        if isinstance(h, InputError):
            assert strip(t) == strip(h) and h.status == 415
        else:
            assert strip(t)[1] == strip(h)[1]  # byte for byte the same answer, but for the id
    ids = [strip(t)[0] for t in there if not isinstance(t, InputError)]
    assert len(set(ids)) == len(ids)


def test_the_server_process_keeps_the_input_for_later_layers(pooled):
    e, pool = pooled
    answers = pool.answer(BODIES[:2])
    input_id, first = strip(answers[0])
    name = next(layer["name"] for layer in e.layers if layer["kind"] != "input")
    later = e.layer(name, input_id=input_id)           # computed again here, from the kept input
    shown = next(layer for layer in first["layers"] if layer["name"] == name)
    assert later["data"] == shown["data"] and later["map_max"] == shown["map_max"]
    assert e.layer(name)["input_id"] == strip(answers[1])[0]  # "the last input" is the last answered


def test_batches_run_in_both_processes_at_once(pooled):
    e, pool = pooled
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: pool.answer(BODIES[:1] * 8), range(8)))
    assert all(r is not None and len(r) == 8 for r in results)
    assert len({strip(a)[1]["probabilities"][0] for r in results for a in r}) == 1


def test_a_dead_process_is_replaced_and_the_batch_answered_here():
    e = explorer(1)
    pool = AnswerPool(e, 1)
    try:
        wait_ready(pool)
        pid = next(iter(pool._executor._processes))
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert pool.answer(BODIES[:1]) is None     # the caller answers in-process meanwhile
        wait_ready(pool)
        assert pool.restarts == 1
        assert strip(pool.answer(BODIES[:1])[0])[1] == strip(e.answer(BODIES[:1])[0])[1]
    finally:
        pool.close()


def test_a_network_put_in_place_is_what_the_processes_answer_with():
    e = explorer(2)
    pool = AnswerPool(e, 1)
    try:
        wait_ready(pool)
        before = strip(pool.answer(BODIES[:1])[0])[1]["probabilities"]
        e.swap(explorer(3).snapshot)                   # what the Train tab does with a finished run
        assert not pool.ready and pool.answer(BODIES[:1]) is None
        wait_ready(pool)
        after = strip(pool.answer(BODIES[:1])[0])[1]
        assert after["probabilities"] != before and after["version"] == e.snapshot.version == 2
        assert after["probabilities"] == strip(explorer(3).answer(BODIES[:1])[0])[1]["probabilities"]
    finally:
        pool.close()


def test_a_network_outside_the_zoo_is_answered_in_the_server_process():
    e = explorer(4, {**CFG, "model": {"name": "not-a-zoo-network", "kwargs": {}}})
    pool = AnswerPool(e, 1)
    try:
        time.sleep(1.0)
        assert not pool.ready and pool.answer(BODIES[:1]) is None
    finally:
        pool.close()


def test_serve_answers_from_its_answer_processes_and_takes_them_along_when_killed(tmp_path):
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from convscope.train.checkpoint import save_run

    torch.manual_seed(5)
    run = save_run(tmp_path / "run", create_model("lenet5_harley"), CFG)
    proc = subprocess.Popen([sys.executable, "-m", "convscope", "serve", "--run", str(run), "--port", "0",
                             "--answer-processes", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        url = None
        while url is None:
            line = proc.stdout.readline()
            assert line, "serve ended before printing its address"
            if "http://127.0.0.1:" in line:
                url = line.split("open ")[1].split()[0]
        deadline = time.monotonic() + 180
        while True:
            with urllib.request.urlopen(url + "/api/health", timeout=120) as r:
                pool = json.load(r)["batching"]["answer_processes"]
            if pool["ready"]:
                break
            assert time.monotonic() < deadline, "the answer processes did not start"
            time.sleep(0.2)
        kids = [int(k) for task in Path(f"/proc/{proc.pid}/task").iterdir()
                for k in (task / "children").read_text().split()]
        assert len(kids) >= 2  # the answer processes (and multiprocessing's resource tracker)
        req = urllib.request.Request(url + "/api/predict", data=json.dumps(BODIES[0]).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            served = json.load(r)
        here = Explorer.from_run(run).answer(BODIES[:1])[0].to_dict()
        assert served["probabilities"] == here["probabilities"] and served["layers"] == here["layers"]
        layer = served["layers"][1]["name"]
        with urllib.request.urlopen(f"{url}/api/layer?name={layer}&input={served['input_id']}", timeout=120) as r:
            assert json.load(r)["data"] == served["layers"][1]["data"]  # the server process kept the input
    finally:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 60  # a hang guard: they go within a second when idle
    alive = kids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [k for k in kids if os.path.exists(f"/proc/{k}")
                 and open(f"/proc/{k}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"answer processes {alive} outlived the killed server"
