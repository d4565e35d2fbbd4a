"""The engine under concurrent requests with a swap in the middle (issue 22's race test).

A real server (uvicorn, answer processes on) answers /api/predict, /api/layer and
/api/gradcam from several threads for `SECONDS`; halfway, the Train tab's way of opening a
finished run (`app.state.open_run`) swaps in a network of another shape (RGB 32x32 instead
of grey 28x28, other layer names). The oracle: each network's answers computed one at a time
by its own engine. Every response must be a 200 and equal, byte for byte in every number,
the sequential answer of the network its "version" names; a layer or Grad-CAM asked for an
input must be that input's network's own.
"""
from __future__ import annotations

import base64
import io
import json
import random
import threading
import time
import urllib.error
import urllib.request

import pytest
import torch
from PIL import Image, ImageDraw

from convscope.models import create_model

SECONDS = 20.0
THREADS = 6
GREY = {"model": {"name": "lenet5_harley", "kwargs": {}}, "dataset": "mnist", "classes": [str(i) for i in range(10)],
        "input_size": [1, 28, 28], "normalization": {"mean": [0.1307], "std": [0.3081]},
        "preprocessing": {"kind": "digits", "invert": False}}
RGB = {"model": {"name": "convnet_small", "kwargs": {"in_chans": 3}}, "dataset": "cifar10",
       "classes": [f"c{i}" for i in range(10)], "input_size": [3, 32, 32],
       "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
       "preprocessing": {"kind": "resize", "size": [32, 32], "channels": 3}}


def drawing(seed: int) -> dict:
    rng = random.Random(seed)
    img = Image.new("L", (280, 280), 0)
    pts = [(rng.randrange(30, 250), rng.randrange(30, 250)) for _ in range(4)]
    ImageDraw.Draw(img).line(pts, fill=255, width=22, joint="curve")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {"png": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


def numbers(answer: dict) -> str:
    """An answer without what names the request (its input id) or the network (its version)."""
    return json.dumps({k: v for k, v in answer.items() if k not in ("input_id", "version")}, sort_keys=True)


def sequential(run, bodies):
    """Each body answered alone by a fresh engine of `run`: its answer, its layers, its Grad-CAM."""
    from convscope.web import Explorer

    e = Explorer.from_run(run)
    out = []
    for body in bodies:
        [a] = e.answer([body])
        d = a.to_dict()
        out.append({"answer": numbers(d), "gradcam": e.gradcam(input_id=a.input_id)["data"],
                    "layers": {layer["name"]: layer["data"] for layer in d["layers"]  # whole layers only
                               if layer["sort"] == "index" and len(layer["maps"]) == layer["total_maps"]}})
    return out


def call(url: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, {"detail": exc.read()[:300].decode(errors="replace")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from convscope.train.checkpoint import save_run

    root = tmp_path_factory.mktemp("races")
    torch.manual_seed(7)
    grey = save_run(root / "grey", create_model("lenet5_harley"), GREY)
    torch.manual_seed(8)
    rgb = save_run(root / "rgb", create_model("convnet_small", in_chans=3), RGB)
    return grey, rgb


def test_concurrent_requests_across_a_swap_are_each_one_networks_own_answer(runs):
    from convscope.web import create_app
    from convscope.web.live import live_server

    grey, rgb = runs
    bodies = [drawing(i) for i in range(8)]
    expected = {1: sequential(grey, bodies), 2: sequential(rgb, bodies)}
    app = create_app(grey, processes=1)
    seen, problems, versions = [0], [], set()
    stop = threading.Event()

    def client(url: str, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            i = rng.randrange(len(bodies))
            status, d = call(url + "/api/predict", bodies[i])
            if status != 200:
                problems.append(("predict", status, d.get("detail")))
                continue
            want = expected.get(d["version"], [None] * len(bodies))[i]
            versions.add(d["version"])
            if want is None or numbers(d) != want["answer"]:
                problems.append(("predict differs", d["version"], i))
                continue
            name = rng.choice(list(want["layers"]))
            status, layer = call(f"{url}/api/layer?name={name}&input={d['input_id']}")
            if status == 410:  # fell out of the kept inputs under load: allowed, and said so
                continue
            if status != 200 or layer["data"] != want["layers"][name] or layer["version"] != d["version"]:
                problems.append(("layer", status, name, layer.get("detail")))
            status, cam = call(f"{url}/api/gradcam?input={d['input_id']}")
            if status == 410:
                continue
            if status != 200 or cam["data"] != want["gradcam"] or cam["version"] != d["version"]:
                problems.append(("gradcam", status, cam.get("detail")))
            seen[0] += 1

    with live_server(app) as url:
        threads = [threading.Thread(target=client, args=(url, s)) for s in range(THREADS)]
        for t in threads:
            t.start()
        time.sleep(SECONDS / 2)
        app.state.open_run(str(rgb))  # what the Train tab does with a finished run
        time.sleep(SECONDS / 2)
        stop.set()
        for t in threads:
            t.join(300)
        status, model = call(url + "/api/model")
    assert not problems, problems[:5]
    assert versions == {1, 2}, versions  # answers from both networks were checked
    assert model["version"] == 2 and model["input_size"] == [3, 32, 32]
    assert seen[0] >= THREADS  # every thread got through at least once


def test_an_answer_while_another_network_is_traced_waits_for_the_trace():
    """torch.fx patches nn.Module.__call__ for the whole process while it traces (a run opened by
    the Train tab is traced while answers run): an answer computed meanwhile went through the
    tracer and failed ("module is not installed as a submodule", a 500 in the race test under
    load). The trace and every forward of the engine hold one lock, so the answer waits."""
    from torch import nn

    from convscope.analysis.graph import trace
    from convscope.web import Explorer

    tracing = threading.Event()

    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            tracing.set()
            time.sleep(1.0)  # the tracer's patch is in force for this long
            return self.fc(x.flatten(1))

    torch.manual_seed(3)
    engine = Explorer(create_model("lenet5"), GREY)
    want = numbers(engine.answer([drawing(1)])[0].to_dict())
    traced = threading.Thread(target=trace, args=(Slow(),))
    traced.start()
    assert tracing.wait(120)
    [got] = engine.answer([drawing(1)])  # while the other network is being traced
    traced.join(120)
    assert not isinstance(got, Exception), got
    assert numbers(got.to_dict()) == want
