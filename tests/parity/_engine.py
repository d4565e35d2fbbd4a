"""The parity tests' one door to the Python engine.

The engine is being renamed during issue 22 (`Explorer` -> the engine/slot/answer modules):
re-point `build_engine` (and, if their names move, the few calls below it); no test file
names the engine itself.
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
    from convscope.web.inference import Explorer

    return Explorer(model, config)


def description(engine: Any) -> dict[str, Any]:
    """What GET /api/model answers."""
    return engine.describe()


def layer_values(engine: Any, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The network's own value of every layer the page shows, for one normalised input
    (the input itself un-normalised, as the page receives it), as float32 arrays."""
    _, values = engine._forward(x)
    return {layer["name"]: engine.value(values, layer["name"]).numpy() for layer in description(engine)["layers"]}


def logits(engine: Any, x: torch.Tensor) -> np.ndarray:
    out, _ = engine._forward(x)
    return out[0].detach().numpy()


def layer_answer(engine: Any, name: str, input_id: int, offset: int, limit: int, sort: str) -> dict[str, Any]:
    """What GET /api/layer answers."""
    return engine.layer(name, input_id=input_id, offset=offset, limit=limit, sort=sort)


def unit_weights(engine: Any, name: str, unit: int) -> dict[str, Any]:
    """What GET /api/weights answers for one unit."""
    return engine.weights(name, unit)


def prepared(engine: Any, image: Any, preprocess: bool) -> np.ndarray:
    """The normalised input the engine feeds for an image (flat float32)."""
    return engine.prepare(image, preprocess=preprocess).numpy().ravel()


def answer(engine: Any, image: Any, preprocess: bool) -> dict[str, Any]:
    """What POST /api/predict answers for an image (probabilities, raw, warnings, ...)."""
    return engine.predict(image, preprocess=preprocess)


def refusal(body: dict[str, Any]) -> str | None:
    """The one line the server answers a request body with, or None when it takes it."""
    from convscope.web.encoding import InputError, image_from_request

    try:
        image_from_request(body)
    except InputError as exc:
        return str(exc)
    return None


def decoded_refusal(w: int, h: int, file: bool) -> str | None:
    """The server's answer to a drawing (png) or an uploaded file of w x h pixels."""
    from PIL import Image

    from convscope.web.encoding import InputError, image_from_file, image_from_png

    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format="PNG", compress_level=1)
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    try:
        (image_from_file if file else image_from_png)(url)
    except InputError as exc:
        return str(exc)
    return None
