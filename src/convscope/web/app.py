"""The explorer's HTTP side: three JSON routes and a static page (no build step).

    GET  /api/health   {"status": "ok", "model": "lenet5", ...}
    GET  /api/model    layers in order with shapes, kernel/stride/padding,
                       receptive field (rf, jump, start) and the conv kernels
    POST /api/predict  {"image": [[...]]} or {"png": "data:image/png;base64,..."}
                       [+ "preprocess": false] -> probabilities, top, input, raw, layers

Bad input answers 4xx with {"detail": message}; the body is capped at 1 MiB
both by its Content-Length and by counting the bytes as they stream in, so a
lying or chunked client cannot make the server buffer more.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from convscope.web.batching import Overloaded
from convscope.web.encoding import MAX_BODY_BYTES, InputError, image_from_request, parse_body
from convscope.web.inference import Explorer

STATIC = Path(__file__).parent / "static"


def _json(obj: Any, status: int = 200) -> Response:
    # json.dumps directly: FastAPI's jsonable_encoder walks every float of the
    # 28x28 lists and costs more than the whole forward pass.
    return Response(json.dumps(obj, separators=(",", ":")), status_code=status,
                    media_type="application/json")


def _error(exc: InputError) -> Response:
    return _json({"detail": str(exc)}, exc.status)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, or InputError 413 as soon as it is known to exceed `limit` bytes."""
    too_big = InputError(f"the request body is over {limit // 1024} KiB; send a PNG data URL "
                         f"or a smaller image (at most 560x560)", 413)
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


def create_app(run_dir: str | Path | None = None, *, explorer: Explorer | None = None,
               max_batch: int = 32, max_wait_s: float = 0.002) -> FastAPI:
    """The explorer app for a run folder (loaded once, here) or an already built Explorer.

    `max_batch`: the most /api/predict requests answered by one forward pass (1: each
    request alone, on the event loop, as before batching); `max_wait_s`: how long the
    first request of a batch may wait for company."""
    if explorer is None:
        if run_dir is None:
            raise ValueError("create_app needs a run folder or an Explorer")
        explorer = Explorer.from_run(run_dir)
    app = FastAPI(title="convscope explorer", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.explorer = explorer
    model_json = json.dumps(explorer.describe(), separators=(",", ":"))

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": explorer.name, "run": explorer.run_dir,
                "dataset": explorer.config.get("dataset"), "classes": explorer.classes}

    @app.get("/api/model")
    async def model_info() -> Response:
        return Response(model_json, media_type="application/json")

    batcher = app.state.batcher = predict_batcher(explorer, max_batch=max_batch, max_wait_s=max_wait_s)

    @app.post("/api/predict")
    async def predict(request: Request) -> Response:
        # Requests that arrive together share one forward pass (web/batching.py).
        try:
            obj = parse_body(await read_body(request))
            if batcher is None:
                image, preprocess = image_from_request(obj)
                return Response(explorer.predict_json(image, preprocess=preprocess), media_type="application/json")
            return Response(await batcher.submit(obj), media_type="application/json")
        except InputError as exc:
            return _error(exc)
        except Overloaded as exc:
            return _json({"detail": str(exc)}, 503)
        except ClientDisconnect:  # nobody is left to read an answer
            return _json({"detail": "the client went away before sending the whole body"}, 400)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"nothing at {request.url.path}; the API is /api/health, "
                                       "/api/model and POST /api/predict"}, status_code=404)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def predict_batcher(explorer: Explorer, *, max_batch: int = 32, max_wait_s: float = 0.002):
    """A Batcher answering parsed /api/predict bodies with JSON text (None for max_batch 1).

    A body that cannot be read fails alone (its InputError goes to its caller) and
    the rest of its batch shares one forward pass."""
    from convscope.web.batching import Batcher

    if max_batch <= 1:
        return None

    def run_batch(bodies: list[dict[str, Any]]) -> list[Any]:
        answers: list[Any] = [None] * len(bodies)
        good: list[int] = []
        requests = []
        for i, obj in enumerate(bodies):
            try:
                requests.append(image_from_request(obj))
                good.append(i)
            except InputError as exc:
                answers[i] = exc
        for i, text in zip(good, explorer.predict_json_batch(requests) if requests else []):
            answers[i] = text
        return answers

    return Batcher(run_batch, max_batch=max_batch, max_wait_s=max_wait_s)


def app_from_env() -> FastAPI:
    """App factory for `convscope serve --workers N`: each worker process loads the run
    named by $CONVSCOPE_RUN with $CONVSCOPE_THREADS torch threads."""
    import torch

    torch.set_num_threads(int(os.environ.get("CONVSCOPE_THREADS", "1")))
    return create_app(os.environ["CONVSCOPE_RUN"])
