"""The model registry: a name -> builder table that rejects duplicates."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Decorator: `@register_model` or `@register_model(name="vgg16_bn")`."""

    def wrap(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        _MODELS[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; `pattern` is a shell-style wildcard ("resnet*")."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _check_count(what: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a whole number of at least 1, got {value!r}")


def create_model(name: str, *, num_classes: int | None = None, in_chans: int | None = None,
                 **kwargs) -> nn.Module:
    """Build a registered model with random weights (see `list_models()`).

    `num_classes` and `in_chans` default to the builder's own defaults: 1000 and 3
    for the ImageNet networks, 10 and 1 for `lenet5`.
    """
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (`convscope models` lists all {len(_MODELS)})")
    for key, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if value is not None:
            _check_count(key, value)
            kwargs[key] = value
    model = _MODELS[name](**kwargs)
    model.model_name = name
    return model


def model_rows(pattern: str | None = None) -> list[dict]:
    """`convscope models`: {"name", "params", "default_input_size", "num_classes"} per registered
    model, each built on the meta device (no weights allocated)."""
    import torch

    out = []
    for name in list_models(pattern):
        with torch.device("meta"):
            model = create_model(name)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        out.append({"name": name, "params": sum(p.numel() for p in model.parameters()),
                    "default_input_size": list(model.default_input_size),
                    "num_classes": linears[-1].out_features if linears else None})
    return out
