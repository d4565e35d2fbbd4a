"""One loaded network, as the explorer serves it: immutable once built.

A `Snapshot` holds the model (eval mode), its normalised run config, the traced layer
graph and every fact derived from them (the layers the page draws, their costs,
`/api/model`'s JSON, whether answers are batched). The engine (`web/engine.py`) keeps
exactly one current snapshot and replaces it whole: a swap (the Train tab's finished
run) builds a new snapshot aside and puts it in place with one assignment, so a request
that took the old one finishes with the old one, and nothing is ever half of each.
`version` travels with every answer, so the page knows when to reload /api/model.

Nothing here takes a lock: a forward through `model` is the engine's to guard.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convscope.web import graph as graphs
from convscope.web.decode import InputError, limits_json

MAX_KERNEL_VALUES = 20_000        # conv kernels sent with /api/model (lenet5: 150 + 2,400)
MIN_ROWS = 16                     # rows of every batched forward pass (see answer.answer_rows)
BIG_MACS = 50_000_000             # above this an answer is computed alone, never batched


@dataclass(frozen=True)
class Snapshot:
    """A network and everything derived from it. Build with `build` (or `from_run`, `from_name`)."""

    model: nn.Module
    predictor: Any                      # convscope.predictor.Predictor (the one inference path)
    config: dict[str, Any]
    graph: Any                          # web.graph.Graph
    layers: list[dict[str, Any]]
    classes: list[str]
    input_size: tuple[int, int, int]
    macs: int
    run_dir: str | None = None
    random_weights: bool = False
    origin: str | None = None
    version: int = 1
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    description_json: str = field(default="", repr=False)  # GET /api/model, made once
    modules: dict[str, nn.Module] = field(default_factory=dict, repr=False)  # named_modules(), once

    # ---- derived facts -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def run_name(self) -> str | None:
        """The run's folder name: clients never see the server's absolute paths."""
        return Path(self.run_dir).name if self.run_dir else None

    @property
    def origin_name(self) -> str | None:
        return self.run_name if self.origin == self.run_dir else self.origin

    @property
    def digits(self) -> bool:
        """Inputs are prepared as MNIST digits (the page's digit pad and warnings follow this)."""
        from convscope.predictor import is_digits

        return is_digits(self.config)

    @property
    def batched(self) -> bool:
        """Small networks answer in batches; big ones alone (a batch would only wait longer)."""
        return self.macs <= BIG_MACS

    @property
    def min_rows(self) -> int:
        """Rows of every forward pass: float32 GEMM takes other kernels for 1-15 rows than for
        more, whose sums differ in the last bits, and an answer must not depend on its batch's
        size, so a batched network always runs at least MIN_ROWS rows (zeros fill the rest)."""
        return MIN_ROWS if self.batched else 1

    def with_version(self, version: int) -> "Snapshot":
        snap = dataclasses.replace(self, version=version)
        return dataclasses.replace(snap, description_json=_describe_json(snap))

    # ---- computing (the caller holds the engine's lock) ----------------------------------
    def forward(self, x: torch.Tensor, *, pad: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (N, K) and the value of every graph node for a normalised (N, C, H, W) batch
        (with `pad`, the values have at least `min_rows` rows: zeros fill the rest, see `min_rows`)."""
        logits, values = _forward(self.graph, self.model, self._padded(x) if pad else x)
        return logits[:x.shape[0]], values

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) alone, with the same numbers `forward` gives."""
        from convscope.predictor import main_logits

        with torch.inference_mode():
            return main_logits(self.model(self._padded(x)))[:x.shape[0]].float()

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return x if n >= self.min_rows else torch.cat([x, x.new_zeros(self.min_rows - n, *x.shape[1:])])

    def value(self, values: dict[str, torch.Tensor], name: str, row: int = 0) -> torch.Tensor:
        """The shown value of layer `name` for one row, (C, H, W) or (N,): the fed image with
        its normalisation undone for "input"."""
        if name == "input":
            x = values[self.graph.shown["input"]][row:row + 1]
            return torch.from_numpy(np.ascontiguousarray(self.predictor.shown(x), dtype=np.float32))
        return values[self.graph.shown[name]][row].float()

    def layer(self, name: str) -> dict[str, Any]:
        found = self.by_name.get(name)
        if found is None:
            raise InputError(f"no layer {name[:60]!r}; GET /api/model lists them", 404)
        return found

    def module(self, name: str) -> nn.Module | None:
        return self.modules.get(self.layer(name).get("module") or "")

    def prepare(self, image: Any, *, preprocess: bool = True) -> tuple[torch.Tensor, np.ndarray | None]:
        """(x fed to the network, the plain downsample shown beside a digit or None)."""
        try:
            if not self.digits:
                return self.predictor.prepare(image, preprocess=preprocess), None
            if not preprocess:
                x = self.predictor.prepare(image, preprocess=False)
                return x, self.predictor.shown(x)[0]
            x, raw = self.predictor.prepare_pair(image)  # one decode for both
            return x, self.predictor.shown(raw)[0]
        except InputError:
            raise
        except (ValueError, OSError) as exc:
            raise InputError(f"the image could not be prepared for {self.name}: {str(exc)[:200]}", 422) from None

    def description(self) -> dict[str, Any]:
        """GET /api/model (also the static site's model.json "description")."""
        return json.loads(self.description_json)


def build(model: nn.Module, config: dict[str, Any] | None = None, *, run_dir: str | Path | None = None,
          random_weights: bool = False, origin: str | None = None, version: int = 1) -> Snapshot:
    """A snapshot of `model`: traced once, probed with one zero input, its layers described."""
    from convscope.predictor import Predictor, check_classes

    predictor = Predictor(model.eval(), config)
    model = predictor.model
    input_size = tuple(int(v) for v in predictor.input_size)
    graph = graphs.Graph(model)
    logits, values = _forward(graph, model, torch.zeros(1, *input_size))  # a probe: shapes
    classes = [str(c) for c in predictor.classes]
    check_classes(classes, int(logits.shape[-1]))  # the real count, where the meta-device one was unknown
    layers = graph.build(values, input_size)  # with each layer's receptive field (analysis/graph.py)
    _add_costs(model, layers, input_size)
    snap = Snapshot(model=model, predictor=predictor, config=predictor.config, graph=graph, layers=layers,
                    classes=classes, input_size=input_size,  # type: ignore[arg-type]
                    macs=int(sum(layer.get("macs") or 0 for layer in layers)),
                    run_dir=str(run_dir) if run_dir is not None else None, random_weights=random_weights,
                    origin=origin or (str(run_dir) if run_dir is not None else None), version=version,
                    by_name={layer["name"]: layer for layer in layers}, modules=dict(model.named_modules()))
    return dataclasses.replace(snap, description_json=_describe_json(snap))


def from_run(run_dir: str | Path, *, version: int = 1) -> Snapshot:
    from convscope.runs import RunDir

    model, config = RunDir(run_dir).load()
    return build(model, config, run_dir=run_dir, version=version)


def from_name(name: str, *, version: int = 1) -> Snapshot:
    """A zoo network with random weights, or "torchvision:NAME" with torchvision's weights."""
    if name.startswith("torchvision:"):
        from convscope.transfer.sources import from_torchvision

        src = from_torchvision(name[len("torchvision:"):])
        config = {"model": {"name": src.name, "kwargs": src.kwargs}, "dataset": src.dataset,
                  "classes": src.classes, "input_size": list(src.input_size),
                  "normalization": src.normalization, "preprocessing": src.preprocessing}
        return build(src.model, config, origin=name, version=version)
    from convscope.models import create_model
    from convscope.predictor import default_config

    model = create_model(name)
    return build(model, default_config(model, name), random_weights=True,
                 origin=f"{name} (random weights)", version=version)


def _forward(graph: Any, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    from convscope.capture import capture, capture_graph
    from convscope.predictor import main_logits

    if graph.gm is not None:
        out, values = capture_graph(graph.gm, x, graph.recorder)
    else:
        with torch.inference_mode():
            out, values = capture(model, x)
        values = {"input": x, **values}
    return main_logits(out), values


def _add_costs(model: nn.Module, layers: list[dict[str, Any]], input_size: tuple[int, ...]) -> None:
    """params / MACs per layer from `convscope.analysis.summary` (matched by name)."""
    try:
        from convscope.analysis import summary

        rows = {r.name: r for r in summary(model, input_size).rows}
    except Exception:  # summary is a bonus: a model it cannot meter keeps params from its modules
        rows = {}
    modules = dict(model.named_modules())
    for layer in layers:
        row = rows.get(layer["name"])
        if row is not None:
            layer["params"], layer["macs"] = int(row.params), int(row.macs)
        else:
            mod = modules.get(layer.get("module") or "")
            layer["params"] = int(sum(p.numel() for p in mod.parameters(recurse=False))) if mod is not None else 0
            layer["macs"] = None if layer["kind"] in ("conv", "fc") else 0


def _describe_json(snap: Snapshot) -> str:
    kernels: dict[str, Any] = {}
    modules = snap.modules
    for layer in snap.layers:
        mod = modules.get(layer.get("module") or "")
        if layer["kind"] == "conv" and isinstance(mod, nn.Conv2d) and mod.weight.numel() <= MAX_KERNEL_VALUES:
            w = mod.weight.detach().double()
            b = mod.bias.detach().double() if mod.bias is not None else torch.zeros(w.shape[0])
            kernels[layer["name"]] = {"shape": list(w.shape), "weight": w.tolist(), "bias": b.tolist()}
    return json.dumps({
        "model": snap.name, "version": snap.version, "run": snap.run_name, "origin": snap.origin_name,
        "dataset": snap.config.get("dataset"), "random_weights": snap.random_weights, "classes": snap.classes,
        "input_size": list(snap.input_size), "normalization": snap.config["normalization"],
        "preprocessing": snap.config.get("preprocessing"), "digits": snap.digits, "limits": limits_json(),
        "batched": snap.batched, "graph": "fx" if snap.graph.gm is not None else "chain",
        "graph_note": snap.graph.note, "total_params": int(sum(p.numel() for p in snap.model.parameters())),
        "total_macs": int(snap.macs), "layers": snap.layers, "kernels": kernels}, separators=(",", ":"))


def unit_weights(snap: Snapshot, name: str, unit: int) -> dict[str, Any]:
    """The weights one unit of layer `name` applies: a conv kernel (in/groups, kh, kw) and bias,
    a linear row and bias, or batch norm's scale and shift for one channel."""
    layer = snap.layer(name)
    mod = snap.module(name)
    if mod is None or layer["kind"] not in ("conv", "fc", "bn"):
        raise InputError(f"layer {name!r} ({layer['kind']}) has no weights to show", 404)
    n = layer["shape"][0]
    if not 0 <= unit < n:
        raise InputError(f"unit must be 0..{n - 1} for layer {name!r}, got {unit}", 422)
    with torch.no_grad():
        if layer["kind"] == "bn":
            scale = mod.weight / torch.sqrt(mod.running_var + mod.eps)
            return {"name": name, "unit": unit, "kind": "bn", "gamma": float(mod.weight[unit]),
                    "beta": float(mod.bias[unit]), "mean": float(mod.running_mean[unit]),
                    "var": float(mod.running_var[unit]), "eps": float(mod.eps), "scale": float(scale[unit]),
                    "shift": float(mod.bias[unit] - mod.running_mean[unit] * scale[unit])}
        w = mod.weight[unit].double()
        b = float(mod.bias[unit]) if mod.bias is not None else 0.0
    return {"name": name, "unit": unit, "kind": layer["kind"], "shape": list(w.shape), "weight": w.tolist(),
            "bias": b, "groups": layer.get("groups")}
