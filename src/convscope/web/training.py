"""The explorer's Train tab, server side: start, pause, resume and stop one training.

    GET  /api/train/options  the models, datasets, folders and recipes the tab offers, and the
                             number ranges of its fields (from limits.LIMITS)
    GET  /api/train/status   {"state", "run", "message", "spec", "seq"}
    POST /api/train/start    a TrainRequest as JSON ({"model", "data", "epochs", ["lr", "recipe",
                             "seed", "batch_size", "model_kwargs", "out", "pace_ms", ...]}) -> 202;
                             409 while one runs, 422 for a request that cannot train, 413 over 64 KiB
    POST /api/train/pause | /resume | /stop   (a JSON object body, e.g. {})
    GET  /api/train/events   server-sent events: every worker event, and a "status" event
                             at least once a second

A request is checked once, by `TrainRequest.parse` (convscope.train.request), confined as a
server must be: the run folder lies under `app.state.runs_root` (symlinks and `..` resolved), the
data is a named dataset or one of `app.state.train_folders` (the folders the server was started
with). Then `convscope.train.api.preflight` checks what needs the data (does the model fit it, is
the run folder free), with the network on the meta device. Nothing is written, and no process
started, for a request that fails: it is answered with a 4xx and one short message.

The training runs in its own process (`convscope.web.train_worker`), through
`convscope.train.api.train_request`: the run folder is the one the CLI writes with the same
seed, and the server only relays the worker's progress lines. Stop is the loop's Ctrl-C (the
exact position is saved); resume continues from it. When a training ends, its run is handed to
`app.state.open_run(run_dir)` (the explorer loads it aside and swaps its model slot).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from convscope import limits
from convscope.errors import UserError, one_line
from convscope.train.request import NAMED_DATASETS, TrainRequest

router = APIRouter(prefix="/api/train", tags=["train"])
_TRAINERS: "weakref.WeakSet[Trainer]" = weakref.WeakSet()

MODELS = [
    {"value": "lenet5", "label": "LeNet-5", "model": "lenet5", "kwargs": {}},
    {"value": "convnet_small", "label": "convnet_small", "model": "convnet_small", "kwargs": {}},
    {"value": "convnet_wide", "label": "convnet_wide", "model": "convnet_wide", "kwargs": {}},
    {"value": "resnet18-small", "label": "ResNet-18 (small input)", "model": "resnet18",
     "kwargs": {"small_input": True}},
]
DATASETS = list(NAMED_DATASETS)
FIELDS = ("epochs", "lr", "batch_size", "seed", "pace_ms", "threads")  # the tab's number fields
BUSY = ("starting", "running", "paused", "stopping")
MAX_EVENTS = 50_000
MAX_BODY = 64 * 1024
MAX_DETAIL = 300      # characters of an error detail
STOP_WAIT = 2.5       # seconds the server's shutdown waits for a resumable stop before killing


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, separators=(",", ":")), status_code=status, media_type="application/json")


def _refuse(message: object, status: int) -> Response:
    return _json({"detail": one_line(message)[:MAX_DETAIL]}, status)


# ---- checking a request --------------------------------------------------------------------

def _with_preset(body: Mapping[str, Any]) -> dict[str, Any]:
    """The tab's model presets (resnet18-small = resnet18 with small_input) as plain settings."""
    body = dict(body)
    preset = next((m for m in MODELS if m["value"] == body.get("model")), None)
    if preset is not None and preset["kwargs"]:
        kwargs = body.get("model_kwargs")
        body["model"] = preset["model"]
        body["model_kwargs"] = dict(preset["kwargs"], **kwargs) if isinstance(kwargs, Mapping) else \
            (preset["kwargs"] if kwargs is None else kwargs)
    return body


def _writable(out: Path) -> None:
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the run folder {out}: {parent} is not a folder you can write to; "
                        f"choose another run folder")


def check_request(body: Mapping[str, Any], runs_root: str | Path, folders: list[str] | None = None) -> TrainRequest:
    """The checked request for `body`, or UserError; reads the data, writes nothing, allocates no
    weights (`preflight` builds the network on the meta device)."""
    from convscope.train.api import preflight

    req = TrainRequest.parse(_with_preset(body), runs_root=runs_root, data_allowed=folders or [])
    _writable(req.out)
    try:
        preflight(req)
    except UserError:
        raise
    except (ValueError, OSError, KeyError, TypeError, RuntimeError) as exc:  # the library's own messages
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise UserError(one_line(msg)[:MAX_DETAIL]) from None
    return req


# ---- the training process ------------------------------------------------------------------

class Trainer:
    """One training process at a time, its events, and what happens when it ends."""

    def __init__(self, on_done: Callable[[str], None] | None = None, *, defaults: dict | None = None) -> None:
        self.defaults = dict(defaults or {})  # e.g. {"threads": 1}: request values a request did not set
        self.on_done = on_done
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.state, self.message, self.run = "idle", "", None
        self.request: TrainRequest | None = None
        self.events: list[dict] = []
        self.seq = 0
        self.stderr_tail: list[str] = []
        _TRAINERS.add(self)

    @property
    def spec(self) -> dict | None:
        return self.request.to_json() if self.request is not None else None

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
    def busy_message(self) -> str | None:
        """Why a new training cannot start now, or None."""
        if self.state not in BUSY:
            return None
        r = self.request
        return (f"a training is already {self.state} ({r.model if r else '?'} on {r.data if r else '?'} -> "
                f"{self.run}); stop it first, or wait for it to finish: one training at a time")

    def start(self, req: TrainRequest) -> None:
        with self.lock:
            if self.state in BUSY:
                raise UserError(self.busy_message())
            unset = {k: v for k, v in self.defaults.items() if getattr(req, k, 0) is None}
            req = dataclasses.replace(req, **unset)
            self.events, self.request, self.run = [], req, str(req.out)
        self._spawn(req)

    def _spawn(self, req: TrainRequest) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[2]),
                                                        env.get("PYTHONPATH", "")] if p)
        self._set("starting", f"starting {req.model_name()} on {req.data_name()}")
        self.proc = subprocess.Popen([sys.executable, "-m", "convscope.web.train_worker",
                                      json.dumps(req.to_json()), str(os.getpid())],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    def _drain(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip()[:MAX_DETAIL]])[-20:]

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
                    opened = self.on_done(self.run)
                    self._add({"type": "opened", "run": self.run, "version": getattr(opened, "version", None)})
                    message += " is open in the explorer"
                except Exception as exc:  # noqa: BLE001  (the training is fine; only the explorer could not load it)
                    self._add({"type": "error", "message": f"trained, but the explorer could not open "
                                                           f"{self.run}: {one_line(exc)[:MAX_DETAIL]}"})
            self._set("done", message)
        elif kind == "stopped":
            self._set("stopped", last.get("message", "stopped"))
        else:
            msg = (last or {}).get("message") if kind == "error" else None
            tail = next((ln for ln in reversed(self.stderr_tail) if ln.strip()), "")
            self._set("error", msg or f"the training process ended with status {code}: {tail}")

    def _signal(self, sig: int) -> None:
        try:
            self.proc.send_signal(sig)
        except (ProcessLookupError, OSError):  # it ended a moment ago; its reader says how
            pass

    def pause(self) -> None:
        with self.lock:
            if self.state != "running" or self.proc is None:
                raise UserError(f"nothing to pause: the training is {self.state}")
            self._signal(signal.SIGUSR1)  # the worker holds still after its step (train_worker.Watch)
        self._set("paused", "paused: resume continues from this step")

    def stop(self) -> None:
        with self.lock:
            if self.state not in ("starting", "running", "paused") or self.proc is None:
                raise UserError(f"nothing to stop: the training is {self.state}")
            self._signal(signal.SIGINT)  # the loop's Ctrl-C: finish the step, save, exit
        self._set("stopping", "stopping: saving the exact position")

    def resume(self) -> None:
        with self.lock:
            state, proc = self.state, self.proc
        if state == "paused" and proc is not None:
            self._signal(signal.SIGUSR2)
            self._set("running", "training")
            return
        if state != "stopped" or not self.run or self.request is None:
            raise UserError(f"nothing to resume: the training is {state}" +
                            (" (start a new one)" if state in ("idle", "done", "error") else ""))
        first = self.request
        self._spawn(TrainRequest(model=first.model, data=first.data, out=first.out, resume=True,
                                 threads=first.threads, device=first.device, pace_ms=first.pace_ms))

    def shutdown(self, wait: float = STOP_WAIT) -> None:
        """The server is stopping: stop the training as the Stop button does (resumable; SIGTERM,
        which the worker takes as one Stop however often it comes, so the SIGINT of a Ctrl-C to
        the whole process group does not count twice); what has not ended `wait` seconds later
        is killed, so this returns within about wait + 0.5 s."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()


def shutdown_all() -> None:
    """Stop every Train-tab training of this process (the server is stopping); within ~3 s."""
    for trainer in list(_TRAINERS):
        trainer.shutdown()


# ---- routes -------------------------------------------------------------------------------

def _open_run(app: Any, run: str) -> Any:
    """Hand the finished run to the explorer (`app.state.open_run`, which loads it aside and
    swaps the explorer's model slot under the engine's lock): the snapshot now shown."""
    open_run = getattr(app.state, "open_run", None)
    if open_run is None:
        raise RuntimeError("the explorer cannot open runs")
    return open_run(run)


def trainer_for(app: Any) -> Trainer:
    trainer = getattr(app.state, "trainer", None)
    if trainer is None:
        trainer = app.state.trainer = Trainer(lambda run: _open_run(app, run),
                                              defaults=getattr(app.state, "train_defaults", None))
    return trainer


def _runs_root(app: Any) -> str:
    return str(getattr(app.state, "runs_root", None) or os.environ.get("CONVSCOPE_RUNS", "runs"))


def _folders(app: Any) -> list[str]:
    return [str(f) for f in getattr(app.state, "train_folders", None) or []]


async def _body(request: Request) -> dict | Response:
    """The request's JSON object, or the 400/413 answer; never reads more than MAX_BODY bytes."""
    from convscope.web.decode import InputError, read_body

    try:
        raw = await read_body(request, MAX_BODY)
    except InputError as exc:
        return _refuse(exc, exc.status)
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond Python's stack
        obj = None
    if not isinstance(obj, dict):
        return _refuse('the body must be a JSON object, e.g. {"model": "lenet5", "data": "mnist", "epochs": 1}', 400)
    return obj


router.add_event_handler("shutdown", shutdown_all)


def _ranges() -> dict[str, dict]:
    out = {}
    for key in FIELDS:
        lim = limits.LIMITS[key]
        out[key] = {"kind": "int" if lim.kind is int else "float", "min": lim.low, "max": lim.high,
                    "min_open": lim.low_open, "max_open": lim.high_open, "text": lim.describe()}
    return out


@router.get("/options")
async def options(request: Request) -> Response:
    from convscope.train.config import RECIPES

    return _json({"models": MODELS, "datasets": DATASETS, "folders": _folders(request.app),
                  "recipes": list(RECIPES), "ranges": _ranges(), "runs_root": _runs_root(request.app),
                  "status": trainer_for(request.app).status()})


@router.get("/status")
async def status(request: Request) -> Response:
    return _json(trainer_for(request.app).status())


@router.post("/start")
async def start(request: Request) -> Response:
    trainer = trainer_for(request.app)
    body = await _body(request)
    if isinstance(body, Response):
        return body
    busy = trainer.busy_message()
    if busy:
        return _refuse(busy, 409)
    try:
        req = await run_in_threadpool(check_request, body, _runs_root(request.app), _folders(request.app))
    except UserError as exc:
        return _refuse(exc, 422)
    except Exception as exc:  # noqa: BLE001  (a request the checks did not foresee: still the caller's, never a 5xx)
        return _refuse(f"this request cannot be trained: {type(exc).__name__}: {one_line(exc)[:120]}", 422)
    try:
        trainer.start(req)
    except UserError as exc:  # another start won the race
        return _refuse(exc, 409)
    return _json(dict(trainer.status(), detail=f"training {req.model_name()} on {req.data_name()} -> {req.out}"), 202)


def _control(action: str):
    async def handler(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        if body:
            return _refuse(f"/api/train/{action} takes no settings: send {{}}", 422)
        trainer = trainer_for(request.app)
        try:
            getattr(trainer, action)()
        except UserError as exc:
            return _refuse(exc, 409)
        return _json(trainer.status())
    handler.__name__ = action
    return handler


for _action in ("pause", "resume", "stop"):
    router.add_api_route(f"/{_action}", _control(_action), methods=["POST"])


@router.get("/events")
async def events(request: Request) -> StreamingResponse:
    trainer = trainer_for(request.app)
    try:
        seq = max(0, int((request.headers.get("last-event-id") or request.query_params.get("since") or "0")[:20]))
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
