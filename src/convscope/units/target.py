"""What the unit commands are pointed at: a RUN folder or a zoo NAME, and one of its layers.

A `Target` carries the model (eval mode, in-place activations turned off so a
captured output is never overwritten by the ReLU after it), how its inputs are
normalised, and the receptive field of every conv/pool layer: `Field.r` (size),
`.j` (jump) and `.s` (the input coordinate of unit 0's centre), per axis, as
the one layer graph (`convscope.analysis.graph`) gives them. A unit (y, x) of a layer sees the
input window centred on `s + (y, x) * j`, `r` pixels wide.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convscope.analysis.receptive import Field
from convscope.errors import UserError

CONV_TYPES = (nn.Conv2d,)
POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d)


@dataclass
class Target:
    model: nn.Module
    name: str                         # what the user typed (a run folder or a model name)
    model_name: str
    config: dict[str, Any] | None     # None for a zoo NAME (random weights)
    input_size: tuple[int, int, int]  # (C, H, W)
    mean: list[float]
    std: list[float]
    seed: int = 0
    fields: dict[str, Field] = dc_field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = dc_field(default_factory=dict)

    @property
    def is_run(self) -> bool:
        return self.config is not None

    @property
    def run_dir(self) -> Path | None:
        return Path(self.name) if self.is_run else None

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] (N, C, H, W) -> what the model is fed."""
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
        return (pixels - mean) / std

    def unit_layers(self) -> list[str]:
        """Conv and pooling layers with a spatial output, in forward order."""
        return [n for n in self.fields if n in self.shapes and len(self.shapes[n]) == 4]

    def conv_layers(self) -> list[str]:
        mods = dict(self.model.named_modules())
        return [n for n in self.unit_layers() if isinstance(mods[n], CONV_TYPES)]

    def check_layer(self, layer: str) -> str:
        """`layer` if it is a conv/pool layer of the model, else a UserError listing the valid ones."""
        valid = self.unit_layers()
        if layer in valid:
            return layer
        listing = ", ".join(valid[:24]) + (f", ... ({len(valid)} in all)" if len(valid) > 24 else "")
        mods = dict(self.model.named_modules())
        if layer in mods and layer:
            raise UserError(f"{layer} is a {type(mods[layer]).__name__}, not a convolution or pooling layer "
                            f"of {self.model_name}; choose one of: {listing}")
        raise UserError(f"no layer named {layer!r} in {self.model_name}; the conv/pool layers are: {listing}")

    def channels(self, layer: str) -> int:
        return int(self.shapes[layer][1])


def _no_inplace(model: nn.Module) -> None:
    for m in model.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False


def layer_geometry(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[dict[str, Field], dict]:
    """{layer: Field} and {layer: output shape} of the conv/pool leaf layers (their first call), from
    the one layer graph (`convscope.analysis.graph`, shapes found on the meta device)."""
    from convscope.analysis import graph

    try:
        g = graph.build(model, tuple(input_size))
    except Exception:  # noqa: BLE001 - fx cannot trace it: the summary's tracker, by the same rules
        return _traced_geometry(model, input_size)
    mods = dict(model.named_modules())
    fields, shapes = {}, {}
    for node in g.nodes.values():
        mod = mods.get(node.module) if node.module else None
        if mod is None or not isinstance(mod, CONV_TYPES + POOL_TYPES) or node.module in fields:
            continue
        if node.field is None or node.field.whole or len(node.shape) != 3:
            continue
        fields[node.module] = node.field
        shapes[node.module] = (1, *node.shape)
    return fields, shapes


def _traced_geometry(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[dict[str, Field], dict]:
    from convscope.analysis.summary import trace

    tracker, _ = trace(model, tuple(input_size), fields=False)
    mods = dict(model.named_modules())
    fields, shapes = {}, {}
    for row in tracker.rows:
        mod = mods.get(row.name)
        if mod is None or not isinstance(mod, CONV_TYPES + POOL_TYPES) or row.name in fields:
            continue
        if row.field is None or row.field.whole or row.out is None or row.out.dim() != 4:
            continue
        fields[row.name] = row.field
        shapes[row.name] = tuple(row.out.shape)
    return fields, shapes


def load_target(target: str, *, random_init: bool = False) -> Target:
    """A RUN folder (trained weights) or a zoo NAME (random weights, identity normalisation), via the predictor.

    random_init: the run's architecture at its random initialisation, drawn with the
    run's seed exactly as `convscope train` draws it (the baseline for tuning).
    A NAME is built after seeding with 0, so it is the same network every time.
    """
    from convscope.analysis.resolve import is_run
    from convscope.predictor import Predictor
    from convscope.runs import RunDir

    if is_run(target):
        pred = Predictor.from_run(target)
        seed = int(pred.config.get("seed", 0) or 0)
        if random_init:
            torch.manual_seed(seed)
            pred = Predictor(RunDir(target).build(pred.config), pred.config)
    else:
        torch.manual_seed(0)
        pred = Predictor.from_name(target)
        seed = 0
    return _wrap(pred.model, target, pred.name, pred.config if is_run(target) else None,
                 pred.input_size, pred.mean, pred.std, seed)


def _wrap(model: nn.Module, name: str, model_name: str, config, input_size, mean, std, seed: int) -> Target:
    model.eval()
    _no_inplace(model)  # capture clones outputs too; this also keeps gradients through the ReLUs intact
    for p in model.parameters():
        p.requires_grad_(False)
    size = tuple(int(v) for v in input_size)
    fields, shapes = layer_geometry(model, size)
    return Target(model, name, model_name, config, size, list(mean), list(std), seed, fields, shapes)


def from_module(model: nn.Module, input_size: tuple[int, int, int], *, mean=None, std=None,
                name: str = "model") -> Target:
    """A Target around a module built in code (tests, notebooks)."""
    c = input_size[0]
    return _wrap(model, name, name, None, input_size, mean or [0.0] * c, std or [1.0] * c, 0)
