"""The explorer's model side: load a run once, describe its layers, predict with every activation.

A "compatible" run is a small chain network on 1x28x28 images (lenet5 on
mnist or fashion-mnist): its top-level children are run in order by the
model's own forward, and forward hooks catch what each shown layer passes on.
A conv or linear layer followed by an activation (ReLU) is shown after it,
since that is what the next layer reads; the click-to-explain view on the page
recomputes the pre-activation (dot product + bias) from the kernels sent by
/api/model.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convscope.web.encoding import InputError, encode_maps_many

SHOWN = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Linear)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU)
MAX_KERNEL_VALUES = 20_000  # conv kernels sent to the page (lenet5: 150 + 2,400)
# Every forward pass has at least this many rows (zeros padding the rest): float32 GEMM
# for 1-15 rows takes other kernels than for 16 or more, whose sums differ in the last
# bits, so without it an answer would depend on how many requests shared its batch.
MIN_ROWS = 16


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _kind(mod: nn.Module) -> str:
    return {nn.Conv2d: "conv", nn.MaxPool2d: "maxpool", nn.AvgPool2d: "avgpool", nn.Linear: "fc"}[type(mod)]


def _shown_layers(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module, str | None]]:
    """(name, layer, module whose output is shown, activation name) in forward order."""
    children = list(model.named_children())
    out = []
    for i, (name, mod) in enumerate(children):
        if type(mod) not in SHOWN:
            continue
        nxt = children[i + 1][1] if i + 1 < len(children) else None
        if isinstance(nxt, ACTIVATIONS):
            out.append((name, mod, nxt, type(nxt).__name__.lower()))
        else:
            out.append((name, mod, mod, None))
    if not out:
        raise ValueError(f"{type(model).__name__} has no top-level conv, pool or linear layers to show; "
                         "the explorer serves chain networks such as lenet5")
    return out


def _geometry(kind: str, mod: nn.Module) -> dict[str, Any]:
    """Kernel, stride, padding, dilation of a conv or pool layer (pairs)."""
    if kind == "fc":
        return {"kernel": None, "stride": None, "padding": None, "dilation": None}
    stride = mod.stride if mod.stride is not None else mod.kernel_size
    return {"kernel": _pair(mod.kernel_size), "stride": _pair(stride), "padding": _pair(mod.padding),
            "dilation": _pair(getattr(mod, "dilation", 1))}


def receptive_fields(layers: list[dict[str, Any]], input_hw: tuple[int, int]) -> None:
    """Add "rf", "jump", "start" (per axis, in input pixels) to each layer dict, in place.

    The conv/pool chain goes through `convscope.geometry.receptive_field` (one axis
    at a time, so non-square kernels work too): "start" is the centre of unit 0's
    window, so unit i covers input pixels start + i*jump +- (rf-1)/2 (some in the
    padding). A fully connected layer sees the whole input.
    """
    from convscope.geometry import receptive_field

    chain = [layer for layer in layers if layer["kind"] not in ("input", "fc")]
    axes = [receptive_field([(c["kernel"][a], c["stride"][a], c["padding"][a], c["dilation"][a]) for c in chain])
            for a in (0, 1)]
    steps = {id(c): (axes[0][i], axes[1][i]) for i, c in enumerate(chain)}
    whole = False
    for layer in layers:
        whole = whole or layer["kind"] == "fc"
        if whole:  # every layer after the first fc one sees everything
            layer["rf"] = [float(n) for n in input_hw]
            layer["jump"] = [float(n) for n in input_hw]
            layer["start"] = [(n - 1) / 2 for n in input_hw]
        elif layer["kind"] == "input":
            layer["rf"], layer["jump"], layer["start"] = [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]
        else:
            ys, xs = steps[id(layer)]
            layer["rf"] = [float(ys.receptive_field), float(xs.receptive_field)]
            layer["jump"] = [float(ys.jump), float(xs.jump)]
            layer["start"] = [float(ys.start), float(xs.start)]


class Explorer:
    """A loaded run: `describe()` is /api/model, `predict(img)` is /api/predict."""

    def __init__(self, model: nn.Module, config: dict[str, Any], *, run_dir: str | Path | None = None) -> None:
        self.model = model.eval()
        self.config = config
        self.run_dir = str(run_dir) if run_dir is not None else None
        size = config.get("input_size") or list(getattr(model, "default_input_size", (1, 28, 28)))
        if list(size) != [1, 28, 28]:
            raise ValueError(f"the explorer draws 28x28 grayscale digits, but this run's model takes "
                             f"{'x'.join(map(str, size))} input; serve a run trained on mnist or fashion-mnist")
        norm = config.get("normalization") or {}
        self.mean = float((norm.get("mean") or [0.0])[0])
        self.std = float((norm.get("std") or [1.0])[0])
        pre = config.get("preprocessing") or {}
        # a digits model trained on black ink on white wants the drawing inverted
        self.invert = bool(pre.get("invert", False)) and pre.get("kind", "digits") == "digits"
        self._shown = _shown_layers(model)
        self._acts: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()  # the hooks write one shared dict
        for name, _, tap, _ in self._shown:
            tap.register_forward_hook(self._hook(name))
        probe = self._forward(torch.zeros(1, 1, 28, 28))
        self.num_classes = int(probe[0].shape[-1])
        classes = config.get("classes") or [str(i) for i in range(self.num_classes)]
        self.classes = [str(c) for c in classes]
        if len(self.classes) != self.num_classes:
            raise ValueError(f"the run's config.json names {len(self.classes)} classes but its model has "
                             f"{self.num_classes} outputs; fix \"classes\" in config.json")
        self._description = self._describe(probe[1])

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "Explorer":
        from convscope.train.checkpoint import load

        model, config = load(run_dir)
        return cls(model, config, run_dir=run_dir)

    @property
    def name(self) -> str:
        return str((self.config.get("model") or {}).get("name") or type(self.model).__name__)

    def _hook(self, name: str):
        def hook(_mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            self._acts[name] = out.detach()
        return hook

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (1, K) and every shown layer's output, for one normalised (1, 1, 28, 28) image."""
        with self._lock, torch.inference_mode():
            self._acts = {}
            logits = self.model(x)
            acts = self._acts
        return logits, acts

    def _describe(self, acts: dict[str, torch.Tensor]) -> dict[str, Any]:
        layers: list[dict[str, Any]] = [{"name": "input", "kind": "input", "shape": [1, 28, 28],
                                         "kernel": None, "stride": None, "padding": None,
                                         "dilation": None, "activation": None}]
        kernels: dict[str, Any] = {}
        for name, mod, _, act in self._shown:
            kind = _kind(mod)
            layers.append({"name": name, "kind": kind, "shape": list(acts[name].shape[1:]),
                           **_geometry(kind, mod), "activation": act})
            if kind == "conv" and mod.weight.numel() <= MAX_KERNEL_VALUES:
                w = mod.weight.detach().double()
                b = mod.bias.detach().double() if mod.bias is not None else torch.zeros(w.shape[0])
                kernels[name] = {"shape": list(w.shape), "weight": w.tolist(), "bias": b.tolist()}
        receptive_fields(layers, (28, 28))
        return {"model": self.name, "run": self.run_dir, "dataset": self.config.get("dataset"),
                "classes": self.classes, "input_size": [1, 28, 28],
                "normalization": {"mean": [self.mean], "std": [self.std]},
                "preprocessing": self.config.get("preprocessing"),
                "layers": layers, "kernels": kernels}

    def describe(self) -> dict[str, Any]:
        return self._description

    def _prepare(self, image: np.ndarray, preprocess: bool) -> tuple[np.ndarray, np.ndarray]:
        """(fed, raw): the 28x28 image the network is fed and the plain downsample beside it."""
        from convscope.data.preprocess import mnist_style, raw_downsample

        raw = np.asarray(raw_downsample(image), dtype=np.float32).reshape(28, 28)
        fed = np.asarray(mnist_style(image), dtype=np.float32).reshape(28, 28) if preprocess else raw
        if self.invert:
            fed = 1.0 - fed
        if not np.isfinite(fed).all():  # defensive: never feed NaN to the network
            raise InputError("the image could not be preprocessed into finite values")
        return fed, raw

    def _compute_many(self, requests: list[tuple[np.ndarray, bool]]) -> list[dict[str, Any]]:
        """One forward pass for several (image, preprocess) requests: each one's answer."""
        prepared = [self._prepare(image, preprocess) for image, preprocess in requests]
        n = len(prepared)
        fed = np.stack([f for f, _ in prepared])  # (N, 28, 28)
        x = torch.zeros(max(n, MIN_ROWS), 1, 28, 28)
        x[:n, 0] = torch.from_numpy(fed)
        logits, acts = self._forward((x - self.mean) / self.std)
        probs = torch.softmax(logits[:n].double(), dim=1).tolist()
        maps = [encode_maps_many("input", fed[:, None])]
        maps += [encode_maps_many(name, acts[name][:n].numpy()) for name, *_ in self._shown]
        out = []
        for i, (f, raw) in enumerate(prepared):
            p = probs[i]
            order = sorted(range(len(p)), key=lambda k: -p[k])
            out.append({"probabilities": p,
                        "top": [{"index": k, "label": self.classes[k], "probability": p[k]} for k in order[:5]],
                        "input": f, "raw": raw, "layers": [layer[i] for layer in maps]})
        return out

    def _compute(self, image: np.ndarray, preprocess: bool) -> dict[str, Any]:
        return self._compute_many([(image, preprocess)])[0]

    def predict(self, image: np.ndarray, *, preprocess: bool = True) -> dict[str, Any]:
        """Everything /api/predict answers for one (H, W) image in [0, 1], white ink on black."""
        out = self._compute(image, preprocess)
        out["input"] = np.round(out["input"], 4).tolist()
        out["raw"] = np.round(out["raw"], 4).tolist()
        return out

    def predict_json(self, image: np.ndarray, *, preprocess: bool = True) -> str:
        """`predict` as JSON text, written ~4x faster than json.dumps would (the 28x28 grids
        go through a table of decimal strings instead of float repr)."""
        return _answer_json(self._compute(image, preprocess))

    def predict_json_batch(self, requests: list[tuple[np.ndarray, bool]]) -> list[str]:
        """`predict_json` for several (image, preprocess) requests with one forward pass;
        each answer equals the one-at-a-time answer."""
        return [_answer_json(out) for out in self._compute_many(requests)]


def _answer_json(out: dict[str, Any]) -> str:
    grids = {k: grid_json(out.pop(k)) for k in ("input", "raw")}
    head = json.dumps(out, separators=(",", ":"))[:-1]
    return f'{head},"input":{grids["input"]},"raw":{grids["raw"]}}}'


# "0", "0.0001", ..., "0.9999", "1": values in [0, 1] at 4 decimals, as JSON numbers
_DECIMALS = np.array(["0"] + [f"{i / 10000:.4f}".rstrip("0") for i in range(1, 10000)] + ["1"])


def grid_json(a: np.ndarray) -> str:
    """A 2-D array of values in [0, 1] as a JSON list of lists, rounded to 4 decimals."""
    q = np.rint(np.clip(a, 0.0, 1.0) * 10000).astype(np.intp)
    return "[" + ",".join("[" + ",".join(row) + "]" for row in _DECIMALS[q].tolist()) + "]"
