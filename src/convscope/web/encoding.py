"""What travels over the wire: request images in, activations out.

Images come in as a 2-D JSON list of floats in [0, 1] (white ink on black)
or as a PNG data URL; both become a float32 (H, W) array or an `InputError`
whose message says what was wrong and how to fix it (the API turns it into a
4xx). Activations go out compactly: each map as uint8 in base64, scaled by
its own min and max, so a 6x28x28 layer costs 4.7 kB instead of ~30 kB of
JSON floats.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
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


def image_from_request(obj: dict[str, Any]) -> tuple[Any, bool]:
    """The image of a request and its `preprocess` flag: an (H, W) float32 array in [0, 1]
    for "image", a decoded PIL image (first frame, 8 bits per channel) for "png" and "file"."""
    preprocess = obj.get("preprocess", True)
    if not isinstance(preprocess, bool):
        raise InputError(f'"preprocess" must be true or false, got {json.dumps(preprocess)[:40]}')
    given = [k for k in ("image", "png", "file") if k in obj]
    if len(given) != 1:
        raise InputError('send exactly one of "image" (a 2-D list of floats in [0, 1]), '
                         '"png" (a data:image/png;base64,... URL) or "file" (a data:image/...;base64,... URL)')
    if given[0] == "image":
        return image_from_list(obj["image"]), preprocess
    if given[0] == "png":
        return image_from_png(obj["png"]), preprocess
    return image_from_file(obj["file"]), preprocess


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


def encode_maps(name: str, act: np.ndarray, *, maps: np.ndarray | None = None) -> dict[str, Any]:
    """One layer's activations as uint8 base64, each map scaled by its own min/max.

    `act` is (C, H, W) for conv and pool layers or (N,) for fully connected ones
    (one map). Map c decodes as min_c + q / 255 * (max_c - min_c). `maps`: the
    channel indices to send (in that order; default all): "maps" in the answer
    lists them and "total_maps" says how many the layer has.
    """
    a = np.asarray(act, dtype=np.float32)
    full = a.reshape(a.shape[0], -1) if a.ndim == 3 else a.reshape(1, -1)  # (C, H*W)
    picked = full if maps is None else full[np.asarray(maps, dtype=np.intp)]
    lo = picked.min(axis=1, keepdims=True) if picked.size else np.zeros((0, 1), np.float32)
    hi = picked.max(axis=1, keepdims=True) if picked.size else np.zeros((0, 1), np.float32)
    whole_lo = float(lo.min()) if maps is None and lo.size else float(a.min())
    whole_hi = float(hi.max()) if maps is None and hi.size else float(a.max())
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((picked - lo) / span * 255.0).astype(np.uint8)
    shape = list(a.shape)
    return {
        "name": name,
        "shape": shape if maps is None or a.ndim != 3 else [len(picked), *shape[1:]],
        "full_shape": shape,
        "total_maps": int(full.shape[0]) if a.ndim == 3 else 1,
        "maps": [int(m) for m in (range(full.shape[0]) if maps is None else maps)] if a.ndim == 3 else [0],
        "min": whole_lo,
        "max": whole_hi,
        "map_min": [float(v) for v in lo[:, 0]],
        "map_max": [float(v) for v in hi[:, 0]],
        "bytes": int(q.size),
        "data": base64.b64encode(q.tobytes()).decode("ascii"),
    }


def encode_maps_rows(name: str, acts: np.ndarray) -> list[dict[str, Any]]:
    """`encode_maps(name, acts[r])` for every row r of a batch (R, C, H, W) or (R, N), with one
    array operation per step for the whole batch instead of one per row: the same numbers
    (the same float32 operations, element by element)."""
    a = np.asarray(acts, dtype=np.float32)
    rows = a.shape[0]
    conv = a.ndim == 4
    full = a.reshape(rows, a.shape[1], -1) if conv else a.reshape(rows, 1, -1)  # (R, maps, values)
    if full.shape[1] == 0 or full.shape[2] == 0:
        return [encode_maps(name, a[r]) for r in range(rows)]
    lo = full.min(axis=2, keepdims=True)
    hi = full.max(axis=2, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((full - lo) / span * 255.0).astype(np.uint8)
    shape = list(a.shape[1:])
    maps = list(range(full.shape[1])) if conv else [0]
    whole_lo, whole_hi = lo.min(axis=1)[:, 0].tolist(), hi.max(axis=1)[:, 0].tolist()
    map_lo, map_hi = lo[:, :, 0].tolist(), hi[:, :, 0].tolist()
    size = int(q[0].size)
    return [{"name": name, "shape": shape, "full_shape": shape, "total_maps": len(maps), "maps": maps,
             "min": whole_lo[r], "max": whole_hi[r], "map_min": map_lo[r], "map_max": map_hi[r], "bytes": size,
             "data": base64.b64encode(q[r].tobytes()).decode("ascii")} for r in range(rows)]


def decode_maps(layer: dict[str, Any]) -> np.ndarray:
    """The inverse of `encode_maps` (up to 8-bit rounding): float32 of `layer["shape"]`."""
    q = np.frombuffer(base64.b64decode(layer["data"]), dtype=np.uint8).astype(np.float32)
    lo = np.asarray(layer["map_min"], dtype=np.float32)[:, None]
    hi = np.asarray(layer["map_max"], dtype=np.float32)[:, None]
    maps = lo + q.reshape(len(lo), -1) / 255.0 * (hi - lo)
    return maps.reshape(layer["shape"])


def png_data_url(shown: np.ndarray) -> str:
    """A (C, H, W) image in [0, 1] (C = 1 or 3) as a PNG data URL."""
    from PIL import Image

    a = (np.clip(shown, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    img = Image.fromarray(a[0], "L") if a.shape[0] == 1 else Image.fromarray(a[:3].transpose(1, 2, 0), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return PNG_PREFIX + base64.b64encode(buf.getvalue()).decode("ascii")


def as_lists(out: dict[str, Any]) -> dict[str, Any]:
    """An answer with its image arrays as nested lists (rounded to 4 decimals)."""
    for key in ("input", "raw"):
        if isinstance(out.get(key), np.ndarray):
            out[key] = np.round(out[key], 4).tolist()
    return out


def answer_json(out: dict[str, Any]) -> str:
    """An answer as JSON text; the image grids through `grid_json`."""
    grids = {}
    for key in ("input", "raw"):
        a = out.pop(key, None)
        if a is None:
            grids[key] = "null"
        elif a.ndim == 2:
            grids[key] = grid_json(a)
        else:
            grids[key] = "[" + ",".join(grid_json(ch) for ch in a) + "]"
    head = json.dumps(out, separators=(",", ":"))[:-1]
    return f'{head},"input":{grids["input"]},"raw":{grids["raw"]}}}'


# "0", "0.0001", ..., "0.9999", "1": values in [0, 1] at 4 decimals, as JSON numbers
_DECIMALS = np.array(["0"] + [f"{i / 10000:.4f}".rstrip("0") for i in range(1, 10000)] + ["1"])


def grid_json(a: np.ndarray) -> str:
    """A 2-D array of values in [0, 1] as a JSON list of lists, rounded to 4 decimals."""
    q = np.rint(np.clip(a, 0.0, 1.0) * 10000).astype(np.intp)
    return "[" + ",".join("[" + ",".join(row) + "]" for row in _DECIMALS[q].tolist()) + "]"
