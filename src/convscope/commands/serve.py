"""`convscope serve`: the interactive explorer on http://127.0.0.1:8000."""
from __future__ import annotations

import argparse
import os

from convscope.errors import UserError

NAME = "serve"
HELP = "serve the interactive explorer: draw or upload an image, watch every layer respond"
ORDER = 70
DESCRIPTION = """\
Serve the explorer page and its JSON API for a trained run of any model
(grey or RGB, any size: lenet5, convnet_small, resnet18, densenet121, ...), or
for a zoo network without a run. The model is loaded once; the page is plain
HTML/CSS/JS, so it works offline.

  convscope train --model lenet5 --data mnist --recipe mnist-fast --out runs/demo
  convscope serve --run runs/demo            # then open http://127.0.0.1:8000
  convscope serve --model resnet18           # random weights (the page says so)
  convscope serve --model torchvision:resnet18   # torchvision's ImageNet weights

API: GET /api/health, /api/model, /api/layer, /api/weights, /api/samples;
POST /api/predict (see docs/explorer.md).
"""
DEFAULT_RUN = "runs/demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", default=None, metavar="DIR",
                       help=f"run folder to serve (default: {DEFAULT_RUN}, what `make demo` trains)")
    which.add_argument("--model", default=None, metavar="NAME",
                       help="serve a zoo network with random weights (`convscope models` lists them), "
                            "or torchvision:NAME with torchvision's pretrained weights")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 shares it)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for inference (default 1: fastest for one small image, "
                             "see docs/benchmarks.md)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes, each with its own copy of the model (default 1)")
    parser.add_argument("--answer-processes", default="auto", metavar="N|auto",
                        help="processes that compute batches of /api/predict answers for the one server "
                             "process (default auto: one per core, at most 4, none on one core; 0: the server "
                             "process computes them). Only with --workers 1")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {args.port}")
    if args.threads < 1 or args.workers < 1:
        which = "--threads" if args.threads < 1 else "--workers"
        raise UserError(f"{which} must be 1 or more, got {min(args.threads, args.workers)}")
    processes = _answer_processes(args.answer_processes, args.workers)
    import torch
    import uvicorn

    from convscope.web import create_app
    from convscope.web.live import bind_socket

    torch.set_num_threads(args.threads)
    if args.model is None and args.run is None:
        args.run = DEFAULT_RUN
    app = (create_app(args.run, processes=processes) if args.model is None
           else create_app(model=args.model, processes=processes))
    sock = bind_socket(args.host, args.port)  # bound before printing, so the address is true
    port = sock.getsockname()[1]
    explorer = app.state.explorer
    host = "127.0.0.1" if args.host in ("0.0.0.0", "localhost") else args.host
    if args.model is None:
        print(f"convscope explorer: {explorer.name} from {args.run} ({explorer.config.get('dataset')})")
    else:
        print(f"convscope explorer: {explorer.origin}")
    print(f"  open http://{host}:{port}   (Ctrl+C to stop)", flush=True)
    common = dict(log_level="warning", access_log=False, timeout_graceful_shutdown=2, log_config=_log_config())
    if args.workers == 1:
        try:
            uvicorn.Server(uvicorn.Config(app, **common)).run(sockets=[sock])
        finally:  # Ctrl-C, or uvicorn ending: the answer processes go with it, now
            if app.state.pool is not None:
                app.state.pool.close()
        return 0
    # Several processes share the socket; each loads the run itself (the copy loaded
    # above only checked it, before anything was printed).
    from uvicorn.supervisors import Multiprocess

    os.environ.update(CONVSCOPE_RUN=str(args.run or ""), CONVSCOPE_MODEL=str(args.model or ""),
                      CONVSCOPE_THREADS=str(args.threads))
    config = uvicorn.Config("convscope.web.app:app_from_env", factory=True, workers=args.workers, **common)
    Multiprocess(config, sockets=[sock]).run()
    return 0


def _answer_processes(value: str, workers: int) -> int:
    if value == "auto":
        from convscope.web.pool import default_processes

        return default_processes() if workers == 1 else 0
    try:
        n = int(value)
    except ValueError:
        raise UserError(f"--answer-processes must be a whole number or auto, got {value!r}") from None
    if not 0 <= n <= 64:
        raise UserError(f"--answer-processes must be between 0 and 64, got {n}")
    if n and workers > 1:
        raise UserError("--answer-processes is for one server process; with --workers N each worker "
                        "computes its own answers (pass --answer-processes 0 or --workers 1)")
    return n


class QuietShutdown:
    """A logging filter: at Ctrl-C uvicorn cancels requests still arriving and logs each
    cancellation with a traceback; the user asked it to stop, so these say nothing."""

    def filter(self, record) -> bool:
        import asyncio

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            return False
        return not str(record.msg).startswith("Cancel ")  # "Cancel N running task(s), timeout ... exceeded"


def _log_config() -> dict:
    """uvicorn's own logging set-up plus QuietShutdown (a dict, so --workers processes get it too)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["quiet_shutdown"] = {"()": f"{__name__}.QuietShutdown"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("quiet_shutdown")
    return config
