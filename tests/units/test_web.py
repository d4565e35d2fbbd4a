"""The explorer's units routes: computed once in the background, cached beside the run, 4xx for bad input."""
from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from convscope.units import cache


def _client(run_dir, steps=8):
    from convscope.units.target import load_target
    from convscope.web.units_routes import router

    app = FastAPI()
    snap = SimpleNamespace(run_dir=str(run_dir) if run_dir else None)
    app.state.explorer = SimpleNamespace(snapshot=snap)
    if run_dir:  # the jobs of this snapshot (units_routes keeps one Jobs per network shown)
        app.state.units_jobs = (snap, cache.Jobs(lambda: load_target(str(run_dir)), Path(run_dir), steps=steps))
    app.include_router(router)
    return TestClient(app, base_url="http://127.0.0.1")


def _wait(client, layer, channel, timeout=120):
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get("/api/units", params={"layer": layer, "channel": channel})
        if r.status_code == 200:
            return r.json(), seen
        assert r.status_code == 202, r.text
        seen.append(r.json()["progress"])
        time.sleep(0.2)
    raise AssertionError("units never became ready")


def test_channel_view_is_computed_once_and_cached_beside_the_run(lenet_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(lenet_run, run)
    client = _client(run)
    assert [l["name"] for l in client.get("/api/units/layers").json()["layers"]] == ["conv1", "pool1", "conv2", "pool2"]
    data, seen = _wait(client, "conv1", 2)
    assert seen and all(0 <= p <= 1 for p in seen)  # progress while it was made
    assert data["channel"] == 2 and len(data["top"]) == 9
    assert data["top"][0]["png"].startswith("data:image/png;base64,")
    assert data["optimized_png"].startswith("data:image/png;base64,")
    acts = [t["activation"] for t in data["top"]]
    assert acts == sorted(acts, reverse=True) and data["best_patch_activation"] == acts[0]
    on_disk = json.loads((run / cache.FOLDER / "conv1.json").read_text())
    assert on_disk["stamp"] == cache.stamp(run)
    # a fresh server (another process, say) answers from the file at once
    again = _client(run).get("/api/units", params={"layer": "conv1", "channel": 5})
    assert again.status_code == 200 and again.json()["channel"] == 5
    # new weights: the old file no longer counts
    (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes() + b"")
    import os

    os.utime(run / "model.safetensors", ns=(1, 1))
    assert cache.read(run, "conv1") is None


@pytest.mark.parametrize("params, words", [
    ({"layer": "fc1", "channel": "0"}, "not a convolution or pooling"),
    ({"layer": "nope", "channel": "0"}, "conv1, pool1, conv2, pool2"),
    ({"layer": "conv1", "channel": "6"}, "from 0 to 5"),
    ({"layer": "conv1", "channel": "x"}, "whole number"),
])
def test_bad_requests_are_4xx(lenet_run, params, words):
    r = _client(lenet_run).get("/api/units", params=params)
    assert r.status_code == 422 and words in r.json()["detail"]


def test_a_model_without_a_run_is_409():
    r = _client(None).get("/api/units", params={"layer": "conv1", "channel": "0"})
    assert r.status_code == 409 and "--run" in r.json()["detail"]


def test_units_of_two_layers_asked_at_once_both_finish(lenet_run, tmp_path):
    """Clicking units in two layers within a moment: both layers are computed (one after the
    other, on the one target network), never "Trying to backward through the graph a second time"."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    run = tmp_path / "run"
    shutil.copytree(lenet_run, run)
    client = _client(run)
    with ThreadPoolExecutor(2) as ex:
        a, b = ex.map(lambda layer: _wait(client, layer, 1)[0], ["conv1", "conv2"])
    assert (a["layer"], b["layer"]) == ("conv1", "conv2") and a["top"] and b["top"]


def test_a_superscript_digit_is_not_a_channel(lenet_run):
    r = _client(lenet_run).get("/api/units", params={"layer": "conv1", "channel": "\u00b2"})
    assert r.status_code == 422 and "whole number" in r.json()["detail"]


def test_units_follow_the_network_the_explorer_shows(lenet_run, tmp_path):
    """After a swap the units routes answer for the new snapshot's run, not the old one's."""
    from convscope.web.units_routes import router

    app = FastAPI()
    app.state.explorer = SimpleNamespace(snapshot=SimpleNamespace(run_dir=str(lenet_run)))
    app.include_router(router)
    client = TestClient(app, base_url="http://127.0.0.1")
    assert client.get("/api/units/layers").status_code == 200
    app.state.explorer = SimpleNamespace(snapshot=SimpleNamespace(run_dir=None))  # a zoo network swapped in
    assert client.get("/api/units/layers").status_code == 409
