"""The explorer's HTTP side: JSON routes and a static page (no build step).

    GET  /api/health   {"status": "ok", "model": "lenet5", "random_weights": false, ...}
    GET  /api/model    layers in forward order: name, kind, shape, inputs (the graph),
                       kernel/stride/padding, receptive field (rf, jump, start),
                       params and MACs; small conv kernels
    POST /api/predict  {"image": [[...]]}, {"png": "data:image/png;base64,..."},
                       {"file": "data:image/<type>;base64,..."} or {"sample": i}
                       [+ "preprocess": false] -> probabilities, top, input, raw,
                       input_id, warnings, the first screen of layers
    GET  /api/layer    ?name=L[&input=ID&offset=0&limit=64&sort=index|strength]
    GET  /api/weights  ?name=L&unit=i: one unit's kernel / row / batch-norm channel
    GET  /api/samples  ?offset=0&limit=24[&wrong=1]: the run's test images, true labels
    GET  /api/gradcam  ?input=ID&rank=0|1: Grad-CAM heat map for the first / second guess

Every answer carries the "version" of the network that computed it (web/engine.py: one
model slot; the Train tab swaps a finished run in whole), so the page reloads /api/model
when it changes.

Bad input answers 4xx with {"detail": message}; the body is capped at 16 MiB
both by its Content-Length and by counting the bytes as they stream in, so a
lying or chunked client cannot make the server buffer more.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from convscope.web.answer import Answer
from convscope.web.batching import Batcher, Overloaded
from convscope.web.decode import InputError, parse_body, read_body
from convscope.web.engine import Explorer
from convscope.web.guard import add_guard

STATIC = Path(__file__).parent / "static"
MAX_DETAIL = 300  # characters of an error message: a caller's 100 KB layer name does not come back whole


def _json(obj: Any, status: int = 200) -> Response:
    # json.dumps directly: FastAPI's jsonable_encoder walks every float of the
    # 28x28 lists and costs more than the whole forward pass.
    return Response(json.dumps(obj, separators=(",", ":")), status_code=status,
                    media_type="application/json")


def _raw_json(text: str) -> Response:
    return Response(text, media_type="application/json")


def _error(exc: InputError) -> Response:
    from convscope.errors import one_line

    return _json({"detail": one_line(exc)[:MAX_DETAIL]}, exc.status)


OPTIONAL_ROUTERS = ("convscope.web.units_routes", "convscope.web.training")
OPTIONAL_SCRIPTS = ("units.js", "train.js")


def _include_optional_routers(app: FastAPI) -> list[str]:
    """Routers of the optional explorer parts that are installed (each module exposes `router`)."""
    import importlib

    found = []
    for name in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the part exists but something it needs is missing: say so
                raise
            continue
        app.include_router(module.router)
        found.append(name)
    return found


def page_html() -> bytes:
    """index.html with the optional parts' scripts, for those present in static/."""
    html = (STATIC / "index.html").read_text()
    tags = "".join(f'<script src="/static/{js}"></script>\n' for js in OPTIONAL_SCRIPTS if (STATIC / js).is_file())
    return html.replace("<!-- optional scripts -->", tags).encode()


def _int(request: Request, key: str, default: int | None) -> int | None:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"{key} must be a whole number, got {raw[:20]!r}", 422) from None


def create_app(run_dir: str | Path | None = None, *, explorer: Explorer | None = None,
               model: str | None = None, max_batch: int = 32, max_wait_s: float = 0.002,
               processes: int = 0, host: str = "127.0.0.1", token: str | None = None,
               runs_root: str | Path | None = None, train_folders: Sequence[str | Path] = ()) -> FastAPI:
    """The explorer app for a run folder, a model name ("resnet18", "torchvision:resnet18")
    or an already built engine (web/engine.py).

    `max_batch`: the most image requests to /api/predict that one forward pass answers
    (1: each alone); `max_wait_s`: how long the first request of a batch may wait for
    company. Networks too big to batch (`Snapshot.batched`) are answered alone. `processes`:
    answer processes that compute the batches (web/pool.py; 0: this process computes them).
    `host`: the address the server binds (requests naming another Host are refused);
    `token`: required on every route when it is given (a non-loopback `host`). The Train tab
    writes runs only under `runs_root` (default $CONVSCOPE_RUNS or runs/) and reads `folder:`
    data only from `train_folders`."""
    if explorer is None:
        if run_dir is None and model is None:
            raise ValueError("create_app needs a run folder, a model name or an Explorer")
        explorer = Explorer.from_run(run_dir) if run_dir is not None else Explorer.from_name(model)
    engine = explorer
    app = FastAPI(title="convscope explorer", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.explorer = engine
    app.state.open_run = engine.open_run  # the Train tab's finished run (web/training.py)
    app.state.runs_root = str(runs_root) if runs_root is not None else os.environ.get("CONVSCOPE_RUNS", "runs")
    app.state.train_folders = [str(Path(f).expanduser().resolve()) for f in train_folders]
    batcher, pool = predict_batcher(engine, max_batch=max_batch, max_wait_s=max_wait_s, processes=processes)
    app.state.batcher, app.state.pool = batcher, pool
    if pool is not None:
        app.router.add_event_handler("shutdown", pool.close)

    async def answer(obj: dict[str, Any]) -> Answer:
        """One parsed body answered: batched with others when the network is, else alone."""
        if batcher is not None and engine.snapshot.batched and "sample" not in obj:
            return await batcher.submit(obj)
        [out] = await run_in_threadpool(engine.answer, [obj])
        if isinstance(out, InputError):
            raise out
        return out

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        snap = engine.snapshot  # the run's folder name only: its absolute path would tell any client the layout
        return {"status": "ok", "model": snap.name, "version": snap.version, "run": snap.run_name,
                "dataset": snap.config.get("dataset"), "classes": snap.classes,
                "random_weights": snap.random_weights, "origin": snap.origin_name,
                "batching": None if batcher is None else {
                    "max_batch": batcher.max_batch, "batches_at_once": batcher.concurrency,
                    "batches": batcher.stats.to_dict(),
                    "answer_processes": pool.status() if pool is not None else None}}

    @app.get("/api/model")
    async def model_info() -> Response:
        return _raw_json(engine.snapshot.description_json)

    @app.post("/api/predict")
    async def predict(request: Request) -> Response:
        try:
            out = await answer(parse_body(await read_body(request)))
            return _raw_json(out.json)
        except InputError as exc:
            return _error(exc)
        except Overloaded as exc:
            return _json({"detail": str(exc)}, 503)
        except ClientDisconnect:  # nobody is left to read an answer
            return _json({"detail": "the client went away before sending the whole body"}, 400)

    @app.get("/api/layer")
    async def layer(request: Request) -> Response:
        """One layer's maps for the last input (or ?input=ID): ?name=&offset=&limit=&sort=index|strength."""
        try:
            name = request.query_params.get("name")
            if not name:
                raise InputError("say which layer: /api/layer?name=conv1 (GET /api/model lists them)", 422)
            return _json(await run_in_threadpool(
                engine.layer, name, input_id=_int(request, "input", None), offset=_int(request, "offset", 0),
                limit=_int(request, "limit", 64), sort=request.query_params.get("sort", "index")))
        except InputError as exc:
            return _error(exc)

    @app.get("/api/weights")
    async def weights(request: Request) -> Response:
        """The weights of one unit: ?name=conv1&unit=3."""
        try:
            return _json(engine.weights(request.query_params.get("name") or "", _int(request, "unit", 0)))
        except InputError as exc:
            return _error(exc)

    @app.get("/api/gradcam")
    async def gradcam(request: Request) -> Response:
        """Why this class: Grad-CAM for the first (?rank=0) or second (?rank=1) guess of ?input=ID."""
        try:
            return _json(await run_in_threadpool(engine.gradcam, input_id=_int(request, "input", None),
                                                 rank=_int(request, "rank", 0)))
        except InputError as exc:
            return _error(exc)

    @app.get("/api/samples")
    async def samples(request: Request) -> Response:
        """Images of the run's test split with their true labels: ?offset=&limit=&wrong=1."""
        try:
            wrong = request.query_params.get("wrong", "0") not in ("0", "false", "")
            return _json(await run_in_threadpool(engine.samples, offset=_int(request, "offset", 0),
                                                 limit=_int(request, "limit", 24), wrong=wrong))
        except InputError as exc:
            return _error(exc)

    page = page_html()

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(page, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.state.optional_routers = _include_optional_routers(app)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"nothing at {request.url.path[:80]}; the API is /api/health, /api/model, "
                                       "POST /api/predict, /api/layer, /api/weights, /api/samples and /api/gradcam"},
                            status_code=404)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_guard(app, host=host, token=token)  # Host, Origin, JSON bodies, the token: web/guard.py
    return app


def predict_batcher(engine: Explorer, *, max_batch: int = 32, max_wait_s: float = 0.002,
                    processes: int = 0) -> tuple[Batcher | None, Any]:
    """(Batcher, AnswerPool or None) answering parsed /api/predict bodies ((None, None) for
    max_batch 1): a body that cannot be read fails alone, the rest of its batch shares one
    forward pass. With `processes` >= 1 the batches are computed in that many answer processes
    (web/pool.py), and in this process (under the engine's lock) until they are ready."""
    from convscope.web.pool import AnswerPool

    if max_batch <= 1:
        return None, None
    pool = AnswerPool(engine, processes) if processes >= 1 else None

    def run_batch(bodies: list[dict[str, Any]]) -> list[Answer | InputError]:
        answers = pool.answer(bodies) if pool is not None else None
        return answers if answers is not None else engine.answer(bodies)

    # one batch more than processes: each process finds the next batch waiting when it is done
    # (benchmarks/serve.py --batching: 2 processes, 16 clients: 470/s with 2 at a time, 910/s with 3, 860/s with 4)
    batcher = Batcher(run_batch, max_batch=max_batch, max_wait_s=max_wait_s,
                      concurrency=processes + 1 if pool is not None else 1)
    return batcher, pool


def app_from_env() -> FastAPI:
    """App factory for `convscope serve --workers N`: each worker process loads the run
    named by $CONVSCOPE_RUN with $CONVSCOPE_THREADS torch threads."""
    import torch

    torch.set_num_threads(int(os.environ.get("CONVSCOPE_THREADS", "1")))
    guard = {"host": os.environ.get("CONVSCOPE_HOST") or "127.0.0.1", "token": os.environ.get("CONVSCOPE_TOKEN") or None,
             "train_folders": [f for f in os.environ.get("CONVSCOPE_TRAIN_FOLDERS", "").split(os.pathsep) if f]}
    if os.environ.get("CONVSCOPE_MODEL"):
        return create_app(model=os.environ["CONVSCOPE_MODEL"], **guard)
    return create_app(os.environ["CONVSCOPE_RUN"], **guard)
