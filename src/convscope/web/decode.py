"""What comes in over the wire: a request body read into a `Request`, or an `InputError`.

Images come in as a 2-D JSON list of floats in [0, 1] (white ink on black), a PNG
data URL (the drawing pad), a data URL of any image file Pillow reads, or the index
of one of the run's samples; each becomes a `Request` or an `InputError` whose
message says what was wrong and how to fix it (the API turns it into a 4xx). The
answers going out are `web/encoding.py`'s.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from convscope.limits import MAX_IMAGE_PIXELS, check_image_size

MIN_SIDE = 8
MAX_SIDE = 560
MAX_BODY_BYTES = 16 * 1024 * 1024  # 16 MiB: a phone photo as base64; a 280x280 PNG from the page is ~3-10 kB
PNG_PREFIX = "data:image/png;base64,"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FILE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF"}


class InputError(ValueError):
    """Bad request input: `status` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Any, limit: int = MAX_BODY_BYTES) -> bytes:
    """A request's body, or InputError 413 as soon as it is known to exceed `limit` bytes (by its
    Content-Length, or by counting the bytes as they stream in: a lying or chunked client
    cannot make the server buffer more)."""
    size = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"
    too_big = InputError(f"the request body is over {size}; send a smaller one (an image file: scale it down first)",
                         413)
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


def parse_body(body: bytes) -> dict[str, Any]:
    """Decode the JSON body of /api/predict into a dict (or raise InputError 400)."""
    if not body:
        raise InputError('empty body: send JSON like {"image": [[0, 0.5, ...], ...]} '
                         'or {"png": "data:image/png;base64,..."}', 400)
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InputError(f"the body is not valid JSON ({type(exc).__name__}: {str(exc)[:80]})", 400) from None
    if not isinstance(obj, dict):
        raise InputError(f'expected a JSON object like {{"image": [[...]]}}, got {type(obj).__name__}')
    return obj


@dataclass(frozen=True)
class Request:
    """One image to answer: `image` (an (H, W) float32 array in [0, 1], white ink on black, or a
    PIL image, first frame, 8 bits per channel) with its `preprocess` flag, or `sample`, the
    index of one of the run's samples (fed as it is)."""

    image: Any = None
    preprocess: bool = True
    sample: int | None = None


def read_request(obj: dict[str, Any]) -> Request:
    """A parsed /api/predict body as a Request (or InputError)."""
    if not isinstance(obj, dict):
        raise InputError(f'expected a JSON object like {{"image": [[...]]}}, got {type(obj).__name__}')
    preprocess = obj.get("preprocess", True)
    if not isinstance(preprocess, bool):
        raise InputError(f'"preprocess" must be true or false, got {json.dumps(preprocess)[:40]}')
    given = [k for k in ("image", "png", "file", "sample") if k in obj]
    if len(given) != 1:
        raise InputError('send exactly one of "image" (a 2-D list of floats in [0, 1]), '
                         '"png" (a data:image/png;base64,... URL), "file" (a data:image/...;base64,... URL) '
                         'or "sample" (an index from GET /api/samples)')
    if given[0] == "sample":
        index = obj["sample"]
        if isinstance(index, bool) or not isinstance(index, int):
            raise InputError('"sample" must be the index of a sample (GET /api/samples lists them)')
        return Request(sample=index, preprocess=False)
    read = {"image": image_from_list, "png": image_from_png, "file": image_from_file}[given[0]]
    return Request(image=read(obj[given[0]]), preprocess=preprocess)


def limits_json() -> dict[str, Any]:
    """The limits a request is held to, for the page (GET /api/model "limits"): it checks a
    drawing or a file before sending it with the server's own numbers, never its own."""
    return {"min_side": MIN_SIDE, "max_side": MAX_SIDE, "max_body_bytes": MAX_BODY_BYTES,
            "max_image_pixels": MAX_IMAGE_PIXELS}


def _check_size(h: int, w: int) -> None:
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
        status = 413 if max(h, w) > MAX_SIDE else 422
        raise InputError(f"the image is {h}x{w}; send one from {MIN_SIDE}x{MIN_SIDE} to "
                         f"{MAX_SIDE}x{MAX_SIDE} pixels (scale it first)", status)


def image_from_list(value: Any) -> np.ndarray:
    """A 2-D list of numbers in [0, 1] -> float32 (H, W)."""
    if not isinstance(value, list) or not value or not isinstance(value[0], list):
        raise InputError('"image" must be a non-empty 2-D list of rows, like [[0, 0.5], [1, 0]]')
    h, w = len(value), len(value[0])
    _check_size(h, w)  # before converting: cheap, and refuses giant inputs early
    try:
        arr = np.array(value)  # no dtype: strings, nulls and objects stay visible
    except (ValueError, TypeError, RecursionError):
        raise InputError('"image" rows must all have the same length and hold only numbers') from None
    if arr.ndim != 2:
        raise InputError(f'"image" must be 2-D (rows of numbers), got {arr.ndim} dimension(s)')
    if arr.dtype.kind not in "iuf":
        raise InputError('"image" must hold only numbers in [0, 1] (no strings, nulls or booleans)')
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError('"image" holds NaN or infinity; send numbers in [0, 1]')
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(f'"image" values must lie in [0, 1] (0 = black, 1 = white ink); '
                         f"got values from {lo:g} to {hi:g}")
    return arr


def image_from_png(value: Any):
    """A PNG data URL (what the drawing canvas sends) -> a PIL image."""
    if not isinstance(value, str):
        raise InputError(f'"png" must be a string "{PNG_PREFIX}...", got {type(value).__name__}')
    if not value.startswith(PNG_PREFIX):
        raise InputError(f'"png" must be a PNG data URL starting with "{PNG_PREFIX}"', 415)
    raw = _b64(value[len(PNG_PREFIX):], "png")
    if not raw.startswith(PNG_MAGIC):
        raise InputError('"png" does not hold a PNG file (its first bytes are not the PNG signature)', 415)
    return decode_image(raw, ["PNG"], "png", min_side=MIN_SIDE)


def image_from_file(value: Any):
    """A data URL of an image file (PNG, JPEG, WebP, BMP, GIF) -> a PIL image."""
    if not isinstance(value, str):
        raise InputError(f'"file" must be a string "data:image/...;base64,...", got {type(value).__name__}')
    head, sep, body = value.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise InputError('"file" must be a data URL like "data:image/jpeg;base64,..."', 415)
    raw = _b64(body, "file")
    return decode_image(raw, list(FILE_FORMATS), "file", min_side=1)


def _b64(text: str, key: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f'"{key}" is not valid base64 after its data URL prefix', 400) from None


def decode_image(raw: bytes, formats: list[str], key: str, *, min_side: int = 1):
    """Bytes of an image file -> a PIL image ready for the predictor: the first frame of an
    animation, EXIF rotation applied, 16-bit grey scaled to 8 bits, CMYK as RGB; transparency
    is kept (the predictor flattens it onto the background that shows the ink)."""
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():  # the size is checked just below, from the header
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw), formats=formats)
    except Image.DecompressionBombError:
        raise InputError(f"the image is enormous; send one of at most {MAX_IMAGE_PIXELS:,} pixels", 413) from None
    except Exception as exc:  # UnidentifiedImageError and friends
        kinds = ", ".join(FILE_FORMATS[f] for f in formats)
        raise InputError(f'"{key}" does not hold an image Pillow can read as {kinds} ({type(exc).__name__})', 415) from None
    w, h = im.size
    if key == "png" and max(w, h) > MAX_SIDE:
        _check_size(h, w)
    _shared_limit(w, h)
    if min(w, h) < min_side:
        _check_size(h, w)
    frames = getattr(im, "n_frames", 1)
    try:
        im.seek(0)
        im.load()
        im = ImageOps.exif_transpose(im)
        im = _eight_bit(im)
    except InputError:
        raise
    except Exception as exc:  # truncated or damaged data
        raise InputError(f'"{key}" could not be decoded ({type(exc).__name__}); send a complete image file', 400) from None
    im.info["frames"] = frames
    return im


def _shared_limit(w: int, h: int) -> None:
    """convscope.limits' one pixel limit for every image decoder, as a 413."""
    try:
        check_image_size(w, h, "the image")
    except ValueError as exc:
        raise InputError(str(exc), 413) from None


def _eight_bit(im):
    """Modes the predictor reads (L, LA, P, RGB, RGBA): 16-bit and float grey are scaled
    by their own range type, CMYK and YCbCr converted to RGB."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray((np.clip(a / top, 0, 1) * 255).round().astype(np.uint8), "L")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        top = 1.0 if a.max() <= 1.0 else 255.0
        return Image.fromarray((np.clip(a / top, 0, 1) * 255).round().astype(np.uint8), "L")
    if im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return im.convert("RGB")
    if im.mode == "1":
        return im.convert("L")
    return im
