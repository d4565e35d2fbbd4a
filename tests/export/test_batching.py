"""The micro-batcher alone, then behind /api/predict on a live server."""
from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time

import numpy as np
import pytest

from convscope.web.batching import Batcher, Overloaded

# ---- the batcher alone -------------------------------------------------------------------


def run(coro):
    return asyncio.run(coro)


def test_items_that_arrive_together_share_one_call():
    calls: list[list[int]] = []

    def square(xs):
        calls.append(list(xs))
        return [x * x for x in xs]

    async def main():
        b = Batcher(square, max_batch=32, max_wait_s=0.05)
        out = await asyncio.gather(*(b.submit(i) for i in range(10)))
        b.close()
        return out

    assert run(main()) == [i * i for i in range(10)]
    assert calls == [list(range(10))]


def test_max_batch_splits_a_burst_and_keeps_order():
    calls: list[list[int]] = []

    def neg(xs):
        calls.append(list(xs))
        time.sleep(0.01)
        return [-x for x in xs]

    async def main():
        b = Batcher(neg, max_batch=4, max_wait_s=0.01)
        out = await asyncio.gather(*(b.submit(i) for i in range(10)))
        b.close()
        return out, b.stats.to_dict()

    out, stats = run(main())
    assert out == [-i for i in range(10)]
    assert [x for c in calls for x in c] == list(range(10)) and max(map(len, calls)) == 4
    assert stats["items"] == 10 and stats["largest"] == 4


def test_a_lone_item_is_answered_without_waiting_for_company():
    """One item and room for 32: the batch starts when max_wait_s has passed (its timer), not
    when the batch is full (it never would be). How long that takes is benchmarks/serve.py's."""
    async def main():
        b = Batcher(lambda xs: [x * 2 for x in xs], max_batch=32, max_wait_s=0.005)
        out = await asyncio.wait_for(b.submit(21), timeout=120)  # a hang guard, not a speed claim
        b.close()
        return out, b.stats.to_dict()

    out, stats = run(main())
    assert out == 42 and stats["sizes"] == {1: 1}


def test_an_exception_in_its_place_fails_that_item_alone():
    def check(xs):
        return [ValueError(f"bad {x}") if x < 0 else x + 1 for x in xs]

    async def main():
        b = Batcher(check, max_batch=8, max_wait_s=0.05)
        out = await asyncio.gather(*(b.submit(x) for x in (1, -2, 3)), return_exceptions=True)
        b.close()
        return out, b.stats.batches

    out, batches = run(main())
    assert out[0] == 2 and out[2] == 4 and isinstance(out[1], ValueError) and str(out[1]) == "bad -2"
    assert batches == 1


def test_a_batch_that_raises_is_retried_one_by_one():
    def strict(xs):
        if any(x == 0 for x in xs):
            raise ZeroDivisionError("a zero in the batch")
        return [10 // x for x in xs]

    async def main():
        b = Batcher(strict, max_batch=8, max_wait_s=0.05)
        out = await asyncio.gather(*(b.submit(x) for x in (5, 0, 2)), return_exceptions=True)
        b.close()
        return out

    out = run(main())
    assert out[0] == 2 and out[2] == 5 and isinstance(out[1], ZeroDivisionError)


def test_a_full_queue_is_refused():
    async def main():
        b = Batcher(lambda xs: (time.sleep(0.05), xs)[1], max_batch=1, max_wait_s=0.0, max_queue=2)
        tasks = [asyncio.ensure_future(b.submit(i)) for i in range(6)]
        out = await asyncio.gather(*tasks, return_exceptions=True)
        b.close()
        return out

    out = run(main())
    assert any(isinstance(o, Overloaded) for o in out) and any(o == 0 for o in out)


# ---- behind /api/predict -----------------------------------------------------------------

def drawings(n: int) -> list[str]:
    """n different 280x280 strokes as PNG data URLs (bars and boxes at different places)."""
    import base64
    import io

    from PIL import Image, ImageDraw

    out = []
    rng = np.random.default_rng(7)
    for _ in range(n):
        img = Image.new("L", (280, 280), 0)
        pts = [tuple(int(v) for v in rng.integers(30, 250, 2)) for _ in range(3)]
        ImageDraw.Draw(img).line(pts, fill=255, width=22, joint="curve")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return out


def post(url: str, body: dict) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/api/predict", json.dumps(body), {"Content-Type": "application/json"})
    res = conn.getresponse()
    data = res.read()
    conn.close()
    return res.status, data


def answer(data: bytes) -> dict:
    """The answer without its input_id (a counter: the server numbers every input it sees)."""
    out = json.loads(data)
    out.pop("input_id")
    return out


def concurrently(url: str, bodies: list[dict]) -> list[tuple[int, bytes]]:
    out: list = [None] * len(bodies)
    gate = threading.Barrier(len(bodies))

    def go(i):
        gate.wait()
        out[i] = post(url, bodies[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


@pytest.fixture(scope="module")
def explorer():
    import torch

    from convscope.models import create_model
    from convscope.web import Explorer

    torch.manual_seed(99)
    cfg = {"model": {"name": "lenet5", "kwargs": {}}, "dataset": "mnist", "classes": [str(i) for i in range(10)],
           "input_size": [1, 28, 28], "normalization": {"mean": [0.1307], "std": [0.3081]},
           "preprocessing": {"kind": "digits", "invert": False}}
    return Explorer(create_model("lenet5"), cfg)


def test_concurrent_answers_equal_one_at_a_time_answers(explorer):
    from convscope.web import create_app
    from convscope.web.live import live_server

    bodies = [{"png": url} for url in drawings(12)]
    bodies[3]["preprocess"] = False
    app = create_app(explorer=explorer, max_batch=8, max_wait_s=0.2)
    with live_server(app) as url:
        alone = [post(url, b) for b in bodies]
        sizes_alone = dict(app.state.batcher.stats.sizes)
        together = concurrently(url, bodies)
    assert sizes_alone == {1: 12}
    assert app.state.batcher.stats.largest > 1  # they did share forward passes
    assert all(s == 200 for s, _ in alone + together)
    assert [answer(d) for _, d in together] == [answer(d) for _, d in alone]  # every number equal
    assert len({json.dumps(answer(d)) for _, d in alone}) == 12  # twelve different answers


def test_a_bad_request_in_a_batch_fails_alone(explorer):
    from convscope.web import create_app
    from convscope.web.live import live_server

    good = [{"png": url} for url in drawings(6)]
    bad = [{"png": "data:image/png;base64,iVBORw0KGgo!!!"}, {"image": [[0.5]]}]
    bodies = good[:3] + bad[:1] + good[3:] + bad[1:]
    app = create_app(explorer=explorer, max_batch=8, max_wait_s=0.5)
    with live_server(app) as url:
        together = concurrently(url, bodies)
        alone = [post(url, b) for b in good]
    assert app.state.batcher.stats.sizes.get(8) == 1  # all eight in one batch
    statuses = [s for s, _ in together]
    assert statuses[3] == 400 and statuses[7] == 422 and statuses.count(200) == 6
    assert "base64" in json.loads(together[3][1])["detail"]
    assert [answer(d) for s, d in together if s == 200] == [answer(d) for _, d in alone]


def test_max_batch_1_answers_each_alone_with_the_same_numbers(explorer):
    """max_batch=1: each request alone, no batcher; the numbers are those of the batching server
    (every forward pass of a batched network has MIN_ROWS rows, whoever asks: Snapshot.min_rows)."""
    from fastapi.testclient import TestClient

    from convscope.web import Explorer, create_app
    from convscope.web.snapshot import MIN_ROWS

    alone = Explorer(explorer.model, explorer.config)
    body = {"png": drawings(1)[0]}
    with TestClient(create_app(explorer=alone, max_batch=1), base_url="http://127.0.0.1") as plain:
        a = plain.post("/api/predict", json=body)
    assert plain.app.state.batcher is None
    with TestClient(create_app(explorer=explorer), base_url="http://127.0.0.1") as batched:
        b = batched.post("/api/predict", json=body)
    assert alone.min_rows == explorer.min_rows == MIN_ROWS
    assert a.status_code == b.status_code == 200
    pa, pb = answer(a.content), answer(b.content)
    assert pa == pb


def test_several_at_a_time_share_a_burst_among_the_free_workers():
    calls: list[tuple[list[int], str]] = []
    running, most = [0], [0]
    lock = threading.Lock()

    def slow(xs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        calls.append((list(xs), threading.current_thread().name))
        time.sleep(0.05)  # as a batch handed to another process and waited for
        with lock:
            running[0] -= 1
        return [x + 1 for x in xs]

    async def main():
        b = Batcher(slow, max_batch=32, max_wait_s=0.01, concurrency=2)
        out = await asyncio.gather(*(b.submit(i) for i in range(16)))
        b.close()
        return out

    assert run(main()) == [i + 1 for i in range(16)]
    assert sorted(len(c) for c, _ in calls) == [8, 8]           # not one batch of 16 beside an idle worker
    assert most[0] == 2 and len({name for _, name in calls}) == 2
    assert sorted(x for c, _ in calls for x in c) == list(range(16))
