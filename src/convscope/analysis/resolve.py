"""NAME or RUN: what the analysis commands are pointed at.

A RUN is a folder written by `convscope train` (it holds config.json); a NAME
is a registered model (`convscope models`). An argument that names an
existing folder, or that looks like a path, is a run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


def is_run(target: str) -> bool:
    return Path(target).is_dir() or "/" in target or target.startswith(".")


def run_model_spec(run_dir: str | Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(model name, builder kwargs, config) of a run folder, with clear errors."""
    from convscope.train.checkpoint import read_config

    config = read_config(run_dir)
    spec = config.get("model")
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not spec.get("name"):
        raise ValueError(f"{Path(run_dir) / 'config.json'} names no model (expected \"model\": "
                         '{"name": ..., "kwargs": {...}}); is it a convscope run?')
    return spec["name"], dict(spec.get("kwargs") or {}), config


def meta_model(target: str) -> tuple[nn.Module, str, dict[str, Any] | None]:
    """The architecture of NAME or RUN built on the meta device (no weights allocated)."""
    from convscope.models import create_model

    if is_run(target):
        name, kwargs, config = run_model_spec(target)
        with torch.device("meta"):
            model = create_model(name, **kwargs)
        return model, f"{name} ({target})", config
    with torch.device("meta"):
        model = create_model(target)
    return model, target, None


def real_model(target: str) -> tuple[nn.Module, str, dict[str, Any] | None]:
    """NAME with random weights, or RUN with its trained weights; eval mode."""
    from convscope.models import create_model
    from convscope.train.checkpoint import load

    if is_run(target):
        run_model_spec(target)  # a clear error for a folder that is not a run
        model, config = load(target)
        return model.eval(), config["model"]["name"], config
    return create_model(target).eval(), target, None


def run_input_size(config: dict[str, Any] | None) -> tuple[int, int, int] | None:
    if not config or not config.get("input_size"):
        return None
    return tuple(int(v) for v in config["input_size"])  # type: ignore[return-value]
