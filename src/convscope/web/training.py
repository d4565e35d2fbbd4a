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

The training runs in its own process (`convscope.web.train_worker`, driven by
`web/trainer.py`'s Trainer), through `convscope.train.api.train_request`: the run folder is
the one the CLI writes with the same seed, and the server only relays the worker's progress
lines. Stop is the loop's Ctrl-C (the
exact position is saved); resume continues from it. When a training ends, its run is handed to
`app.state.open_run(run_dir)` (the explorer loads it aside and swaps its model slot).
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from convscope import limits
from convscope.errors import UserError, one_line
from convscope.train.request import NAMED_DATASETS, TrainRequest
from convscope.web.trainer import Trainer, shutdown_all

router = APIRouter(prefix="/api/train", tags=["train"])

MODELS = [
    {"value": "lenet5", "label": "LeNet-5", "model": "lenet5", "kwargs": {}},
    {"value": "convnet_small", "label": "convnet_small", "model": "convnet_small", "kwargs": {}},
    {"value": "convnet_wide", "label": "convnet_wide", "model": "convnet_wide", "kwargs": {}},
    {"value": "resnet18-small", "label": "ResNet-18 (small input)", "model": "resnet18",
     "kwargs": {"small_input": True}},
]
DATASETS = list(NAMED_DATASETS)
FIELDS = ("epochs", "lr", "batch_size", "seed", "pace_ms", "threads")  # the tab's number fields
MAX_BODY = 64 * 1024
MAX_DETAIL = 300      # characters of an error detail


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
