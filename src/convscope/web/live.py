"""The explorer served by uvicorn: the settings that keep it answering (`server_settings`),
its listening socket, and a server in a background thread for tests, docs and scripts.

uvicorn closes an idle keep-alive connection (timeout_keep_alive) and answers 503 beyond
limit_concurrency, but it never closes a connection whose request header does not finish:
enough of those (a slow or hostile client, half-open sockets) use up the server's file
descriptors and nothing is answered any more. The HTTP protocol here adds that deadline.
"""
from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import socket
import threading
import time
from typing import Any, Callable, Iterator

import uvicorn
import uvicorn.supervisors

HEADER_DEADLINE_S = 10.0  # a request's head (request line + headers) must arrive within this
KEEP_ALIVE_S = 5          # an idle connection between requests is closed after this
# Open connections and running requests at once, beyond which requests are answered 503: a
# class of 200 browsers opens up to 6 connections each at a page load (benchmarks/serve.py: 16+).
MAX_CONNECTIONS = 2048
FD_RESERVE = 256          # descriptors kept for files, the answer processes' pipes, the model


class HeaderDeadline:
    """Mixin for uvicorn's HTTP protocols: close a connection whose request head has not
    arrived within `header_deadline_s` of the connection (or of the first byte after the
    previous answer). Only uvicorn's own attributes (loop, transport, cycle) are used."""

    header_deadline_s = HEADER_DEADLINE_S
    _head_timer: asyncio.TimerHandle | None = None
    _head_cycle: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._between_requests():  # the next request begins
            self._arm_head_timer()
        super().data_received(data)  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _between_requests(self) -> bool:
        cycle = self.cycle  # type: ignore[attr-defined]
        return cycle is None or cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._head_cycle = self.cycle  # type: ignore[attr-defined]
        self._head_timer = self.loop.call_later(self.header_deadline_s, self._head_too_slow)  # type: ignore[attr-defined]

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        # a new cycle means a head did arrive; the keep-alive timeout covers the time after it
        if self.cycle is self._head_cycle and self._between_requests():  # type: ignore[attr-defined]
            self.transport.close()  # type: ignore[attr-defined]


def _protocols() -> dict[str, type]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    found: dict[str, type] = {"h11": type("H11WithDeadline", (HeaderDeadline, H11Protocol), {"__module__": __name__})}
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is optional for uvicorn
        return found
    found["httptools"] = type("HttpToolsWithDeadline", (HeaderDeadline, HttpToolsProtocol), {"__module__": __name__})
    return found


_PROTOCOLS = _protocols()
H11WithDeadline = _PROTOCOLS["h11"]
HttpToolsWithDeadline = _PROTOCOLS.get("httptools")
# uvicorn's "auto": httptools when installed (faster), else h11
HTTP_PROTOCOL: type = HttpToolsWithDeadline or H11WithDeadline


def with_header_deadline(seconds: float, base: type | None = None) -> type:
    """HTTP_PROTOCOL (or `base`) with another header deadline (tests use a short one)."""
    base = base or HTTP_PROTOCOL
    return type(base.__name__, (base,), {"header_deadline_s": seconds, "__module__": __name__})


def server_settings(*, header_deadline_s: float = HEADER_DEADLINE_S,
                    max_connections: int = MAX_CONNECTIONS) -> dict[str, Any]:
    """uvicorn.Config keywords that keep the server answering under idle, slow or half-open
    sockets: a header deadline, the keep-alive timeout and a cap on open connections."""
    http = HTTP_PROTOCOL if header_deadline_s == HEADER_DEADLINE_S else with_header_deadline(header_deadline_s)
    return {"http": http, "timeout_keep_alive": KEEP_ALIVE_S, "limit_concurrency": connection_cap(max_connections)}


def connection_cap(wanted: int = MAX_CONNECTIONS) -> int:
    """MAX_CONNECTIONS, or fewer where this process may not open that many descriptors (the
    soft limit is raised towards the hard one first: a shell's default is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - FD_RESERVE))


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app: Any, *, timeout: float = 20.0, **settings: Any) -> Iterator[str]:
    """uvicorn serving `app` on a free loopback port in a thread, with the settings of
    `convscope serve` (`settings`: server_settings's keywords); yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, **server_settings(**settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the explorer server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port for uvicorn (bound before the address is printed, so
    it is true), or UserError saying why not."""
    from convscope.errors import UserError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise UserError(f"cannot resolve --host {host!r}: {exc}") from None
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP; without it Nagle + delayed ACKs add ~40 ms per answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); "
                        f"is another server running? pick another with --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class StoppingServer(uvicorn.Server):
    """uvicorn's Server for `convscope serve`. At SIGTERM or SIGINT it starts `on_stop` (end
    the answer processes and a training) at once, in a thread, beside uvicorn's wait for
    answers in flight, and the lifespan's shutdown handlers wait for it (never a trainer
    asked to stop twice at once). It returns afterwards instead of raising the signal again
    as uvicorn does, which killed the process before atexit ran ("leaked semaphore")."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None],
                 pending: Callable[[], int | None] = lambda: None) -> None:
        super().__init__(config)
        self.signal: int | None = None  # the first stop signal received
        self._on_stop = on_stop
        self._pending = pending  # a signal that arrived before this server took them over
        self._stopper: threading.Thread | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.signal is None:
            self.signal = sig
            self._stopper = threading.Thread(target=self._on_stop, name="convscope-stop", daemon=True)
            self._stopper.start()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # only it receives signals
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        pending = self._pending()
        if pending is not None:
            self.handle_exit(pending, None)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        lifespan_shutdown = self.lifespan.shutdown

        async def after_stop() -> None:
            if self._stopper is not None:
                await asyncio.to_thread(self._stopper.join, 10)
            await lifespan_shutdown()
        self.lifespan.shutdown = after_stop  # type: ignore[method-assign]


class Supervisor(uvicorn.supervisors.Multiprocess):
    """uvicorn's supervisor of `--workers N` processes, whose workers start with Ctrl-C
    ignored: a Ctrl-C to the terminal's process group while they import torch printed each
    one's KeyboardInterrupt traceback. The supervisor ends them (SIGTERM); once serving,
    uvicorn's own handlers take SIGINT over in each worker."""

    def init_processes(self) -> None:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited across the spawn's exec
        try:
            super().init_processes()
        finally:
            signal.signal(signal.SIGINT, previous)
