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

Bad input answers 4xx with {"detail": message}; the body is capped at 16 MiB
both by its Content-Length and by counting the bytes as they stream in, so a
lying or chunked client cannot make the server buffer more.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from convscope.web.batching import Overloaded
from convscope.web.encoding import MAX_BODY_BYTES, InputError, image_from_request, parse_body
from convscope.web.inference import BIG_MACS, Explorer

STATIC = Path(__file__).parent / "static"


def _json(obj: Any, status: int = 200) -> Response:
    # json.dumps directly: FastAPI's jsonable_encoder walks every float of the
    # 28x28 lists and costs more than the whole forward pass.
    return Response(json.dumps(obj, separators=(",", ":")), status_code=status,
                    media_type="application/json")


def _raw_json(text: str) -> Response:
    return Response(text, media_type="application/json")


def _error(exc: InputError) -> Response:
    return _json({"detail": str(exc)}, exc.status)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, or InputError 413 as soon as it is known to exceed `limit` bytes."""
    too_big = InputError(f"the request body is over {limit // (1024 * 1024)} MiB; send a smaller image file "
                         "(scale it down first)", 413)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InputError("the Content-Length header is not a number", 400)
        if int(declared) > limit:
            raise too_big
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


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


def _check_json_type(request: Request) -> None:
    """InputError 415 for a body declared as something other than JSON (a form post
    from another site, say); no Content-Type at all is read as JSON."""
    declared = request.headers.get("content-type")
    if declared is None:
        return
    kind = declared.split(";")[0].strip().lower()
    if kind != "application/json" and not (kind.startswith("application/") and kind.endswith("+json")):
        raise InputError(f"the body is declared as {kind or 'nothing'!r}; send JSON with "
                         "Content-Type: application/json", 415)


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
               processes: int = 0) -> FastAPI:
    """The explorer app for a run folder, a model name ("resnet18", "torchvision:resnet18")
    or an already built Explorer (loaded once, here).

    `max_batch`: the most image requests to /api/predict that one forward pass answers
    (1: each alone, on the event loop); `max_wait_s`: how long the first request of a
    batch may wait for company. Networks over BIG_MACS are not batched. `processes`: answer
    processes that compute the batches (web/pool.py; 0: this process computes them)."""
    if explorer is None:
        if run_dir is None and model is None:
            raise ValueError("create_app needs a run folder, a model name or an Explorer")
        explorer = Explorer.from_run(run_dir) if run_dir is not None else Explorer.from_name(model)
    app = FastAPI(title="convscope explorer", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.explorer = explorer
    described: dict[str, Any] = {}  # describe()'s answer as JSON, made again when the model changes

    def model_json() -> str:
        desc = explorer.describe()
        if described.get("of") is not desc:  # the Train tab swaps a finished run in place
            described.update({"of": desc, "json": json.dumps(desc, separators=(",", ":"))})
        return described["json"]

    model_json()
    slow = explorer.macs > BIG_MACS  # big networks run in a worker thread, so the loop keeps serving
    model_lock = threading.Lock()  # one forward pass of this process's model at a time
    batcher, pool = (None, None) if slow else predict_batcher(explorer, max_batch=max_batch, max_wait_s=max_wait_s,
                                                              processes=processes, lock=model_lock)
    app.state.batcher, app.state.pool = batcher, pool

    if pool is not None:
        app.router.add_event_handler("shutdown", pool.close)

    async def call(fn, *args, **kwargs):
        if slow:
            return await run_in_threadpool(fn, *args, **kwargs)
        if batcher is not None:  # off the loop, never beside a batch computed in this process
            return await batcher.call(_locked, model_lock, fn, *args, **kwargs)
        return fn(*args, **kwargs)

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        # the run's folder name only: its absolute path would tell any client the server's layout
        return {"status": "ok", "model": explorer.name, "run": explorer.run_name,
                "dataset": explorer.config.get("dataset"), "classes": explorer.classes,
                "random_weights": explorer.random_weights, "origin": explorer.origin_name,
                "batching": None if batcher is None else {
                    "max_batch": batcher.max_batch, "batches_at_once": batcher.concurrency,
                    "batches": batcher.stats.to_dict(),
                    "answer_processes": pool.status() if pool is not None else None}}

    @app.get("/api/model")
    async def model_info() -> Response:
        return Response(model_json(), media_type="application/json")

    @app.post("/api/predict")
    async def predict(request: Request) -> Response:
        # Small networks run on the event loop on purpose: one forward of lenet5 is
        # ~0.2 ms, less than a hop to the thread pool (see docs/benchmarks.md).
        try:
            _check_json_type(request)
            obj = parse_body(await read_body(request))
            if "sample" in obj:
                index = obj["sample"]
                if isinstance(index, bool) or not isinstance(index, int):
                    raise InputError('"sample" must be the index of a sample (GET /api/samples lists them)')
                return _raw_json(await call(explorer.predict_sample_json, index))
            if batcher is not None:  # requests that arrive together share one forward (web/batching.py)
                return _raw_json(await batcher.submit(obj))
            image, preprocess = image_from_request(obj)
            return _raw_json(await call(explorer.predict_json, image, preprocess=preprocess))
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
            out = await call(explorer.layer, name, input_id=_int(request, "input", None),
                             offset=_int(request, "offset", 0), limit=_int(request, "limit", 64),
                             sort=request.query_params.get("sort", "index"))
            return _json(out)
        except InputError as exc:
            return _error(exc)

    @app.get("/api/weights")
    async def weights(request: Request) -> Response:
        """The weights of one unit: ?name=conv1&unit=3."""
        try:
            name = request.query_params.get("name") or ""
            return _json(explorer.weights(name, _int(request, "unit", 0)))
        except InputError as exc:
            return _error(exc)

    @app.get("/api/gradcam")
    async def gradcam(request: Request) -> Response:
        """Why this class: Grad-CAM for the first (?rank=0) or second (?rank=1) guess of ?input=ID."""
        try:
            out = await run_in_threadpool(explorer.gradcam, input_id=_int(request, "input", None),
                                          rank=_int(request, "rank", 0))
            return _json(out)
        except InputError as exc:
            return _error(exc)

    @app.get("/api/samples")
    async def samples(request: Request) -> Response:
        """Images of the run's test split with their true labels: ?offset=&limit=&wrong=1."""
        try:
            wrong = request.query_params.get("wrong", "0") not in ("0", "false", "")
            out = await call(explorer.samples, offset=_int(request, "offset", 0),
                             limit=_int(request, "limit", 24), wrong=wrong)
            return _json(out)
        except InputError as exc:
            return _error(exc)

    page = page_html()

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(page, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.state.optional_routers = _include_optional_routers(app)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"nothing at {request.url.path}; the API is /api/health, /api/model, "
                                       "POST /api/predict, /api/layer, /api/weights, /api/samples and /api/gradcam"},
                            status_code=404)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _locked(lock: threading.Lock, fn, *args, **kwargs):
    with lock:
        return fn(*args, **kwargs)


def predict_batcher(explorer: Explorer, *, max_batch: int = 32, max_wait_s: float = 0.002, processes: int = 0,
                    lock: threading.Lock | None = None):
    """(Batcher, AnswerPool or None) answering parsed /api/predict image bodies ((None, None)
    for max_batch 1): a body that cannot be read fails alone, the rest of its batch shares one
    forward pass. With `processes` >= 1 the batches are computed in that many answer processes
    (web/pool.py), as many at a time, and in this process (holding `lock`) until they are ready."""
    from convscope.web.batching import Batcher
    from convscope.web.pool import AnswerPool, answer_bodies

    if max_batch <= 1:
        return None, None
    # every forward pass gets MIN_ROWS rows, so an answer does not depend on its batch's size
    from convscope.web.inference import MIN_ROWS

    explorer.min_rows = max(explorer.min_rows, MIN_ROWS)
    pool = AnswerPool(explorer, processes) if processes >= 1 else None
    lock = lock or threading.Lock()

    def here(bodies: list[dict[str, Any]]) -> list[Any]:
        return [a if isinstance(a, InputError) else a[0] for a in answer_bodies(explorer, bodies)]

    def run_batch(bodies: list[dict[str, Any]]) -> list[Any]:
        answers = pool.answer(bodies) if pool is not None else None
        if answers is not None:
            return answers
        return _locked(lock, here, bodies)

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
    if os.environ.get("CONVSCOPE_MODEL"):
        return create_app(model=os.environ["CONVSCOPE_MODEL"])
    return create_app(os.environ["CONVSCOPE_RUN"])
