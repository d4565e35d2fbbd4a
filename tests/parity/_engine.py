"""The parity tests' one door to the Python engine.

The engine is `web/engine.py`'s Explorer over an immutable `web/snapshot.Snapshot`; requests
are read in `web/decode.py`. No test file names the engine itself: if these names move, only
this file changes.
"""
from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch
from torch import nn

FACTS = ("version", "digits", "limits")  # what /api/model must carry for the page (issue 22)
LAYER_FACTS = {  # per layer kind: the keys the page reads instead of guessing
    "conv": ("kernel", "stride", "padding", "dilation", "groups", "activation"),
    "maxpool": ("ceil_mode", "activation"),
    "avgpool": ("ceil_mode", "count_include_pad", "divisor_override", "activation"),
}


def build_engine(model: nn.Module, config: dict[str, Any]) -> Any:
    """THE adapter: the explorer's engine for `model` and its run config."""
    from convscope.web.engine import Explorer

    return Explorer(model, config)


def _forward(engine: Any, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
    """(logits, node values, the object whose value(values, name) reads a layer's shown value)."""
    out, values = engine.snapshot.forward(x)
    return out, values, engine.snapshot


def _decode():
    from convscope.web import decode

    return decode


def description(engine: Any) -> dict[str, Any]:
    """What GET /api/model answers."""
    return engine.describe()


def layer_values(engine: Any, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The network's own value of every layer the page shows, for one normalised input
    (the input itself un-normalised, as the page receives it), as float32 arrays."""
    _, values, reader = _forward(engine, x)
    return {layer["name"]: reader.value(values, layer["name"]).numpy() for layer in description(engine)["layers"]}


def logits(engine: Any, x: torch.Tensor) -> np.ndarray:
    out, _, _ = _forward(engine, x)
    return out[0].detach().numpy()


def layer_answer(engine: Any, name: str, input_id: int, offset: int, limit: int, sort: str) -> dict[str, Any]:
    """What GET /api/layer answers."""
    return engine.layer(name, input_id=input_id, offset=offset, limit=limit, sort=sort)


def unit_weights(engine: Any, name: str, unit: int) -> dict[str, Any]:
    """What GET /api/weights answers for one unit."""
    return engine.weights(name, unit)


def prepared(engine: Any, image: Any, preprocess: bool) -> np.ndarray:
    """The normalised input the engine feeds for an image (flat float32)."""
    return engine.snapshot.prepare(image, preprocess=preprocess)[0].numpy().ravel()


def answer(engine: Any, image: Any, preprocess: bool) -> dict[str, Any]:
    """What POST /api/predict answers for an image (probabilities, raw, warnings, ...)."""
    return engine.predict(image, preprocess=preprocess)


def answer_body(engine: Any, body: dict[str, Any]) -> dict[str, Any]:
    """What POST /api/predict answers for a request body (raises the InputError it refuses with)."""
    return engine.predict(body)


def input_error() -> type:
    """The engine's error for bad input (its `status` is the HTTP status)."""
    return _decode().InputError


def refusal(body: dict[str, Any]) -> str | None:
    """The one line the server answers a request body with, or None when it takes it."""
    decode = _decode()
    read = decode.read_request
    try:
        read(body)
    except decode.InputError as exc:
        return str(exc)
    return None


def decoded_refusal(w: int, h: int, file: bool) -> str | None:
    """The server's answer to a drawing (png) or an uploaded file of w x h pixels."""
    from PIL import Image

    decode = _decode()
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format="PNG", compress_level=1)
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    try:
        (decode.image_from_file if file else decode.image_from_png)(url)
    except decode.InputError as exc:
        return str(exc)
    return None
