"""The explorer's Train tab, server side: start, pause, resume and stop one training.

    GET  /api/train/options  the models, datasets and recipes the tab offers
    GET  /api/train/status   {"state", "run", "message", "spec", "seq"}
    POST /api/train/start    {"model", "data", "epochs", ["lr", "recipe", "seed", "batch_size",
                              "model_kwargs", "out", "pace_ms"]} -> 202; 409 while one runs
    POST /api/train/pause | /resume | /stop
    GET  /api/train/events   server-sent events: every worker event, and a "status" event
                             at least once a second

The training runs in its own process (`convscope.web.train_worker`), through
`convscope.train.train`: the run folder is the one the CLI writes with the same
seed, and the server only relays the worker's progress lines. Everything that
can be wrong with a request (an unknown model, a model that does not fit the
data, a missing dataset, a run folder that cannot be written or already holds a
run) is checked here before the process starts, and answered with a 4xx and one
message: nothing is written for a request that fails. Stop is the loop's Ctrl-C
(the exact position is saved); resume continues from it. When a training ends,
its run is opened in the explorer (the draw tab answers with the new weights).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

router = APIRouter(prefix="/api/train", tags=["train"])
_TRAINERS: "weakref.WeakSet[Trainer]" = weakref.WeakSet()

MODELS = [
    {"value": "lenet5", "label": "LeNet-5", "model": "lenet5", "kwargs": {}},
    {"value": "convnet_small", "label": "convnet_small", "model": "convnet_small", "kwargs": {}},
    {"value": "convnet_wide", "label": "convnet_wide", "model": "convnet_wide", "kwargs": {}},
    {"value": "resnet18-small", "label": "ResNet-18 (small input)", "model": "resnet18",
     "kwargs": {"small_input": True}},
]
DATASETS = ["mnist", "fashion-mnist", "synthetic", "cifar10"]
BUSY = ("starting", "running", "paused", "stopping")
MAX_EVENTS = 50_000


class RequestError(Exception):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, separators=(",", ":")), status_code=status, media_type="application/json")


# ---- checking a request --------------------------------------------------------------------

def _number(body: dict, key: str, kind: type, lo: float, hi: float, default: Any = None) -> Any:
    value = body.get(key, default)
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise RequestError(f"{key} must be a number, got {str(value)[:30]!r}") from None
    if isinstance(value, bool) or not lo <= number <= hi or (kind is int and number != float(value)):
        raise RequestError(f"{key} {value!r} is out of range: use {'a whole number ' if kind is int else ''}"
                           f"from {lo:g} to {hi:g}")
    return number


def _default_out(root: Path, model: str, data: str) -> Path:
    base = root / f"{model}-{data}".replace(":", "-").replace("/", "-")
    out, i = base, 2
    while out.exists():
        out, i = base.with_name(f"{base.name}-{i}"), i + 1
    return out


def _writable(out: Path) -> None:
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise RequestError(f"cannot write the run folder {out}: {parent} is not a folder you can write to; "
                           f"choose another run folder")


def check_request(body: dict, runs_root: Path) -> dict:
    """The worker's spec for a valid request, or RequestError; reads the data, writes nothing."""
    from convscope.models import create_model, list_models
    from convscope.runs import RunDir
    from convscope.train.api import full_kwargs, check_fit, load_dataset
    from convscope.train.config import make_config

    model = str(body.get("model") or "lenet5")
    kwargs = body.get("model_kwargs") or {}
    preset = next((m for m in MODELS if m["value"] == model), None)
    if preset is not None:
        model, kwargs = preset["model"], dict(preset["kwargs"], **kwargs)
    if model not in list_models():
        raise RequestError(f"unknown model {model!r}; choose one of {', '.join(m['value'] for m in MODELS)}")
    if not isinstance(kwargs, dict):
        raise RequestError("model_kwargs must be an object, e.g. {\"small_input\": true}")
    data = str(body.get("data") or "mnist")
    spec = {"model": model, "data": data, "model_kwargs": kwargs,
            "epochs": _number(body, "epochs", int, 1, 500, 1), "lr": _number(body, "lr", float, 1e-8, 100),
            "batch_size": _number(body, "batch_size", int, 1, 65536), "seed": _number(body, "seed", int, 0, 2**31, 0),
            "recipe": body.get("recipe") or None, "pace_ms": _number(body, "pace_ms", float, 0, 5000, 0),
            "threads": _number(body, "threads", int, 1, 256), "device": body.get("device") or None}
    out = Path(body["out"]) if body.get("out") else _default_out(runs_root, model, data)
    try:
        make_config(spec["recipe"], epochs=spec["epochs"], lr=spec["lr"], batch_size=spec["batch_size"])
        RunDir(out).check_out(resume=False, overwrite=False)
        _writable(out)
        dataset = load_dataset(data)
        import torch

        torch.manual_seed(0)
        check_fit(create_model(model, **full_kwargs(kwargs, dataset)), dataset)
    except RequestError:
        raise
    except (ValueError, FileNotFoundError, KeyError, TypeError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise RequestError(str(msg)) from None
    spec["out"] = str(out)
    return spec


# ---- the training process ------------------------------------------------------------------

class Trainer:
    """One training process at a time, its events, and what happens when it ends."""

    def __init__(self, on_done=None, *, runs_root: Path | str = "runs", defaults: dict | None = None) -> None:
        self.runs_root = Path(runs_root)
        self.defaults = dict(defaults or {})  # e.g. {"threads": 1}: spec values a request did not set
        self.on_done = on_done
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.state, self.message, self.run, self.spec = "idle", "", None, None
        self.events: list[dict] = []
        self.seq = 0
        self.stderr_tail: list[str] = []
        _TRAINERS.add(self)

    # events
    def _add(self, event: dict) -> None:
        with self.lock:
            self.seq += 1
            event["seq"] = self.seq
            self.events.append(event)
            if len(self.events) > MAX_EVENTS:
                del self.events[: len(self.events) - MAX_EVENTS]

    def since(self, seq: int) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["seq"] > seq]

    def status(self) -> dict:
        with self.lock:
            return {"state": self.state, "message": self.message, "run": self.run, "spec": self.spec,
                    "seq": self.seq}

    def _set(self, state: str, message: str = "") -> None:
        with self.lock:
            self.state, self.message = state, message
        self._add({"type": "state", "state": state, "message": message, "run": self.run})

    # control
    def busy_message(self) -> str:
        s = self.spec or {}
        return (f"a training is already {self.state} ({s.get('model')} on {s.get('data')} -> {self.run}); "
                f"stop it first, or wait for it to finish: one training at a time")

    def start(self, spec: dict) -> None:
        with self.lock:
            if self.state in BUSY:
                raise RequestError(self.busy_message(), 409)
            spec = dict(spec, **{k: v for k, v in self.defaults.items() if spec.get(k) is None})
            self.events, self.spec, self.run = [], spec, spec["out"]
        self._spawn(dict(spec, resume=False))

    def _spawn(self, spec: dict) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[2]),
                                                        env.get("PYTHONPATH", "")] if p)
        self._set("starting", f"starting {spec['model']} on {spec['data']}")
        self.proc = subprocess.Popen([sys.executable, "-m", "convscope.web.train_worker", json.dumps(spec)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    def _drain(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip()])[-20:]

    def _read(self, proc: subprocess.Popen) -> None:
        last = None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            last = event
            if event.get("type") in ("hello", "step") and self.state == "starting":
                self._set("running", "training")
            self._add(event)
        code = proc.wait()
        self._finish(last, code)

    def _finish(self, last: dict | None, code: int) -> None:
        kind = (last or {}).get("type")
        if kind == "done":
            # open the run first: "done" is said once the explorer answers with the new weights
            message = f"finished: {self.run}"
            if self.on_done is not None:
                try:
                    self.on_done(self.run)
                    self._add({"type": "opened", "run": self.run})
                    message += " is open in the explorer: draw a digit"
                except Exception as exc:  # the training is fine; only the explorer could not load it
                    self._add({"type": "error", "message": f"trained, but the explorer could not open "
                                                           f"{self.run}: {exc}"})
            self._set("done", message)
        elif kind == "stopped":
            self._set("stopped", last.get("message", "stopped"))
        else:
            msg = (last or {}).get("message") if kind == "error" else None
            tail = next((ln for ln in reversed(self.stderr_tail) if ln.strip()), "")
            self._set("error", msg or f"the training process ended with status {code}: {tail}")

    def pause(self) -> None:
        with self.lock:
            if self.state != "running" or self.proc is None:
                raise RequestError(f"nothing to pause: the training is {self.state}", 409)
            self.proc.send_signal(signal.SIGSTOP)
        self._set("paused", "paused: resume continues from this step")

    def stop(self) -> None:
        with self.lock:
            if self.state not in ("starting", "running", "paused") or self.proc is None:
                raise RequestError(f"nothing to stop: the training is {self.state}", 409)
            was_paused = self.state == "paused"
            self.proc.send_signal(signal.SIGINT)  # the loop's Ctrl-C: finish the step, save, exit
            if was_paused:
                self.proc.send_signal(signal.SIGCONT)
        self._set("stopping", "stopping: saving the exact position")

    def resume(self) -> None:
        with self.lock:
            state, proc = self.state, self.proc
        if state == "paused" and proc is not None:
            proc.send_signal(signal.SIGCONT)
            self._set("running", "training")
            return
        if state != "stopped" or not self.run:
            raise RequestError(f"nothing to resume: the training is {state}" +
                               (" (start a new one)" if state in ("idle", "done", "error") else ""), 409)
        first = self.spec or {}
        spec = {"out": self.run, "resume": True, "model": first.get("model"), "data": first.get("data"),
                **{k: first.get(k) for k in ("threads", "pace_ms", "device")}}
        self._spawn(spec)

    def shutdown(self) -> None:
        """The server is stopping: stop the training as the Stop button does (resumable)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.send_signal(signal.SIGCONT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()


# ---- routes -------------------------------------------------------------------------------

def _open_in_explorer(app: Any, run: str) -> None:
    """Put the finished run in the explorer's model slot (web/engine.py swaps it in whole)."""
    app.state.open_run(run)


def trainer_for(app: Any) -> Trainer:
    trainer = getattr(app.state, "trainer", None)
    if trainer is None:
        root = getattr(app.state, "runs_root", None) or os.environ.get("CONVSCOPE_RUNS", "runs")
        trainer = app.state.trainer = Trainer(lambda run: _open_in_explorer(app, run), runs_root=root,
                                              defaults=getattr(app.state, "train_defaults", None))
    return trainer


async def _body(request: Request) -> dict:
    raw = await request.body()
    if len(raw) > 64 * 1024:
        raise RequestError("the request body is over 64 KiB", 413)
    try:
        obj = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError("the body must be JSON, e.g. {\"model\": \"lenet5\", \"data\": \"mnist\", "
                           "\"epochs\": 1}", 400) from None
    if not isinstance(obj, dict):
        raise RequestError("the body must be a JSON object", 400)
    return obj


def _shutdown() -> None:
    for trainer in list(_TRAINERS):
        trainer.shutdown()


router.add_event_handler("shutdown", _shutdown)


@router.get("/options")
async def options(request: Request) -> Response:
    from convscope.train.config import RECIPES

    return _json({"models": MODELS, "datasets": DATASETS, "recipes": list(RECIPES),
                  "status": trainer_for(request.app).status()})


@router.get("/status")
async def status(request: Request) -> Response:
    return _json(trainer_for(request.app).status())


@router.post("/start")
async def start(request: Request) -> Response:
    trainer = trainer_for(request.app)
    try:
        body = await _body(request)
        if trainer.state in BUSY:
            raise RequestError(trainer.busy_message(), 409)
        spec = await run_in_threadpool(check_request, body, trainer.runs_root)
        trainer.start(spec)
    except RequestError as exc:
        return _json({"detail": str(exc)}, exc.status)
    return _json(dict(trainer.status(), detail=f"training {spec['model']} on {spec['data']} -> {spec['out']}"), 202)


def _control(action: str):
    async def handler(request: Request) -> Response:
        trainer = trainer_for(request.app)
        try:
            getattr(trainer, action)()
        except RequestError as exc:
            return _json({"detail": str(exc)}, exc.status)
        return _json(trainer.status())
    handler.__name__ = action
    return handler


for _action in ("pause", "resume", "stop"):
    router.add_api_route(f"/{_action}", _control(_action), methods=["POST"])


@router.get("/events")
async def events(request: Request) -> StreamingResponse:
    trainer = trainer_for(request.app)
    try:
        seq = int(request.headers.get("last-event-id") or request.query_params.get("since") or 0)
    except ValueError:
        seq = 0

    async def stream():
        nonlocal seq
        last_status = 0.0
        yield "retry: 1000\n\n"
        while not await request.is_disconnected():
            for event in trainer.since(seq):
                seq = event["seq"]
                yield f"id: {seq}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
            now = time.monotonic()
            if now - last_status >= 1.0:
                last_status = now
                yield f"event: status\ndata: {json.dumps(trainer.status(), separators=(',', ':'))}\n\n"
            await asyncio.sleep(0.1)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
