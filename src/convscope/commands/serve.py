"""`convscope serve`: the interactive explorer on http://127.0.0.1:8000."""
from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import sys
import threading
from typing import Any, Iterator

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

Only this server's own page may drive it: requests naming another host (DNS
rebinding) and changes sent from another site are refused. With --host other
than a loopback address (0.0.0.0: a classroom) every request needs a token,
printed in the URL to open (as Jupyter does); scripts send
'Authorization: token ...'. SIGTERM or Ctrl-C ends it within seconds, with
its answer processes and a Train-tab training (saved, resumable).
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
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 shares it, "
                             "then every request needs the token printed in the URL)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for inference (default 1: fastest for one small image, "
                             "see docs/benchmarks.md)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes, each with its own copy of the model (default 1)")
    parser.add_argument("--train-folder", action="append", default=[], metavar="DIR",
                        help="a folder of your own images (one subfolder per class) the Train tab may train "
                             "on as folder:DIR (repeatable; no other folder can be named from the page)")
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
    if args.model is None and args.run is None:
        args.run = DEFAULT_RUN
    args.train_folder = _train_folders(args)  # checked before anything starts
    with stopping() as stop:
        code = _start_and_serve(args, stop)
    if stop.signal is not None:
        exit_now(code)
    return code


def _start_and_serve(args: argparse.Namespace, stop: "Stopping") -> int:
    # Until the answer processes may start, a stop signal simply ends this process (the
    # kernel's default action, immediate even inside an import, where an exception raised by
    # a Python handler may be swallowed): nothing else is running yet. The slow parts (the
    # imports, loading the network) happen here.
    stop.plain()
    processes = _answer_processes(args.answer_processes, args.workers)
    _preload()
    from convscope.web.guard import is_loopback
    from convscope.web.live import bind_socket

    # off this machine every route needs a token, printed in the URL (as Jupyter does)
    token = None if is_loopback(args.host) else secrets.token_urlsafe(24)
    if args.workers > 1:
        sock = bind_socket(args.host, args.port)  # a busy port is one line, before any process starts
        try:
            return _serve_workers(args, sock, token)
        finally:
            sock.close()
    from convscope.web import Explorer

    # the run first: what is wrong with it is its own line, whatever else holds the port
    explorer = Explorer.from_run(args.run) if args.model is None else Explorer.from_name(args.model)
    sock = bind_socket(args.host, args.port)  # then the port: a busy one is one line, before any process starts
    try:
        stop.quiet()  # from here the answer processes start: a signal is noted, then acted on
        return _serve(args, sock, token, processes, explorer, stop)
    finally:
        sock.close()


def _preload() -> None:
    """Import what create_app and uvicorn will (torch, FastAPI, the optional routers)."""
    import importlib

    import uvicorn  # noqa: F401 - imported for its time, here

    from convscope.web import app

    for name in getattr(app, "OPTIONAL_ROUTERS", ()):
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(name)


def _code(stop: "Stopping") -> int:
    return 130 if stop.signal == signal.SIGINT else 0  # Ctrl-C: the shell's 128 + 2


def exit_now(code: int) -> None:
    """End this process after a stop signal: atexit's work (multiprocessing's clean-up of its
    semaphores and queues), then out, without the interpreter's teardown of torch's modules
    (2 s on a busy 2-core machine, of the 5 s a stop may take). Nothing is left to tear down."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _serve(args: argparse.Namespace, sock: Any, token: str | None, processes: int, explorer: Any,
           stop: "Stopping") -> int:
    """One server process: the app, its answer processes, uvicorn; everything they started
    ends with it (app_ended) however it is asked to stop."""
    import torch
    import uvicorn

    from convscope.web import create_app
    from convscope.web.live import StoppingServer, server_settings

    torch.set_num_threads(args.threads)
    app = None
    try:
        app = create_app(explorer=explorer, processes=processes, host=args.host, token=token,
                         train_folders=args.train_folder)
        if stop.signal is None:  # else it came while the app started: end now
            _print_address(args, app, sock, token)
            server = StoppingServer(uvicorn.Config(app, **_common(), **server_settings()), lambda: app_ended(app),
                                    pending=lambda: stop.signal)
            server.run(sockets=[sock])
            stop.signal = stop.signal or server.signal
    finally:
        stop.quiet()
        if app is not None:
            app_ended(app)
    return _code(stop)


def _serve_workers(args: argparse.Namespace, sock: Any, token: str | None) -> int:
    """Several server processes share the socket; each loads the run itself (the copy loaded
    here only checks it, before anything is printed)."""
    import uvicorn

    from convscope.web import create_app
    from convscope.web.live import Supervisor, server_settings

    folders = args.train_folder
    app = (create_app(args.run, processes=0, host=args.host, token=token, train_folders=folders) if args.model is None
           else create_app(model=args.model, processes=0, host=args.host, token=token, train_folders=folders))
    _print_address(args, app, sock, token)
    del app
    os.environ.update(CONVSCOPE_RUN=str(args.run or ""), CONVSCOPE_MODEL=str(args.model or ""),
                      CONVSCOPE_THREADS=str(args.threads), CONVSCOPE_HOST=args.host,
                      CONVSCOPE_TOKEN=token or "", CONVSCOPE_TRAIN_FOLDERS=os.pathsep.join(folders))
    config = uvicorn.Config("convscope.web.app:app_from_env", factory=True, workers=args.workers,
                            **_common(), **server_settings())
    Supervisor(config, sockets=[sock]).run()
    return 0


def _common() -> dict[str, Any]:
    # 2 s for answers in flight; the Train tab's event stream never ends by itself, so it is cut then
    return dict(log_level="warning", access_log=False, timeout_graceful_shutdown=2, log_config=_log_config())


def _train_folders(args: argparse.Namespace) -> list[str]:
    """--train-folder values, each an existing folder (else one line, exit 2)."""
    from pathlib import Path

    out = []
    for text in args.train_folder:
        path = Path(text).expanduser()
        if not path.is_dir():
            raise UserError(f"--train-folder {text[:80]} is not a folder; name a folder of class subfolders")
        out.append(str(path.resolve()))
    return out


def _print_address(args: argparse.Namespace, app: Any, sock: Any, token: str | None) -> None:
    port = sock.getsockname()[1]
    explorer = app.state.explorer
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "localhost") else args.host
    host = f"[{host}]" if ":" in host else host
    if args.model is None:
        print(f"convscope explorer: {explorer.name} from {args.run} ({explorer.config.get('dataset')})")
    else:
        print(f"convscope explorer: {explorer.origin}")
    if token is None:
        print(f"  open http://{host}:{port}   (Ctrl+C to stop)", flush=True)
        return
    print(f"  open http://{host}:{port}/?token={token}   (Ctrl+C to stop)")
    if args.host in ("0.0.0.0", "::"):  # the guard answers to this machine's own name too
        print(f"  from another machine: http://{socket.gethostname()}:{port}/?token={token}")
    print(f"  this server listens on {args.host}, beyond this machine: every request needs this token "
          "(the link sets it in the browser; scripts send 'Authorization: token ...')", flush=True)


def app_ended(app: Any) -> None:
    """End what the app started: its answer processes, a Train-tab training (saved,
    resumable). Safe to call more than once, from any thread."""
    pool = getattr(app.state, "pool", None)
    if pool is not None:
        pool.close()
    trainer = getattr(app.state, "trainer", None)
    if trainer is not None:
        trainer.shutdown()


# ---- stopping: SIGTERM or Ctrl-C at any moment --------------------------------------------

class Stopping:
    """How this process takes SIGTERM and SIGINT while `convscope serve` starts and ends:
    `plain()`: the default actions (nothing started yet: the process just ends); `quiet()`:
    noted in `signal`, while the answer processes start (serve then ends at once) and while
    everything ends. uvicorn's StoppingServer takes them over while it serves, and stops at
    once for one noted before. `stopping()` restores the handlers as they were."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def _note(self, sig: int, frame: Any) -> None:
        self.signal = self.signal or sig

    def plain(self) -> None:
        self._set(signal.SIG_DFL)

    def quiet(self) -> None:
        self._set(self._note)

    def _set(self, handler: Any) -> None:
        if threading.current_thread() is threading.main_thread():  # only it may set them
            for sig in STOP_SIGNALS:
                signal.signal(sig, handler)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stopping() -> Iterator[Stopping]:
    """A Stopping; the signal handlers as they were afterwards."""
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if main else {}
    try:
        yield Stopping()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
