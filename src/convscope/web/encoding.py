"""What goes out over the wire: activations and answers, compactly.

Each map travels as uint8 in base64, scaled by its own min and max, so a 6x28x28
layer costs 4.7 kB instead of ~30 kB of JSON floats; an answer's image grids go
through a table of decimal strings (`grid_json`), ~4x faster than json.dumps.
"""
from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np

PNG_PREFIX = "data:image/png;base64,"


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
    return png_url(img, compress_level=1)


def png_url(img: Any, **save: Any) -> str:
    """A PIL image as a PNG data URL (the one way images travel out: samples, sites, pictures)."""
    if not hasattr(img, "save"):
        from PIL import Image

        img = Image.fromarray(np.asarray(img))
    buf = io.BytesIO()
    img.save(buf, format="PNG", **save)
    return PNG_PREFIX + base64.b64encode(buf.getvalue()).decode("ascii")


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
