"""What /api/predict answers: one `Answer` per image, built from one batched forward pass.

    rows = answer_rows(snapshot, prepared, ids)   # the caller holds the engine's lock
    rows[i].answer.json                           # the response body, as text
    rows[i].values                                # every node's value for that image (kept for /api/layer)

An answer carries the guesses, the image fed, the plain downsample beside it, reasons
not to trust it (`web.trust`) and the first screen of layers (the page fetches the rest
with /api/layer); and the `version` of the network that computed it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from convscope.web.decode import InputError
from convscope.web.encoding import answer_json, encode_maps, encode_maps_rows

FIRST_SCREEN_BYTES = 320 * 1024   # uint8 values of activations in one answer (~0.45 MB as base64)
FIRST_MAPS = 8                    # maps per layer in the answer when a layer is larger than that


@dataclass(frozen=True)
class Answer:
    """One image answered: `json` is the /api/predict body; `x` the (1, C, H, W) input fed."""

    json: str
    x: torch.Tensor
    input_id: int
    version: int

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.json)


@dataclass(frozen=True)
class Prepared:
    """An image ready for the network: `x` fed, `raw` the plain downsample (digits), `extra`
    keys added to the answer (a sample's truth)."""

    x: torch.Tensor
    raw: np.ndarray | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class Row:
    answer: Answer
    values: dict[str, torch.Tensor]


def answer_rows(snap: Any, items: list[Prepared], ids: list[int]) -> list[Row | InputError]:
    """Every item answered by `snap` with one forward pass of at least `snap.min_rows` rows (so an
    answer does not depend on its batch's size); an input that is not finite fails alone."""
    out: list[Row | InputError] = [InputError("the image could not be prepared into finite values", 422)] * len(items)
    ok = [i for i, p in enumerate(items) if math.isfinite(float(p.x.sum()))]
    if not ok:
        return out
    batch = torch.cat([items[i].x for i in ok])                          # (n, C, H, W)
    n = batch.shape[0]
    logits, values = snap.forward(batch)                                 # values: >= min_rows rows
    rows = max(n, snap.min_rows)
    encoded = _BatchLayers(snap, values, n) if n > 1 else None
    for row, i in enumerate(ok):
        one = {k: v[row:row + 1] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == rows else v
               for k, v in values.items()}
        body = _respond(snap, items[i], logits[row], one, ids[i], None if encoded is None else (encoded, row))
        out[i] = Row(Answer(answer_json(body), items[i].x, ids[i], snap.version), one)
    return out


def _respond(snap: Any, item: Prepared, logits: torch.Tensor, values: dict[str, torch.Tensor], input_id: int,
             shared: tuple["_BatchLayers", int] | None) -> dict[str, Any]:
    from convscope.web.trust import warnings

    probs = torch.softmax(logits.double(), dim=0).tolist()
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    shown_t = snap.value(values, "input")
    shown = shown_t.numpy()                                              # (C, H, W) in [0, 1]
    layers, lo, hi = _first_screen(snap, values, shown_t, shared)
    c, h, w = shown.shape
    out: dict[str, Any] = {
        "version": snap.version,
        "probabilities": probs,
        "top": [{"index": i, "label": snap.classes[i], "probability": probs[i]} for i in order[:5]],
        "input_id": input_id,
        "input": (shown[0] if c == 1 else shown) if c * h * w <= 3 * 64 * 64 else None,
        "raw": item.raw,
        "network_min": lo if lo <= hi else 0.0, "network_max": hi if lo <= hi else 0.0,
        "layers": layers,
        "warnings": warnings(shown, probs, order, raw=item.raw, random_weights=snap.random_weights,
                             digits=snap.digits, preprocessing=snap.config["preprocessing"]),
    }
    out.update(item.extra or {})
    return out


def _first_screen(snap: Any, values: dict[str, torch.Tensor], shown: torch.Tensor,
                  shared: tuple["_BatchLayers", int] | None) -> tuple[list[dict[str, Any]], float, float]:
    """The layers an answer carries (until FIRST_SCREEN_BYTES are spent; a big layer sends its
    FIRST_MAPS strongest maps) and the whole network's range (min, max)."""
    layers, budget = [], FIRST_SCREEN_BYTES
    lo, hi = float("inf"), float("-inf")
    for layer in snap.layers:
        v = shown if layer["kind"] == "input" else snap.value(values, layer["name"])
        if budget <= 0 and layer["kind"] != "input":
            a, b = torch.aminmax(v)
            lo, hi = min(lo, float(a)), max(hi, float(b))
            continue
        partial = v.dim() == 3 and v.numel() > budget and v.shape[0] > FIRST_MAPS
        if shared is not None and not partial and layer["kind"] != "input":
            enc = shared[0].encoded(layer["name"], shared[1])  # this row of the whole batch, encoded at once
        else:
            enc = encode_layer(layer["name"], v, limit=FIRST_MAPS if partial else None,
                               sort="strength" if partial else "index")
        if layer["kind"] != "input":
            lo, hi = min(lo, enc["layer_min"]), max(hi, enc["layer_max"])
        budget -= enc["bytes"]
        layers.append(enc)
    return layers, lo, hi


def encode_layer(name: str, v: torch.Tensor, *, offset: int = 0, limit: int | None = None,
                 sort: str = "index") -> dict[str, Any]:
    """One layer's value (C, H, W) or (N,) for the page: maps `offset`.. (`limit` of them), in
    index order or strongest (highest mean) first."""
    a = v.numpy() if v.dim() == 3 else v.reshape(-1).numpy()
    maps = None
    if a.ndim == 3 and (limit is not None or offset or sort != "index"):
        order = np.arange(a.shape[0])
        if sort == "strength":
            order = np.argsort(-a.reshape(a.shape[0], -1).mean(axis=1), kind="stable")
        maps = order[offset:offset + (limit if limit is not None else a.shape[0])]
    return _finish(encode_maps(name, a, maps=maps), sort)


def _finish(enc: dict[str, Any], sort: str) -> dict[str, Any]:
    enc["layer_min"], enc["layer_max"] = enc.pop("min"), enc.pop("max")  # of the whole layer
    enc["min"], enc["max"] = enc["layer_min"], enc["layer_max"]
    enc["sort"] = sort
    return enc


class _BatchLayers:
    """The layers of one batched forward pass, each encoded for every row at once on first use
    (`encode_maps_rows`: the same numbers as `encode_maps` row by row)."""

    def __init__(self, snap: Any, values: dict[str, torch.Tensor], rows: int) -> None:
        self.snap, self.values, self.rows = snap, values, rows
        self.done: dict[str, list[dict[str, Any]]] = {}

    def encoded(self, name: str, row: int) -> dict[str, Any]:
        if name not in self.done:
            v = self.values[self.snap.graph.shown[name]][:self.rows].float()
            a = v.numpy() if v.dim() == 4 else v.reshape(self.rows, -1).numpy()
            self.done[name] = encode_maps_rows(name, a)
        return _finish(dict(self.done[name][row]), "index")
