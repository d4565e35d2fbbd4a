"""Who may drive the explorer: Host, Origin, Content-Type and (off loopback) a token.

    add_guard(app)                                   # the default: bound to 127.0.0.1, this machine's pages only
    add_guard(app, host=bound, token=secret)         # only when the user passes --host beyond
                                                     # loopback: then every route needs the token

A web page on another site can make the user's browser send requests to a server on
127.0.0.1; the guard refuses what such a page can send:
- a Host header that is not this server's (DNS rebinding: evil.example resolved to
  127.0.0.1 reads the answers as same-origin), 421;
- a state-changing request (POST, ...) from another origin (its Origin header), 403, or
  with a body a form or a "simple" cross-site request can send (text/plain, form data),
  415: a page can only send JSON to another site after a CORS preflight, which this
  server never grants;
- without the token, when the server listens beyond this machine, 401 (as Jupyter does:
  `?token=T` once in the URL sets a cookie; scripts send `Authorization: token T`).

It is a pure ASGI middleware (not BaseHTTPMiddleware): the server-sent events of the Train
tab stream through it untouched and /api/predict pays a few dict look-ups.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import socket
from http.cookies import SimpleCookie
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

COOKIE = "convscope_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
SHOWN = 40  # the most characters of a caller's own input an error repeats

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def add_guard(app: Any, *, host: str = "127.0.0.1", token: str | None = None) -> None:
    """Put the guard in front of every route of `app` (a Starlette/FastAPI app, before it
    starts). `host`: the address the server binds; `token`: required on every request when
    given (pass one whenever `host` is not a loopback address)."""
    app.add_middleware(Guard, host=host, token=token)


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name to bind) reaches this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """The name in a Host header or an origin's authority: lowercased, port and the
    brackets of an IPv6 address cut."""
    try:
        return urlsplit("//" + value.strip()).hostname or ""
    except ValueError:  # "[::1" and the like
        return ""


def _authority(value: str, scheme: str) -> tuple[str, int | None]:
    """(name, port) of host[:port], the scheme's default port when none is written."""
    parts = urlsplit("//" + value.strip())
    return parts.hostname or "", parts.port or {"http": 80, "https": 443}.get(scheme)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _machine_names() -> set[str]:
    """This machine's own names and the addresses they resolve to (for a wildcard bind)."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        try:
            names.update(info[4][0].lower() for info in socket.getaddrinfo(name, None))
        except OSError:
            continue
    return {n for n in names if n}


def _short(text: str) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


class Guard:
    """The ASGI middleware add_guard installs (see the module docstring)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", token: str | None = None) -> None:
        self.app = app
        self.token = token
        self.wildcard = host.strip("[]") in WILDCARDS
        bound = host.strip("[]").lower()  # an address or a name to bind: no port
        self.allowed = set(LOOPBACK_NAMES) | ({bound} if not self.wildcard else _machine_names())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _refuse(scope, send, *refusal)
            return
        if self.token is not None and _query_token(scope) is not None:
            send = _setting_cookie(send, self.token)
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, one line) when the request must not reach the app, else None."""
        host = headers.get("host")
        if host is None:
            return 400, "the request has no Host header; send one (HTTP/1.1 requires it)"
        if not self._host_ok(_host_name(host)):
            return 421, (f"this server does not answer for the host {_short(host)!r}; "
                         "open it by its own address (http://127.0.0.1:PORT)")
        if self.token is not None and not self._has_token(scope, headers):
            return 401, ("this server needs its token: open the URL it printed when it started "
                         "(it ends in ?token=...), or send 'Authorization: token ...'")
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            return _write_refusal(scope, headers, host)
        return None

    def _host_ok(self, name: str) -> bool:
        # With a wildcard bind any IP literal is fine: a rebinding page has a *name*
        # that resolves to this machine; a page whose origin is an IP is that machine's own.
        return name in self.allowed or (self.wildcard and _is_ip(name))

    def _has_token(self, scope: Scope, headers: dict[str, str]) -> bool:
        offered = [_query_token(scope), _cookie_token(headers.get("cookie")),
                   _auth_token(headers.get("authorization"))]
        expected = self.token.encode()
        return any(t is not None and hmac.compare_digest(t.encode(), expected) for t in offered)


def _write_refusal(scope: Scope, headers: dict[str, str], host: str) -> tuple[int, str] | None:
    """A state-changing request: from this server's own page (or no page at all), with JSON."""
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, scope.get("scheme", "http"), host):
        return 403, (f"requests that change something are refused from another site "
                     f"(Origin {_short(origin)!r}); use the explorer's own page")
    declared = headers.get("content-type")
    if declared is None:
        if origin is None:  # curl, scripts: nothing a browser page sends cross-site
            return None
        return 415, "send the body as JSON with Content-Type: application/json"
    kind = declared.split(";")[0].strip().lower()
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        return None
    return 415, f"the body is declared as {_short(kind)!r}; send JSON with Content-Type: application/json"


def _same_origin(origin: str, scheme: str, host: str) -> bool:
    """Whether `origin` (scheme://host[:port]) is the page this server serves at `host`."""
    o_scheme, sep, authority = origin.strip().lower().partition("://")
    if not sep or o_scheme != scheme:
        return False  # "null" (a sandboxed frame, a file:// page) included
    try:
        return _authority(authority, scheme) == _authority(host, scheme)
    except ValueError:  # a port that is not a number
        return False


def _headers(scope: Scope) -> dict[str, str]:
    # latin-1: what HTTP headers are; a repeated header keeps its first value
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _query_token(scope: Scope) -> str | None:
    raw = scope.get("query_string", b"").decode("latin-1")
    if "token=" not in raw:
        return None
    return next((v for k, v in parse_qsl(raw, keep_blank_values=True) if k == "token"), None)


def _cookie_token(header: str | None) -> str | None:
    if not header:
        return None
    cookie = SimpleCookie()
    try:
        cookie.load(header)
    except Exception:  # noqa: BLE001 - a malformed Cookie header carries no token
        return None
    return cookie[COOKIE].value if COOKIE in cookie else None


def _auth_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() in ("token", "bearer") else None


def _setting_cookie(send: Send, token: str) -> Send:
    """`send` that also sets the token cookie, so the page's own requests carry it."""
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = dict(message, headers=list(message.get("headers", [])) + [(b"set-cookie", cookie)])
        await send(message)
    return wrapped


async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
