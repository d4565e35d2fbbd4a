"""Bad input gets a 4xx with a message for people, never a 5xx, and the server goes on."""
from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest

from convscope.web.decode import MAX_BODY_BYTES

pytestmark = pytest.mark.xdist_group("web")
GOOD = {"image": np.pad(np.ones((12, 3)), 8).tolist()}


def _png_bytes(w: int, h: int, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format=fmt)
    return buf.getvalue()


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h (8-bit grey) with almost no data: a decompression bomb's start."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


NESTED = "[" * 100_000 + "]" * 100_000
BAD_JSON_BODIES = {  # raw bodies: (bytes, expected status)
    "not json": (b"{\"image\": [[0, 1]", 400),
    "empty body": (b"", 400),
    "not utf-8": (b"\xff\xfe{}", 400),
    "nesting too deep": (f'{{"image": {NESTED}}}'.encode(), 400),
    "NaN": (b'{"image": ' + json.dumps([[0.5] * 8] * 7 + [[0.5] * 7 + [float("nan")]]).encode() + b"}", 422),
    "Infinity": (b'{"image": ' + json.dumps([[0.5] * 8] * 7 + [[0.5] * 7 + [float("inf")]]).encode() + b"}", 422),
    "huge number": (b'{"image": [' + b",".join([b"[" + b",".join([b"1e999"] * 8) + b"]"] * 8) + b"]}", 422),
}

BAD_OBJECTS = {  # JSON objects: expected status
    "a list, not an object": ([[0, 1]], 422),
    "no image": ({"preprocess": True}, 422),
    "image and png": ({**GOOD, "png": _url(_png_bytes(28, 28))}, 422),
    "image is a string": ({"image": "0,1,0"}, 422),
    "image is an object": ({"image": {"0": [0, 1]}}, 422),
    "image is 1-D": ({"image": [0.0] * 64}, 422),
    "image is 3-D": ({"image": [[[0.0]] * 8] * 8}, 422),
    "strings inside": ({"image": [["0.5"] * 8] * 8}, 422),
    "nulls inside": ({"image": [[None] * 8] * 8}, 422),
    "booleans inside": ({"image": [[True] * 8] * 8}, 422),
    "ragged rows": ({"image": [[0.0] * 8] * 7 + [[0.0] * 9]}, 422),
    "empty image": ({"image": []}, 422),
    "empty rows": ({"image": [[]]}, 422),
    "1x1 image": ({"image": [[0.5]]}, 422),
    "7x8 image": ({"image": [[0.5] * 8] * 7}, 422),
    "value above 1": ({"image": [[1.5] * 8] * 8}, 422),
    "value below 0": ({"image": [[-0.1] * 8] * 8}, 422),
    "values 0-255": ({"image": [[255] * 8] * 8}, 422),
    "561 rows": ({"image": [[0] * 8] * 561}, 413),
    "preprocess not a bool": ({**GOOD, "preprocess": "yes"}, 422),
    "png not a string": ({"png": 12}, 422),
    "png without data URL": ({"png": base64.b64encode(_png_bytes(28, 28)).decode()}, 415),
    "jpeg data URL": ({"png": "data:image/jpeg;base64," + base64.b64encode(_png_bytes(28, 28, "JPEG")).decode()}, 415),
    "broken base64": ({"png": "data:image/png;base64,iVBORw0KGgo!!!"}, 400),
    "not a PNG inside": ({"png": _url(_png_bytes(28, 28, "GIF"))}, 415),
    "text inside": ({"png": _url(b"hello, this is not an image")}, 415),
    "truncated PNG": ({"png": _url(_png_bytes(64, 64)[:60])}, 400),
    "1x1 PNG": ({"png": _url(_png_bytes(1, 1))}, 422),
    "10000x10000 PNG": ({"png": _url(_png_bytes(10000, 10000))}, 413),
    "30000x30000 PNG header": ({"png": _url(_png_header(30000, 30000))}, 413),  # past Pillow's bomb limit
}


def _still_answers(client) -> None:
    assert client.get("/api/health").json()["status"] == "ok"
    r = client.post("/api/predict", json=GOOD)
    assert r.status_code == 200 and len(r.json()["probabilities"]) == 10


def _check(r, status: int) -> None:
    assert r.status_code == status, r.text[:300]
    detail = r.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 15


@pytest.mark.parametrize("case", list(BAD_JSON_BODIES))
def test_bad_bodies(client, case):
    body, status = BAD_JSON_BODIES[case]
    _check(client.post("/api/predict", content=body, headers={"Content-Type": "application/json"}), status)
    _still_answers(client)


@pytest.mark.parametrize("case", list(BAD_OBJECTS))
def test_bad_objects(client, case):
    obj, status = BAD_OBJECTS[case]
    _check(client.post("/api/predict", json=obj), status)
    _still_answers(client)


def test_messages_say_what_to_do(client):
    r = client.post("/api/predict", json={"image": [[2.0] * 8] * 8})
    assert "[0, 1]" in r.json()["detail"] and "2" in r.json()["detail"]
    r = client.post("/api/predict", json={"png": _url(_png_bytes(10000, 10000))})
    assert "10000x10000" in r.json()["detail"] and "560x560" in r.json()["detail"]


def test_body_over_the_limit_by_content_length(client):
    body = b'{"image": [' + b" " * MAX_BODY_BYTES + b"]}"
    _check(client.post("/api/predict", content=body), 413)
    _still_answers(client)


def test_body_over_the_limit_streamed_without_length(client):
    sent = []

    def chunks():  # chunked transfer: no Content-Length to check, so the server must count
        for _ in range(MAX_BODY_BYTES // 65536 + 8):
            sent.append(1)
            yield b" " * 65536

    _check(client.post("/api/predict", content=chunks()), 413)
    _still_answers(client)


def test_a_lying_content_length_over_a_real_socket(random_explorer, web_support):
    """Over TCP: a client streaming more than the limit chunked, and one announcing more than it."""
    import http.client

    from convscope.web import create_app

    with web_support.live_server(create_app(explorer=random_explorer)) as url:
        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.putrequest("POST", "/api/predict")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for _ in range(MAX_BODY_BYTES // 65536 + 8):
                chunk = b" " * 65536
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may hang up once it has answered 413
        assert conn.getresponse().status == 413
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/api/predict", body=b"x" * 10, headers={"Content-Length": str(MAX_BODY_BYTES + 1)})
        assert conn.getresponse().status == 413
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/api/predict", body=json.dumps(GOOD), headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
