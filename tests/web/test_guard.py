"""A hostile page cannot drive the explorer: the crafted requests of a cross-site page, a
DNS-rebinding page and a stranger on the network are refused before any route runs."""
from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, Request

from convscope.web.guard import COOKIE, Guard, add_guard, is_loopback

pytestmark = pytest.mark.xdist_group("web")

LOCAL = "http://127.0.0.1"
BODY = json.dumps({"model": "lenet5", "data": "mnist", "epochs": 1})


def _app(host: str = "127.0.0.1", token: str | None = None):
    """A plain app whose routes record that they ran, behind the guard."""
    app = FastAPI()
    app.state.calls = []

    @app.post("/api/train/start")
    async def start(request: Request) -> dict:
        app.state.calls.append(await request.body())
        return {"ok": True}

    @app.get("/api/health")
    async def health() -> dict:
        app.state.calls.append(b"health")
        return {"status": "ok"}

    add_guard(app, host=host, token=token)
    return app


@pytest.fixture()
def app():
    return _app()


def _client(app, base_url: str = LOCAL):
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=base_url)


@pytest.mark.parametrize("headers", [
    {"Content-Type": "text/plain"},                                   # a cross-site "simple" request
    {"Content-Type": "text/plain", "Origin": "https://evil.example"},
    {"Content-Type": "application/x-www-form-urlencoded"},           # a form post
    {"Content-Type": "multipart/form-data; boundary=x", "Origin": "null"},
    {"Content-Type": "application/json", "Origin": "https://evil.example"},   # foreign Origin
    {"Content-Type": "application/json", "Origin": "http://127.0.0.1:9999"},  # another port is another site
    {"Content-Type": "application/json", "Origin": "null"},          # a sandboxed frame, a file:// page
    {"Origin": "http://127.0.0.1"},                                   # a page's POST with no type at all
])
def test_cross_site_writes_are_refused_before_the_route(app, headers):
    res = _client(app).post("/api/train/start", content=BODY, headers=headers)
    assert res.status_code in (403, 415), res.text
    assert app.state.calls == []
    detail = res.json()["detail"]
    assert "\n" not in detail and len(detail) < 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "192.168.1.20", "[::2]:80"])
def test_a_foreign_host_is_refused_for_reads_and_writes(app, host):
    c = _client(app)
    assert c.get("/api/health", headers={"Host": host}).status_code == 421
    res = c.post("/api/train/start", content=BODY, headers={"Host": host, "Content-Type": "application/json"})
    assert res.status_code == 421 and app.state.calls == []


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "127.0.0.1"])
def test_this_machines_own_names_are_answered(app, host):
    assert _client(app).get("/api/health", headers={"Host": host}).json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json", "Origin": LOCAL},            # the page itself
    {"Content-Type": "application/json; charset=utf-8", "Origin": "http://127.0.0.1:80"},
    {"Content-Type": "application/merge-patch+json"},
    {},                                                               # curl or a script: no Origin, no type
])
def test_the_pages_own_json_and_scripts_are_answered(app, headers):
    res = _client(app).post("/api/train/start", content=BODY, headers=headers)
    assert res.status_code == 200, res.text
    assert app.state.calls == [BODY.encode()]


def test_error_details_never_repeat_a_long_input(app):
    huge = "x" * 100_000
    res = _client(app).post("/api/train/start", content=BODY,
                            headers={"Content-Type": "application/json", "Origin": "http://" + huge})
    assert res.status_code == 403 and len(res.content) < 400
    res = _client(app).get("/api/health", headers={"Host": huge + ".example"})
    assert res.status_code == 421 and len(res.content) < 400


def test_a_missing_host_header_is_refused():
    import asyncio

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def never(scope, receive, send_):  # the app behind the guard
        raise AssertionError("the route ran")
    scope = {"type": "http", "method": "GET", "path": "/api/health", "headers": [], "query_string": b""}
    asyncio.run(Guard(never)(scope, None, send))
    assert sent[0]["status"] == 400


TOKEN = "s3cret-token-of-twenty-four-chars"


def test_with_a_token_every_route_needs_it():
    app = _app(host="0.0.0.0", token=TOKEN)
    c = _client(app, "http://192.168.1.20:8000")  # any address of this machine, off loopback
    res = c.get("/api/health")
    assert res.status_code == 401 and "?token=" in res.json()["detail"]
    assert c.get("/api/health", headers={"Authorization": "token wrong"}).status_code == 401
    assert c.get("/api/health?token=" + TOKEN[:-1]).status_code == 401
    assert c.post("/api/train/start", content=BODY, headers={"Content-Type": "application/json"}).status_code == 401
    assert app.state.calls == []
    assert c.get("/api/health", headers={"Authorization": f"token {TOKEN}"}).status_code == 200


def test_the_token_in_the_url_sets_a_strict_cookie_the_page_then_carries():
    app = _app(host="0.0.0.0", token=TOKEN)
    c = _client(app, "http://192.168.1.20:8000")
    res = c.get("/api/health", params={"token": TOKEN})
    assert res.status_code == 200
    cookie = res.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert c.get("/api/health").status_code == 200  # the cookie alone, as the page's fetches
    fresh = _client(app, "http://192.168.1.20:8000")
    assert fresh.get("/api/health", headers={"Cookie": f"{COOKIE}=nope"}).status_code == 401


def test_with_a_token_a_foreign_origin_still_cannot_write():
    app = _app(host="0.0.0.0", token=TOKEN)
    res = _client(app, "http://192.168.1.20:8000").post(
        "/api/train/start", params={"token": TOKEN}, content=BODY,
        headers={"Content-Type": "application/json", "Origin": "https://evil.example"})
    assert res.status_code == 403 and app.state.calls == []


def test_a_name_bound_server_answers_to_that_name_only():
    app = _app(host="192.168.1.20", token=TOKEN)
    auth = {"Authorization": f"token {TOKEN}"}
    assert _client(app, "http://192.168.1.20:8000").get("/api/health", headers=auth).status_code == 200
    assert _client(app, "http://10.0.0.9:8000").get("/api/health", headers=auth).status_code == 421


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.20", False), ("myhost.lan", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_the_explorer_behind_the_guard_writes_nothing_for_a_cross_site_page(tmp_path, monkeypatch):
    """The real app: a text/plain POST to /api/train/start and a folder: data set from a
    foreign Origin start nothing and create no run folder."""
    from convscope.web import create_app

    monkeypatch.setenv("CONVSCOPE_RUNS", str(tmp_path / "runs"))
    app = create_app(model="lenet5", processes=0)
    app.state.runs_root = tmp_path / "runs"
    if not any(m.cls is Guard for m in app.user_middleware):  # create_app may already guard it
        add_guard(app)
    crafted = [({"Content-Type": "text/plain"}, BODY),
               ({"Content-Type": "application/json", "Origin": "https://evil.example"},
                json.dumps({"model": "lenet5", "data": "folder:/etc", "out": str(tmp_path / "stolen")})),
               ({"Content-Type": "application/json", "Host": "rebound.example"}, BODY)]
    with _client(app) as c:
        for headers, body in crafted:
            assert c.post("/api/train/start", content=body, headers=headers).status_code in (403, 415, 421)
        status = c.get("/api/train/status").json()
    assert status["state"] == "idle"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "stolen").exists()


def test_a_wildcard_bind_answers_to_this_machines_own_name_but_not_to_a_rebinding_name():
    import socket

    app = _app(host="0.0.0.0", token=TOKEN)
    auth = {"Authorization": f"token {TOKEN}"}
    own = socket.gethostname()
    assert _client(app, f"http://{own}:8000").get("/api/health", headers=auth).status_code == 200
    assert _client(app, "http://rebound.evil.example:8000").get("/api/health", headers=auth).status_code == 421
