"""Explorer server benchmark: /api/predict latency and throughput on loopback, and robustness.

    .venv/bin/python benchmarks/serve.py [--run runs/demo] [--quick]
    .venv/bin/python benchmarks/serve.py --batching     # today's server vs micro-batching, 16 clients
    .venv/bin/python benchmarks/serve.py --classroom    # 200 students for 60 s, 10% malformed

Starts `convscope serve` in a subprocess on a free loopback port (once per
torch thread count) and drives it with asyncio HTTP/1.1 keep-alive clients
(one process, no GIL contention between clients). Each request is what the
page sends at the end of a stroke: a 280x280 PNG drawing of a 7, preprocessed,
with every layer's activations in the answer.

  1. latency at 1 and at 16 concurrent clients, 10 s each, for `serve --threads 1`
     (the default), `--threads 2`, and `--workers 2` (goals: median < 10 ms and
     p99 < 50 ms at 16 clients, >= 300 predictions/s)
  2. 60 s at 32 clients with 10% malformed requests (bad JSON, NaN, 1x1, broken
     base64, not a PNG, a 1.1 MB body): no 5xx, resident memory growth < 50 MB

With --explorer-speed it measures instead, in this process, what the explorer
costs for big networks against a plain `model(x)` timed in the same run
(`explorer_speed`): resnet50 (224), densenet121 (224), inception_v4 (299) and
the lenet5 drawing: the answer (guesses + first screen of layers), its
payload, and a later layer fetched on its own.

Prints one JSON object. The baseline for ratios, `predict_only_ms`, is the
same work timed in this process without HTTP. On a shared machine latencies
swing with its load; `server_cpu_ms_per_request` (the server's own CPU time per
answer) and `server_cpu_share` (how much of a core it got) say how much.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def drawing_png() -> str:
    """A 7 drawn on a 280x280 black canvas with a 22 px white pen, as a PNG data URL."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(img).line([(70, 60), (210, 60), (120, 235)], fill=255, width=22, joint="curve")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def malformed_bodies() -> list[bytes]:
    return [
        b'{"image": [[0, 1]',                                              # not JSON
        b'{"image": ' + json.dumps([[0.5] * 8] * 8).replace("0.5", "NaN", 1).encode() + b"}",
        json.dumps({"image": [[0.5]]}).encode(),                           # 1x1
        json.dumps({"png": "data:image/png;base64,iVBORw0KGgo!!!"}).encode(),  # broken base64
        json.dumps({"png": "data:image/png;base64," + base64.b64encode(b"GIF89a....").decode()}).encode(),
        json.dumps({"image": "seven"}).encode(),                           # wrong type
        b'{"image": [' + b" " * (1100 * 1024) + b"]}",                      # over 1 MiB
    ]


def request_bytes(body: bytes) -> bytes:
    head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def one_request(conn, payload: bytes, port: int):
    """Send one request on a keep-alive connection (reconnecting if needed): (status, conn)."""
    if conn is None:
        conn = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = conn
    writer.write(payload)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    if headers.get("connection", "").lower() == "close":
        writer.close()
        conn = None
    return status, conn


async def client(port: int, good: bytes, bad: list[bytes], bad_every: int, until: float,
                 lat: list[float], statuses: dict[int, int], seed: int) -> None:
    conn, k = None, seed
    while time.perf_counter() < until:
        k += 1
        payload = bad[k % len(bad)] if bad_every and k % bad_every == 0 else good
        t0 = time.perf_counter()
        try:
            status, conn = await one_request(conn, payload, port)
        except (ConnectionError, asyncio.IncompleteReadError):
            status, conn = -1, None  # the server hung up (it may, after a 413): reconnect
        if payload is good:
            lat.append(time.perf_counter() - t0)
        statuses[status] = statuses.get(status, 0) + 1
    if conn is not None:
        conn[1].close()


def load_phase(port: int, clients: int, seconds: float, bad_share: float = 0.0, pid: int | None = None) -> dict:
    good = request_bytes(json.dumps({"png": drawing_png()}).encode())
    bad = [request_bytes(b) for b in malformed_bodies()]
    bad_every = round(1 / bad_share) if bad_share else 0
    lat: list[float] = []
    statuses: dict[int, int] = {}

    async def run() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(*(client(port, good, bad, bad_every, until, lat, statuses, i * 7)
                               for i in range(clients)))

    cpu0 = cpu_seconds(pid) if pid else 0.0
    t0, own0 = time.perf_counter(), time.process_time()
    asyncio.run(run())
    wall = time.perf_counter() - t0
    own = time.process_time() - own0
    cpu = cpu_seconds(pid) - cpu0 if pid else 0.0
    ms = sorted(x * 1000 for x in lat)
    q = lambda p: round(ms[min(len(ms) - 1, int(p * len(ms)))], 2) if ms else None  # noqa: E731
    return {"clients": clients, "seconds": round(wall, 1), "predictions": len(ms),
            "predictions_per_s": round(len(ms) / wall, 1), "median_ms": q(0.5), "p90_ms": q(0.9),
            "p99_ms": q(0.99), "max_ms": round(ms[-1], 1) if ms else None,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": sum(v for k, v in statuses.items() if k >= 500 or k < 0),
            # CPU the server spent per answer (good and bad): what the machine's load cannot inflate much
            "server_cpu_ms_per_request": round(cpu * 1000 / max(1, sum(statuses.values())), 3) if pid else None,
            "server_cpu_share": round(cpu / wall, 2) if pid else None,
            # the load generator shares the machine: how much of a core it took
            "client_cpu_share": round(own / wall, 2)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (uvicorn workers), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        kids = children(pid)
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(k)) for k in kids)


def children(pid: int) -> list[str]:
    """Child pids of every thread of `pid` (a child belongs to the thread that started it)."""
    return [k for task in Path(f"/proc/{pid}/task").iterdir() for k in (task / "children").read_text().split()]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the answer processes), in MB."""
    try:
        own = next(int(line.split()[1]) / 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        kids = children(pid)
    except (OSError, StopIteration):
        return 0.0
    return own + sum(rss_mb(int(k)) for k in kids)


def start_server(run: Path, threads: int, workers: int = 1) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "convscope", "serve", "--run", str(run), "--port", "0", "--threads", str(threads),
           "--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "http://127.0.0.1:" in line:
            return proc, int(line.split("http://127.0.0.1:")[1].split()[0])
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("convscope serve did not start")


def predict_only_ms(run: Path, n: int = 300) -> dict:
    """The same work without HTTP: decode the PNG, preprocess, forward, encode.

    Wall time (median) and CPU time per call (process_time, which a busy machine
    inflates far less: it does not count waiting for a core)."""
    import torch

    from convscope.web.engine import Explorer

    torch.set_num_threads(1)
    ex = Explorer.from_run(run)
    body = {"png": drawing_png()}
    times = []
    c0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        ex.answer([body])
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / n
    return {"wall_median_ms": round(statistics.median(times) * 1000, 3), "cpu_ms": round(cpu * 1000, 3)}


def fallback_run() -> Path:
    """A random-weight lenet5_harley run (the demo's network) (latency does not depend on the weights)."""
    from convscope.models import create_model
    from convscope.train.checkpoint import save_run

    cfg = {"model": {"name": "lenet5_harley", "kwargs": {}}, "dataset": "mnist", "classes": [str(i) for i in range(10)],
           "input_size": [1, 28, 28], "normalization": {"mean": [0.1307], "std": [0.3081]},
           "preprocessing": {"kind": "digits", "invert": False}}
    return save_run(Path(tempfile.mkdtemp(prefix="convscope-bench-")) / "run", create_model("lenet5_harley"), cfg)


# ---- batching and the classroom ----------------------------------------------------------
# `--batching`: today's server (every request alone, max_batch=1) against the micro-batching
# one (max_batch=32), alternated in one session, 16 clients each. `--classroom`: 200 simulated
# students for 60 s against the batching server. Both on loopback, each phase bounded in time.

LAUNCH = """
import sys, torch, uvicorn
from convscope.web.live import bind_socket
from convscope.web import create_app
torch.set_num_threads(1)
app = create_app(sys.argv[1], max_batch=int(sys.argv[2]), **({"processes": int(sys.argv[5])} if sys.argv[5] != "0" else {}))
sock = bind_socket("127.0.0.1", 0)
print(f"http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, http=sys.argv[3],
                              loop=sys.argv[4])).run(sockets=[sock])
"""

# today's server: the code of this commit (the last one before the batching work), unbatched,
# with the HTTP parser and event loop it had (h11 and asyncio: httptools and uvloop came after)
BASELINE_REF = "8946cd0"


def baseline_source(ref: str) -> Path:
    """`src/` of the commit `ref`, extracted into a temporary folder (git archive)."""
    out = Path(tempfile.mkdtemp(prefix="convscope-baseline-"))
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"serve.py: cannot read commit {ref!r} for the baseline ({exc}); pass --baseline-ref REF")
    subprocess.run(["tar", "-x", "-C", str(out)], input=tar, check=True)
    return out / "src"


def start_app(run: Path, max_batch: int, *, source: Path | None = None, http: str = "auto",
              loop: str = "auto", processes: int = 0) -> tuple[subprocess.Popen, int]:
    """The explorer app (one server process, 1 torch thread) with the given batch limit and
    answer processes (web/pool.py), on a free port, once it answers with all of them;
    `source`: another checkout's src/ to run instead of this one (the baseline)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if source is not None:
        env["PYTHONPATH"] = str(source)
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(run), str(max_batch), http, loop, str(processes)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "http://127.0.0.1:" in line:
            port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
            if processes:
                wait_for_answer_processes(port, deadline)
            return proc, port
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("the explorer app did not start")


def wait_for_answer_processes(port: int, deadline: float) -> None:
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as r:
                if ((json.load(r).get("batching") or {}).get("answer_processes") or {}).get("ready"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the answer processes did not start")


def batching_comparison(run: Path, seconds: float, rounds: int = 2, baseline_ref: str = BASELINE_REF) -> dict:
    """16 clients against today's server (the commit `baseline_ref`, unbatched, h11/asyncio),
    this tree unbatched (max_batch=1) and this tree as served (max_batch=32), alternated."""
    keys = ("predictions_per_s", "median_ms", "p99_ms", "errors", "server_cpu_ms_per_request",
            "server_cpu_share")
    source = baseline_source(baseline_ref)
    from convscope.web.pool import default_processes

    servers = {"today": dict(max_batch=1, source=source, http="h11", loop="asyncio"),
               "unbatched": dict(max_batch=1), "batched_one_process": dict(max_batch=32),
               "batched": dict(max_batch=32, processes=default_processes())}
    phases: dict[str, list[dict]] = {k: [] for k in servers}
    for _ in range(rounds):
        for label, how in servers.items():
            proc, port = start_app(run, **how)
            try:
                load_phase(port, 4, 1.0)  # warm-up
                r = load_phase(port, 16, seconds, pid=proc.pid)
                phases[label].append({k: r[k] for k in keys} | {"loadavg": round(os.getloadavg()[0], 1)})
            finally:
                proc.terminate()
                proc.wait(10)
    med = {k: statistics.median(r["predictions_per_s"] for r in v) for k, v in phases.items()}
    ratio = med["batched"] / med["today"]
    cpu = (statistics.median(r["server_cpu_ms_per_request"] for r in phases["today"])
           / statistics.median(r["server_cpu_ms_per_request"] for r in phases["batched"]))
    return {"clients": 16, "seconds_per_phase": seconds, "baseline_ref": baseline_ref,
            "answer_processes": servers["batched"]["processes"], "phases": phases,
            "median_predictions_per_s": med, "throughput_ratio_vs_today": round(ratio, 2),
            "throughput_ratio_vs_unbatched": round(med["batched"] / med["unbatched"], 2),
            "cpu_per_answer_ratio_vs_today": round(cpu, 2),
            "goals": {"at_least_2x": ratio >= 2,
                      "p99_under_50ms": max(r["p99_ms"] for r in phases["batched"]) < 50,
                      "no_errors": all(r["errors"] == 0 for v in phases.values() for r in v)}}


def in_process_batch_cpu(run: Path, batch: int = 16, rounds: int = 10) -> dict:
    """CPU time per answer without HTTP (process_time: a busy machine barely inflates it):
    `Explorer.answer` one image at a time, against batches of `batch`."""
    import torch

    from convscope.web.engine import Explorer

    torch.set_num_threads(1)
    images = [{"png": line.split(b"\r\n\r\n", 1)[1].decode().split('"')[3]} for line in classroom_drawings(batch)]
    alone = batched = Explorer.from_run(run)
    alone.answer(images[:1])  # warm-up

    def cpu(fn) -> float:
        c0 = time.process_time()
        for _ in range(rounds):
            fn()
        return (time.process_time() - c0) * 1000 / (rounds * batch)

    one = cpu(lambda: [alone.answer([img]) for img in images])
    many = cpu(lambda: batched.answer(images))
    return {"batch": batch, "one_at_a_time_cpu_ms": round(one, 3), "batched_cpu_ms": round(many, 3),
            "ratio": round(one / many, 2)}


def classroom_drawings(n: int = 24) -> list[bytes]:
    """n different strokes (280x280 PNGs, as the page sends them), as whole HTTP requests."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(15)
    out = []
    for _ in range(n):
        img = Image.new("L", (280, 280), 0)
        pts = [(rng.randint(40, 240), rng.randint(30, 250)) for _ in range(rng.randint(2, 5))]
        ImageDraw.Draw(img).line(pts, fill=255, width=22, joint="curve")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        out.append(request_bytes(json.dumps({"png": url}).encode()))
    return out


async def student(k: int, port: int, until: float, good: list[bytes], bad: list[bytes], malformed: float,
                  period: float, lat: list[float], statuses: dict[int, int]) -> None:
    """One student: draws a digit for 1.5-4 s (a drawing every `period` s, one request in flight,
    like the page), pauses 1-3 s, draws the next; `malformed` of the requests are broken."""
    import random

    rng = random.Random(k)
    conn = None
    await asyncio.sleep(rng.uniform(0, min(2.0, until - time.perf_counter())))  # not all in the same ms
    while time.perf_counter() < until:
        stroke_ends = time.perf_counter() + rng.uniform(1.5, 4.0)
        while time.perf_counter() < min(stroke_ends, until):
            tick = time.perf_counter()
            is_bad = rng.random() < malformed
            payload = rng.choice(bad) if is_bad else rng.choice(good)
            try:
                status, conn = await asyncio.wait_for(one_request(conn, payload, port), 10)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
                status = -1  # a hang-up (after a 413 the server may close), a refusal or a timeout
                if conn is not None:
                    conn[1].close()
                conn = None
            if not is_bad:
                lat.append(time.perf_counter() - tick)
            statuses[status] = statuses.get(status, 0) + 1
            await asyncio.sleep(max(0.0, period - (time.perf_counter() - tick)))
        await asyncio.sleep(min(rng.uniform(1.0, 3.0), max(0.0, until - time.perf_counter())))
    if conn is not None:
        conn[1].close()


def classroom(run: Path, students: int = 200, seconds: float = 60.0, malformed: float = 0.10,
              period: float = 0.3) -> dict:
    """`students` simulated students for `seconds` against one batching server (1 thread)."""
    if not 1 <= students <= 2000 or not 1 <= seconds <= 600:
        raise SystemExit("classroom: 1-2000 students for 1-600 s")
    good, bad = classroom_drawings(), [request_bytes(b) for b in malformed_bodies()]
    from convscope.web.pool import default_processes

    proc, port = start_app(run, 32, processes=default_processes())
    lat: list[float] = []
    statuses: dict[int, int] = {}
    try:
        load_phase(port, 4, 1.0)  # warm-up
        rss0, cpu0 = rss_mb(proc.pid), cpu_seconds(proc.pid)

        rss_trace: list[float] = []

        async def watch(until: float) -> None:  # the server's memory every 10 s: a plateau or a leak
            while time.perf_counter() < until:
                rss_trace.append(round(rss_mb(proc.pid), 1))
                await asyncio.sleep(10)

        async def everyone() -> None:
            until = time.perf_counter() + seconds
            await asyncio.gather(watch(until), *(student(k, port, until, good, bad, malformed, period, lat, statuses)
                                                 for k in range(students)))

        t0 = time.perf_counter()
        asyncio.run(everyone())
        wall = time.perf_counter() - t0
        cpu, rss1 = cpu_seconds(proc.pid) - cpu0, rss_mb(proc.pid)
        peak = _vm_hwm_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    ms = sorted(x * 1000 for x in lat)
    q = lambda p: round(ms[min(len(ms) - 1, int(p * len(ms)))], 1) if ms else None  # noqa: E731
    answered = sum(v for k, v in statuses.items() if 200 <= k < 500)
    errors = sum(v for k, v in statuses.items() if k >= 500 or k < 0)
    return {"students": students, "seconds": round(wall, 1), "period_s": period, "malformed_share": malformed,
            "requests": sum(statuses.values()), "answers_per_s": round(answered / wall, 1),
            "good_answers_per_s": round(len(ms) / wall, 1), "p50_ms": q(0.5), "p99_ms": q(0.99),
            "max_ms": round(ms[-1], 1) if ms else None, "errors": errors,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "server_cpu_share": round(cpu / wall, 2), "rss_before_mb": round(rss0, 1),
            "rss_after_mb": round(rss1, 1), "rss_growth_mb": round(rss1 - rss0, 1), "rss_peak_mb": peak,
            "rss_every_10s_mb": rss_trace,
            "loadavg": round(os.getloadavg()[0], 1)}


def _vm_hwm_mb(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


# ---- explorer speed on big networks (--explorer-speed) ---------------------------------------

def _median_ms(fn, reps: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) of `fn` over `reps` calls after one warm-up; the CPU time
    is what a busy machine inflates least (it does not count waiting for a core)."""
    fn()  # warm-up
    times = []
    c0 = time.process_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 2), round((time.process_time() - c0) / reps * 1000, 2)


def photo_jpeg(w: int = 640, h: int = 480) -> str:
    """A smooth synthetic 'photo' as a JPEG data URL (what an upload sends)."""
    from PIL import Image

    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    rgb = np.stack([np.sin(6 * xx) * 0.5 + 0.5, np.cos(4 * yy) * 0.5 + 0.5, xx * yy], -1)
    buf = io.BytesIO()
    Image.fromarray((rgb * 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def explorer_speed_one(name: str, reps: int) -> dict:
    """One zoo model (random weights: speed does not depend on them) at its native size."""
    import torch

    from convscope.models import create_model
    from convscope.web.engine import Explorer

    torch.manual_seed(0)
    t0 = time.perf_counter()
    ex = Explorer(create_model(name), None, random_weights=True)
    load_s = time.perf_counter() - t0
    x = torch.rand(1, *ex.input_size)
    with torch.inference_mode():
        forward, forward_cpu = _median_ms(lambda: ex.model(x), reps)
    url = drawing_png() if ex.input_size[0] == 1 else photo_jpeg()
    key = "png" if ex.input_size[0] == 1 else "file"
    answer = {}
    answer_ms, answer_cpu = _median_ms(lambda: answer.update(text=ex.answer([{key: url}])[0].json), reps)
    body = json.loads(answer["text"])
    first = {layer["name"] for layer in body["layers"]}
    later = [layer["name"] for layer in ex.layers if layer["name"] not in first and len(layer["shape"]) == 3]
    name_later = later[len(later) // 2] if later else ex.layers[-1]["name"]
    layer_ms, layer_cpu = _median_ms(lambda: json.dumps(ex.layer(name_later, limit=16, sort="strength")), reps)
    input_id = body["input_id"]

    def cold() -> None:  # the input's activations were dropped: one forward again, then the layer
        ex._values.pop(input_id, None)
        json.dumps(ex.layer(name_later, input_id=input_id, limit=16, sort="strength"))
    cold_ms, cold_cpu = _median_ms(cold, reps)
    return {"model": name, "input_size": list(ex.input_size), "layers": len(ex.layers),
            "layers_in_answer": len(first), "load_s": round(load_s, 2),
            "forward_ms": forward, "forward_cpu_ms": forward_cpu,
            "answer_ms": answer_ms, "answer_cpu_ms": answer_cpu,
            "answer_vs_forward": round(answer_ms / forward, 2), "answer_vs_forward_cpu": round(answer_cpu / forward_cpu, 2),
            "payload_bytes": len(answer["text"]), "later_layer": name_later,
            "later_layer_ms": layer_ms, "later_layer_cpu_ms": layer_cpu,
            "later_layer_vs_forward": round(layer_ms / forward, 3),
            "later_layer_cold_ms": cold_ms, "later_layer_cold_vs_forward": round(cold_ms / forward, 2)}


def explorer_speed(models: list[str], reps: int) -> dict:
    import torch

    torch.set_num_threads(1)  # what `convscope serve` uses by default
    out = {"cpus": os.cpu_count(), "threads": 1, "loadavg_before": os.getloadavg()[0], "models": []}
    for name in models:
        out["models"].append(explorer_speed_one(name, reps))
    out["loadavg_after"] = os.getloadavg()[0]
    big = [m for m in out["models"] if m["model"] != "lenet5"]
    out["goals"] = {"answer_within_3x_forward": all(m["answer_vs_forward"] <= 3 for m in big),
                    "answer_within_3x_forward_cpu": all(m["answer_vs_forward_cpu"] <= 3 for m in big),
                    "payload_under_1mb": all(m["payload_bytes"] < 1_000_000 for m in big),
                    "later_layer_under_one_forward": all(m["later_layer_vs_forward"] < 1 for m in big)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=str(ROOT / "runs" / "demo"))
    ap.add_argument("--quick", action="store_true", help="2 s phases and a 6 s robustness phase")
    ap.add_argument("--batching", action="store_true",
                    help="only: today's server (max_batch=1) against micro-batching, 16 clients")
    ap.add_argument("--classroom", action="store_true",
                    help="only: 200 simulated students for 60 s (10%% malformed) against the batching server")
    ap.add_argument("--baseline-ref", default=BASELINE_REF,
                    help="--batching: the commit whose unbatched server is today's (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="--batching: rounds of the three servers")
    ap.add_argument("--students", type=int, default=200, help="--classroom: how many (default 200)")
    ap.add_argument("--seconds", type=float, default=None, help="--batching/--classroom: phase length")
    ap.add_argument("--explorer-speed", action="store_true",
                    help="instead: the explorer on big networks against a plain forward, in this process")
    ap.add_argument("--models", default="lenet5,resnet50,densenet121,inception_v4",
                    help="models for --explorer-speed (comma-separated)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per figure for --explorer-speed")
    args = ap.parse_args()
    if args.explorer_speed:
        print(json.dumps(explorer_speed(args.models.split(","), args.reps), indent=2))
        return 0
    run = Path(args.run)
    if not (run / "model.safetensors").is_file():
        run = fallback_run()
    if args.batching or args.classroom:
        out = {"run": str(run), "cpus": os.cpu_count(), "loadavg_before": round(os.getloadavg()[0], 1)}
        if args.batching:
            out["in_process_cpu_per_answer"] = in_process_batch_cpu(run)
            out["batching_16_clients"] = batching_comparison(run, args.seconds or (3 if args.quick else 10),
                                                             rounds=args.rounds, baseline_ref=args.baseline_ref)
        if args.classroom:
            out["classroom"] = classroom(run, args.students, args.seconds or (10 if args.quick else 60))
        print(json.dumps(out, indent=2))
        return 0
    short, long_ = (2, 6) if args.quick else (10, 60)
    out = {"run": str(run), "cpus": os.cpu_count(), "loadavg_before": os.getloadavg()[0],
           "predict_only_ms": predict_only_ms(run), "servers": {}}
    for threads, workers in ((1, 1), (2, 1), (1, 2)):
        proc, port = start_server(run, threads, workers)
        try:
            load_phase(port, 4, 3.0 if workers > 1 else 1.0)  # warm-up (workers start one by one)
            key = f"threads_{threads}_workers_{workers}"
            out["servers"][key] = {f"clients_{c}": load_phase(port, c, short, pid=proc.pid) for c in (1, 16)}
            if (threads, workers) == (1, 1):
                before = rss_mb(proc.pid)
                robust = load_phase(port, 32, long_, bad_share=0.10, pid=proc.pid)
                robust.update(rss_before_mb=round(before, 1), rss_after_mb=round(rss_mb(proc.pid), 1))
                robust["rss_growth_mb"] = round(robust["rss_after_mb"] - before, 1)
                out["robustness_32_clients_10pct_malformed"] = robust
        finally:
            proc.terminate()
            proc.wait(10)
    out["loadavg_after"] = os.getloadavg()[0]
    base = out["predict_only_ms"]["cpu_ms"]  # CPU per prediction without HTTP, this process
    for per in out["servers"].values():
        for phase in per.values():
            phase["cpu_vs_in_process"] = round(phase["server_cpu_ms_per_request"] / base, 2)
            # what one whole core would sustain at this CPU cost (derived, not measured)
            phase["rate_per_free_core"] = round(1000 / phase["server_cpu_ms_per_request"])
    c16 = out["servers"]["threads_1_workers_1"]["clients_16"]
    rob = out["robustness_32_clients_10pct_malformed"]
    out["goals"] = {"median_under_10ms_at_16": c16["median_ms"] < 10, "p99_under_50ms_at_16": c16["p99_ms"] < 50,
                    "at_least_300_per_s": c16["predictions_per_s"] >= 300,
                    "at_least_300_per_s_with_workers_2":
                        out["servers"]["threads_1_workers_2"]["clients_16"]["predictions_per_s"] >= 300,
                    "no_errors": all(p["errors"] == 0 for per in out["servers"].values() for p in per.values()),
                    "no_5xx_when_malformed": rob["errors"] == 0, "rss_growth_under_50mb": rob["rss_growth_mb"] < 50}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
