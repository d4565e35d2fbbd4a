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

MIN_SIDE = 8
MAX_SIDE = 560
MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: a 280x280 PNG from the page is ~3-10 kB
PNG_PREFIX = "data:image/png;base64,"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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


def image_from_request(obj: dict[str, Any]) -> tuple[np.ndarray, bool]:
    """The (H, W) float32 image in [0, 1] and the `preprocess` flag of a request."""
    preprocess = obj.get("preprocess", True)
    if not isinstance(preprocess, bool):
        raise InputError(f'"preprocess" must be true or false, got {json.dumps(preprocess)[:40]}')
    has_image, has_png = "image" in obj, "png" in obj
    if has_image == has_png:
        raise InputError('send exactly one of "image" (a 2-D list of floats in [0, 1]) '
                         'or "png" (a data:image/png;base64,... URL)')
    img = image_from_list(obj["image"]) if has_image else image_from_png(obj["png"])
    return img, preprocess


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


def image_from_png(value: Any) -> np.ndarray:
    """A PNG data URL -> float32 (H, W) in [0, 1]; transparency counts as black."""
    from PIL import Image

    if not isinstance(value, str):
        raise InputError(f'"png" must be a string "{PNG_PREFIX}...", got {type(value).__name__}')
    if not value.startswith(PNG_PREFIX):
        raise InputError(f'"png" must be a PNG data URL starting with "{PNG_PREFIX}"', 415)
    try:
        raw = base64.b64decode(value[len(PNG_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise InputError('"png" is not valid base64 after the "data:image/png;base64," prefix', 400) from None
    if not raw.startswith(PNG_MAGIC):
        raise InputError('"png" does not hold a PNG file (its first bytes are not the PNG signature)', 415)
    try:
        with warnings.catch_warnings():  # we check the size ourselves, just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw), formats=["PNG"])
        _check_size(im.height, im.width)  # from the header, before decompressing anything
        im.load()
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"the PNG is enormous; send one of at most {MAX_SIDE}x{MAX_SIDE} pixels", 413) from None
    except Exception as exc:  # Pillow raises many kinds for damaged files
        raise InputError(f'"png" could not be decoded ({type(exc).__name__}); send a complete PNG file', 400) from None
    return _png_to_gray(im)


def _png_to_gray(im) -> np.ndarray:
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0  # (H, W, 4)
        # ITU-R 601 luma, as Pillow's convert("L"), times alpha: composite on black
        luma = rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114
        return np.clip(luma * rgba[..., 3], 0.0, 1.0).astype(np.float32)
    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def encode_maps(name: str, act: np.ndarray) -> dict[str, Any]:
    """One layer's activations as uint8 base64, each map scaled by its own min/max.

    `act` is (C, H, W) for conv and pool layers or (N,) for fully connected ones
    (one map). Map c decodes as min_c + q / 255 * (max_c - min_c).
    """
    a = np.asarray(act, dtype=np.float32)
    maps = a.reshape(a.shape[0], -1) if a.ndim == 3 else a.reshape(1, -1)  # (C, H*W)
    lo = maps.min(axis=1, keepdims=True)
    hi = maps.max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((maps - lo) / span * 255.0).astype(np.uint8)
    return {
        "name": name,
        "shape": list(a.shape),
        "min": float(a.min()),
        "max": float(a.max()),
        "map_min": [float(v) for v in lo[:, 0]],
        "map_max": [float(v) for v in hi[:, 0]],
        "data": base64.b64encode(q.tobytes()).decode("ascii"),
    }


def encode_maps_many(name: str, acts: np.ndarray) -> list[dict[str, Any]]:
    """`encode_maps(name, acts[i])` for every i of a batch (N, C, H, W) or (N, K), with the
    arithmetic done once for the whole batch (the same numbers, a fraction of the calls)."""
    a = np.asarray(acts, dtype=np.float32)
    n = a.shape[0]
    maps = a.reshape(n, a.shape[1], -1) if a.ndim == 4 else a.reshape(n, 1, -1)  # (N, C, H*W)
    lo = maps.min(axis=2, keepdims=True)
    hi = maps.max(axis=2, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint((maps - lo) / span * 255.0).astype(np.uint8)
    shape = list(a.shape[1:])
    los, his = lo[:, :, 0].tolist(), hi[:, :, 0].tolist()
    whole_lo, whole_hi = lo.min(axis=(1, 2)).tolist(), hi.max(axis=(1, 2)).tolist()
    return [{"name": name, "shape": shape, "min": whole_lo[i], "max": whole_hi[i], "map_min": los[i],
             "map_max": his[i], "data": base64.b64encode(q[i].tobytes()).decode("ascii")} for i in range(n)]


def decode_maps(layer: dict[str, Any]) -> np.ndarray:
    """The inverse of `encode_maps` (up to 8-bit rounding): float32 of `layer["shape"]`."""
    q = np.frombuffer(base64.b64decode(layer["data"]), dtype=np.uint8).astype(np.float32)
    lo = np.asarray(layer["map_min"], dtype=np.float32)[:, None]
    hi = np.asarray(layer["map_max"], dtype=np.float32)[:, None]
    maps = lo + q.reshape(len(lo), -1) / 255.0 * (hi - lo)
    return maps.reshape(layer["shape"])
