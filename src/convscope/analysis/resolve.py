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


def meta_model(target: str) -> tuple[nn.Module, str, dict[str, Any] | None]:
    """The architecture of NAME or RUN built on the meta device (no weights allocated)."""
    from convscope.models import create_model
    from convscope.runs import RunDir, model_spec

    if is_run(target):
        run = RunDir(target)
        config = run.read_config()
        return run.build(config, device="meta"), f"{model_spec(config)[0]} ({target})", config
    with torch.device("meta"):
        model = create_model(target)
    return model, target, None


def real_model(target: str) -> tuple[nn.Module, str, dict[str, Any] | None]:
    """NAME with random weights, or RUN with its trained weights; eval mode."""
    from convscope.models import create_model
    from convscope.runs import RunDir, model_spec

    if is_run(target):
        model, config = RunDir(target).load()
        return model, model_spec(config)[0], config
    return create_model(target).eval(), target, None


def run_predictor(target: str, command: str) -> Any:
    """The Predictor of a RUN; a model NAME is a UserError (`command` needs trained weights)."""
    from convscope.errors import UserError
    from convscope.predictor import Predictor

    if not is_run(target):
        raise UserError(f"{target} is a model name, not a run folder: {command} needs trained weights")
    return Predictor.from_run(target)


def run_input_size(config: dict[str, Any] | None) -> tuple[int, int, int] | None:
    if not config or not config.get("input_size"):
        return None
    return tuple(int(v) for v in config["input_size"])  # type: ignore[return-value]
