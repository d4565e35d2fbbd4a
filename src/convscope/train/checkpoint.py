"""Run directories: safetensors weights, JSON config, atomic writes.

    RUN/model.safetensors   weights only (never pickle)
    RUN/config.json         everything needed to rebuild the model and its preprocessing
    RUN/metrics.jsonl       one line per epoch
    RUN/curves.png          loss and accuracy
    RUN/state/              optimizer and RNG state for --resume (torch.load weights_only=True)

config.json keys (tools read these; add others freely):
    {"convscope_version", "model": {"name", "kwargs": {...}}, "dataset": "mnist",
     "classes": [...], "input_size": [C, H, W],
     "normalization": {"mean": [...], "std": [...]},
     "preprocessing": {"kind": "digits" | "resize", "invert": bool, ...},
     "recipe": {...}, "seed": int, "versions": {...}}
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def _atomic_replace(path: Path, write) -> None:
    """Write through a temp file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
    _atomic_replace(Path(path), write)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_weights(path: str | Path, model: nn.Module) -> None:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _atomic_replace(Path(path), lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))


def save_run(run_dir: str | Path, model: nn.Module, config: dict[str, Any]) -> Path:
    """Write weights and config of a run (each atomically). Returns the run folder."""
    run = Path(run_dir)
    save_weights(run / WEIGHTS, model)
    atomic_write_json(run / CONFIG, config)
    return run


def read_config(run_dir: str | Path) -> dict[str, Any]:
    run = Path(run_dir)
    path = run / CONFIG
    if not run.is_dir():
        raise FileNotFoundError(f"no run folder at {run} (train one with `convscope train --out {run}`)")
    if not path.is_file():
        raise FileNotFoundError(f"{run} is not a convscope run: {CONFIG} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def load(run_dir: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's model from config.json and load its safetensors weights (eval mode)."""
    from convscope.models import create_model

    run = Path(run_dir)
    config = read_config(run)
    weights = run / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{run} has no {WEIGHTS}: the run did not finish its first epoch")
    spec = config["model"]
    model = create_model(spec["name"], **spec.get("kwargs", {}))
    state = load_file(str(weights), device=str(device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights} does not fit {spec['name']}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.to(device).eval(), config
