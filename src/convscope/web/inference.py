"""The explorer's model side: any model, any image; one forward records every layer.

`Explorer` wraps one predictor (the one inference path: images are prepared
by `Predictor.prepare` exactly as `convscope predict` prepares them) and the
model's graph (`web.graph`). A prediction runs the traced graph once and
keeps every node's value for the last few inputs, so the page can fetch any
layer later (`layer(...)`) without a second forward; the answer itself
carries the guesses and the first screen of layers only.
"""
from __future__ import annotations

import collections
import itertools
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convscope.web import graph as graphs
from convscope.web.encoding import (InputError, answer_json, as_lists, encode_maps, encode_maps_rows,  # noqa: F401
                                    grid_json)

FIRST_SCREEN_BYTES = 320 * 1024   # uint8 values of activations in one answer (~0.45 MB as base64)
FIRST_MAPS = 8                    # maps per layer in the answer when a layer is larger than that
MAX_PAGE_MAPS = 256
KEEP_INPUTS = 16                  # inputs whose x is kept for /api/layer
KEEP_VALUES = 2                   # ... of which the full activations stay in memory
MAX_KERNEL_VALUES = 20_000        # conv kernels sent with /api/model (lenet5: 150 + 2,400)
MIN_ROWS = 16                     # rows of every forward pass once batching is on (see compute_many)
BIG_MACS = 50_000_000             # above this a forward goes to a worker thread


def _default_config(model: nn.Module, config: dict[str, Any] | None) -> dict[str, Any]:
    """A config with every key the predictor and the page read (old runs lack some)."""
    cfg = dict(config or {})
    size = list(cfg.get("input_size") or getattr(model, "default_input_size", (1, 28, 28)))
    cfg["input_size"] = size
    c, h, w = size
    pre = dict(cfg.get("preprocessing") or {})
    pre.setdefault("kind", "digits" if (c, h, w) == (1, 28, 28) else "resize")
    pre.setdefault("size", [h, w])
    pre.setdefault("channels", c)
    cfg["preprocessing"] = pre
    norm = cfg.get("normalization") or {"mean": pre.get("mean", [0.0] * c), "std": pre.get("std", [1.0] * c)}
    cfg["normalization"] = {"mean": [float(v) for v in norm["mean"]], "std": [float(v) for v in norm["std"]]}
    return cfg


class Explorer:
    """A loaded model: `describe()` is /api/model, `predict_json(img)` is /api/predict."""

    def __init__(self, model: nn.Module, config: dict[str, Any] | None = None, *,
                 run_dir: str | Path | None = None, random_weights: bool = False, origin: str | None = None) -> None:
        from convscope.predictor import Predictor

        self.config = _default_config(model, config)
        self.predictor = Predictor(model.eval(), self.config)
        self.model = self.predictor.model
        self.run_dir = str(run_dir) if run_dir is not None else None
        self.random_weights = random_weights
        self.origin = origin or self.run_dir
        self.input_size = tuple(int(v) for v in self.predictor.input_size)
        self.graph = graphs.Graph(self.model)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._inputs: collections.OrderedDict[int, torch.Tensor] = collections.OrderedDict()
        self._values: collections.OrderedDict[int, dict[str, torch.Tensor]] = collections.OrderedDict()
        probe = torch.zeros(1, *self.input_size)
        logits, values = self._forward(probe)
        self.num_classes = int(logits.shape[-1])
        self.classes = [str(c) for c in self.predictor.classes]
        if len(self.classes) != self.num_classes:
            raise ValueError(f"the run's config.json names {len(self.classes)} classes but its model has "
                             f"{self.num_classes} outputs; fix \"classes\" in config.json")
        self.layers = self.graph.build(values, self.input_size)
        graphs.receptive_fields(self.layers, self.input_size[1:])
        self._by_name = {layer["name"]: layer for layer in self.layers}
        self._add_costs()
        self.macs = sum(layer.get("macs") or 0 for layer in self.layers)
        self.min_rows = 1  # the batching server sets MIN_ROWS (web/app.py predict_batcher)
        self._samples = None
        self._description = self._describe()

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path) -> "Explorer":
        from convscope.predictor import Predictor

        p = Predictor.from_run(run_dir)
        return cls(p.model, p.config, run_dir=run_dir)

    @classmethod
    def from_name(cls, name: str) -> "Explorer":
        """A zoo network with random weights, or "torchvision:NAME" with torchvision's weights."""
        if name.startswith("torchvision:"):
            from convscope.transfer.sources import from_torchvision

            src = from_torchvision(name[len("torchvision:"):])
            config = {"model": {"name": src.name, "kwargs": src.kwargs}, "dataset": src.dataset,
                      "classes": src.classes, "input_size": list(src.input_size),
                      "normalization": src.normalization, "preprocessing": src.preprocessing}
            return cls(src.model, config, origin=name)
        from convscope.predictor import Predictor

        p = Predictor.from_name(name)
        return cls(p.model, p.config, random_weights=True, origin=f"{name} (random weights)")

    @property
    def name(self) -> str:
        return str((self.config.get("model") or {}).get("name") or getattr(self.model, "model_name", None)
                   or type(self.model).__name__)

    @property
    def run_name(self) -> str | None:
        """The run's folder name: clients never see the server's absolute paths."""
        return Path(self.run_dir).name if self.run_dir else None

    @property
    def origin_name(self) -> str | None:
        return self.run_name if self.origin == self.run_dir else self.origin

    # ---- forward -----------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (1, K) and the value of every node, for one normalised (1, C, H, W) input."""
        from convscope.capture import capture, capture_graph

        if self.graph.gm is not None:
            out, values = capture_graph(self.graph.gm, x)
        else:
            with torch.inference_mode():
                out, values = capture(self.model, x)
            values = {"input": x, **values}
        logits = out[0] if isinstance(out, (tuple, list)) else out
        return logits, values

    def _values_for(self, input_id: int | None) -> tuple[int, dict[str, torch.Tensor]]:
        with self._lock:
            if input_id is None:
                if not self._inputs:
                    raise InputError("nothing predicted yet: POST /api/predict first", 409)
                input_id = next(reversed(self._inputs))  # the last answered (maybe by an answer process)
            if input_id in self._values:
                self._values.move_to_end(input_id)
                return input_id, self._values[input_id]
            x = self._inputs.get(input_id)
        if x is None:
            raise InputError(f"input {input_id} is no longer kept (the server keeps the last {KEEP_INPUTS}); "
                             "predict it again", 410)
        _, values = self._forward(x)
        self._keep(input_id, x, values)
        return input_id, values

    def new_ids(self, n: int) -> list[int]:
        """n fresh input ids (for answers computed elsewhere: web/pool.py)."""
        with self._lock:
            return [next(self._ids) for _ in range(n)]

    def remember(self, input_id: int, x: torch.Tensor) -> None:
        """Keep an input answered elsewhere, so /api/layer and /api/gradcam can compute it again."""
        self._keep(input_id, x, None)

    def _keep(self, input_id: int, x: torch.Tensor, values: dict[str, torch.Tensor] | None) -> None:
        with self._lock:
            self._inputs[input_id] = x
            if values is not None:
                self._values[input_id] = values
            while len(self._inputs) > KEEP_INPUTS:
                self._inputs.popitem(last=False)
            while len(self._values) > KEEP_VALUES:
                self._values.popitem(last=False)

    def value(self, values: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        """The shown value of layer `name` (C, H, W) or (N,) for the one input: the fed image
        un-normalised for "input"."""
        if name == "input":
            x = values[self.graph.shown["input"]]
            return torch.from_numpy(np.ascontiguousarray(self.predictor.shown(x), dtype=np.float32))
        return values[self.graph.shown[name]][0].float()

    # ---- description -------------------------------------------------------------------
    def _add_costs(self) -> None:
        """params / MACs per layer from `convscope.analysis.summary` (matched by name)."""
        rows: dict[str, Any] = {}
        try:
            from convscope.analysis import summary

            rows = {r.name: r for r in summary(self.model, self.input_size).rows}
        except Exception:  # summary is a bonus: a model it cannot meter keeps params from its modules
            rows = {}
        modules = dict(self.model.named_modules())
        for layer in self.layers:
            row = rows.get(layer["name"])
            if row is not None:
                layer["params"], layer["macs"] = int(row.params), int(row.macs)
            else:
                mod = modules.get(layer.get("module") or "")
                layer["params"] = int(sum(p.numel() for p in mod.parameters(recurse=False))) if mod is not None else 0
                layer["macs"] = None if layer["kind"] in ("conv", "fc") else 0

    def _describe(self) -> dict[str, Any]:
        kernels: dict[str, Any] = {}
        modules = dict(self.model.named_modules())
        for layer in self.layers:
            mod = modules.get(layer.get("module") or "")
            if layer["kind"] == "conv" and isinstance(mod, nn.Conv2d) and mod.weight.numel() <= MAX_KERNEL_VALUES:
                w = mod.weight.detach().double()
                b = mod.bias.detach().double() if mod.bias is not None else torch.zeros(w.shape[0])
                kernels[layer["name"]] = {"shape": list(w.shape), "weight": w.tolist(), "bias": b.tolist()}
        return {"model": self.name, "run": self.run_name, "origin": self.origin_name, "dataset": self.config.get("dataset"),
                "random_weights": self.random_weights, "classes": self.classes,
                "input_size": list(self.input_size), "normalization": self.config["normalization"],
                "preprocessing": self.config.get("preprocessing"), "graph": "fx" if self.graph.gm is not None else "chain",
                "graph_note": self.graph.note, "total_params": int(sum(p.numel() for p in self.model.parameters())),
                "total_macs": int(self.macs), "layers": self.layers, "kernels": kernels}

    def describe(self) -> dict[str, Any]:
        return self._description

    def weights(self, name: str, unit: int) -> dict[str, Any]:
        """The weights one unit of layer `name` applies: a conv kernel (in/groups, kh, kw) and bias,
        a linear row and bias, or batch norm's scale and shift for one channel."""
        with torch.no_grad():
            return self._weights(name, unit)

    def _weights(self, name: str, unit: int) -> dict[str, Any]:
        layer = self._layer(name)
        mod = dict(self.model.named_modules()).get(layer.get("module") or "")
        if mod is None or layer["kind"] not in ("conv", "fc", "bn"):
            raise InputError(f"layer {name!r} ({layer['kind']}) has no weights to show", 404)
        n = layer["shape"][0]
        if not 0 <= unit < n:
            raise InputError(f"unit must be 0..{n - 1} for layer {name!r}, got {unit}", 422)
        if layer["kind"] == "bn":
            scale = (mod.weight / torch.sqrt(mod.running_var + mod.eps)).detach()
            return {"name": name, "unit": unit, "kind": "bn", "gamma": float(mod.weight[unit]), "beta": float(mod.bias[unit]),
                    "mean": float(mod.running_mean[unit]), "var": float(mod.running_var[unit]), "eps": float(mod.eps),
                    "scale": float(scale[unit]), "shift": float(mod.bias[unit] - mod.running_mean[unit] * scale[unit])}
        w = mod.weight[unit].detach().double()
        b = float(mod.bias[unit].detach()) if mod.bias is not None else 0.0
        return {"name": name, "unit": unit, "kind": layer["kind"], "shape": list(w.shape), "weight": w.tolist(),
                "bias": b, "groups": layer.get("groups")}

    def _layer(self, name: str) -> dict[str, Any]:
        layer = self._by_name.get(name)
        if layer is None:
            raise InputError(f"no layer {name!r}; GET /api/model lists them", 404)
        return layer

    # ---- predict -----------------------------------------------------------------------
    def prepare(self, image: Any, *, preprocess: bool = True) -> torch.Tensor:
        return self._guarded(self.predictor.prepare, image, preprocess=preprocess)

    def _guarded(self, prepare: Any, image: Any, **kwargs: Any) -> Any:
        """`prepare(image)`, with what goes wrong as a 422 that says so."""
        try:
            return prepare(image, **kwargs)
        except InputError:
            raise
        except (ValueError, OSError) as exc:
            raise InputError(f"the image could not be prepared for {self.name}: {str(exc)[:200]}", 422) from None

    def compute(self, x: torch.Tensor, *, raw: np.ndarray | None = None) -> dict[str, Any]:
        """Everything /api/predict answers for one prepared input `x` (1, C, H, W)."""
        out = self.compute_many([x], [raw])[0]
        if isinstance(out, InputError):
            raise out
        return out

    def compute_many(self, xs: list[torch.Tensor], raws: list[np.ndarray | None],
                     ids: list[int] | None = None) -> list[Any]:
        """`compute` for several prepared inputs with one forward pass: an answer, or the
        InputError of that input alone, for each. The pass has at least `min_rows` rows (zeros
        fill the rest): float32 GEMM takes other kernels for 1-15 rows than for more, whose
        sums differ in the last bits, and an answer must not depend on its batch's size.
        `ids`: the input ids to answer with (given by the process that keeps the inputs; nothing
        is kept here then); default: new ids, and the inputs are kept here."""
        ok = [i for i, x in enumerate(xs) if math.isfinite(float(x.sum()))]
        out: list[Any] = [InputError("the image could not be prepared into finite values", 422)] * len(xs)
        if not ok:
            return out
        batch = torch.cat([xs[i] for i in ok])
        n = batch.shape[0]
        if n < self.min_rows:
            batch = torch.cat([batch, batch.new_zeros(self.min_rows - n, *batch.shape[1:])])
        logits, values = self._forward(batch)
        rows = batch.shape[0]
        shared = _BatchLayers(self, values, len(ok)) if len(ok) > 1 else None
        for row, i in enumerate(ok):
            one = {k: v[row:row + 1] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == rows else v
                   for k, v in values.items()}
            out[i] = self._respond(xs[i], logits[row:row + 1], one, raws[i], None if ids is None else ids[i],
                                   shared=None if shared is None else (shared, row))
        return out

    def _respond(self, x: torch.Tensor, logits: torch.Tensor, values: dict[str, torch.Tensor],
                 raw: np.ndarray | None, input_id: int | None = None,
                 shared: tuple["_BatchLayers", int] | None = None) -> dict[str, Any]:
        if input_id is None:
            input_id = next(self._ids)
            self._keep(input_id, x, values)
        probs = torch.softmax(logits[0].double(), dim=0).tolist()
        order = sorted(range(len(probs)), key=lambda i: -probs[i])
        shown_t = self.value(values, "input")
        shown = shown_t.numpy()                                          # (C, H, W) in [0, 1]
        layers, budget = [], FIRST_SCREEN_BYTES
        lo, hi = float("inf"), float("-inf")
        for layer in self.layers:
            v = shown_t if layer["kind"] == "input" else self.value(values, layer["name"])
            if budget <= 0 and layer["kind"] != "input":
                a, b = torch.aminmax(v)
                lo, hi = min(lo, float(a)), max(hi, float(b))
                continue
            partial = v.dim() == 3 and v.numel() > budget and v.shape[0] > FIRST_MAPS
            if shared is not None and not partial and layer["kind"] != "input":
                enc = shared[0].encoded(layer, shared[1])  # this row of the whole batch, encoded at once
            else:
                enc = self.encode(layer, v, limit=FIRST_MAPS if partial else None, sort="strength" if partial else "index")
            if layer["kind"] != "input":
                lo, hi = min(lo, enc["layer_min"]), max(hi, enc["layer_max"])
            budget -= enc["bytes"]
            layers.append(enc)
        c, h, w = shown.shape
        out: dict[str, Any] = {
            "probabilities": probs,
            "top": [{"index": i, "label": self.classes[i], "probability": probs[i]} for i in order[:5]],
            "input_id": input_id,
            "input": (shown[0] if c == 1 else shown) if c * h * w <= 3 * 64 * 64 else None,
            "raw": raw,
            "network_min": lo if lo <= hi else 0.0, "network_max": hi if lo <= hi else 0.0,
            "layers": layers, "warnings": self.warnings(shown, probs, order, raw=raw),
        }
        return out

    def _prepared(self, image: Any, preprocess: bool) -> tuple[torch.Tensor, np.ndarray | None]:
        if not (self.config["preprocessing"].get("kind") == "digits" and self.input_size[0] == 1):
            return self.prepare(image, preprocess=preprocess), None
        if not preprocess:
            x = self.prepare(image, preprocess=False)
            return x, self.predictor.shown(x)[0]
        x, raw = self._guarded(self.predictor.prepare_pair, image)  # one decode for both
        return x, self.predictor.shown(raw)[0]

    def _answer(self, image: Any, preprocess: bool) -> dict[str, Any]:
        x, raw = self._prepared(image, preprocess)
        return self.compute(x, raw=raw)

    def predict_json_many(self, requests: list[tuple[Any, bool]], ids: list[int] | None = None) -> list[Any]:
        """`predict_json` for several (image, preprocess) requests with one forward pass: each
        answer equals the one-at-a-time answer; an image that cannot be prepared gets its
        InputError in its place and the others are answered. `ids`: see `compute_many`."""
        return [a if isinstance(a, InputError) else a[0] for a in self.answer_many(requests, ids)]

    def answer_many(self, requests: list[tuple[Any, bool]], ids: list[int] | None = None) -> list[Any]:
        """`predict_json_many`, each answer as (JSON text, the prepared input x)."""
        prepared: list[Any] = []
        for image, preprocess in requests:
            try:
                prepared.append(self._prepared(image, preprocess))
            except InputError as exc:
                prepared.append(exc)
        good = [i for i, p in enumerate(prepared) if not isinstance(p, InputError)]
        answers = self.compute_many([prepared[i][0] for i in good], [prepared[i][1] for i in good],
                                    None if ids is None else [ids[i] for i in good]) if good else []
        out = list(prepared)
        for i, ans in zip(good, answers):
            out[i] = ans if isinstance(ans, InputError) else (answer_json(ans), prepared[i][0])
        return out

    def predict(self, image: Any, *, preprocess: bool = True) -> dict[str, Any]:
        """/api/predict for an image: an (H, W) array in [0, 1] (white ink on black), a PIL image or bytes."""
        return as_lists(self._answer(image, preprocess))

    def predict_json(self, image: Any, *, preprocess: bool = True) -> str:
        """`predict` as JSON text, written ~4x faster than json.dumps would (the image grids
        go through a table of decimal strings instead of float repr)."""
        return answer_json(self._answer(image, preprocess))

    def predict_sample_json(self, index: int) -> str:
        return answer_json(self._sample(index))

    def warnings(self, shown: np.ndarray, probs: list[float], order: list[int], *,
                 raw: np.ndarray | None = None) -> list[str]:
        """Reasons not to trust this answer (`web.trust`)."""
        from convscope.web.trust import warnings

        return warnings(shown, probs, order, raw=raw, random_weights=self.random_weights,
                        preprocessing=self.config["preprocessing"])

    # ---- layers on demand ----------------------------------------------------------------
    @staticmethod
    def _finish_encoding(enc: dict[str, Any], sort: str) -> dict[str, Any]:
        enc["layer_min"], enc["layer_max"] = enc.pop("min"), enc.pop("max")  # of the whole layer
        enc["min"], enc["max"] = enc["layer_min"], enc["layer_max"]
        enc["sort"] = sort
        return enc

    def encode(self, layer: dict[str, Any], v: torch.Tensor, *, offset: int = 0, limit: int | None = None,
               sort: str = "index") -> dict[str, Any]:
        a = v.numpy() if v.dim() == 3 else v.reshape(-1).numpy()
        total = a.shape[0] if a.ndim == 3 else 1
        if a.ndim == 3 and (limit is not None or offset or sort != "index"):
            order = np.arange(total)
            if sort == "strength":
                order = np.argsort(-a.reshape(total, -1).mean(axis=1), kind="stable")
            maps = order[offset:offset + (limit if limit is not None else total)]
        else:
            maps = None
        return self._finish_encoding(encode_maps(layer["name"], a, maps=maps), sort)

    def layer(self, name: str, *, input_id: int | None = None, offset: int = 0, limit: int = 64,
              sort: str = "index") -> dict[str, Any]:
        layer = self._layer(name)
        if sort not in ("index", "strength"):
            raise InputError('sort must be "index" or "strength"', 422)
        if offset < 0 or not 1 <= limit <= MAX_PAGE_MAPS:
            raise InputError(f"offset must be >= 0 and limit 1..{MAX_PAGE_MAPS}", 422)
        input_id, values = self._values_for(input_id)
        enc = self.encode(layer, self.value(values, name), offset=offset, limit=limit, sort=sort)
        enc["input_id"] = input_id
        return enc

    # ---- why this class ------------------------------------------------------------------
    def gradcam(self, *, input_id: int | None = None, rank: int = 0) -> dict[str, Any]:
        """Grad-CAM (analysis.saliency) for the first (rank 0) or second (rank 1) guess of an input:
        the heat map over the input, uint8 base64 (H, W), 255 = where the evidence is strongest."""
        import base64

        from convscope.analysis.saliency import saliency_map

        if rank not in (0, 1):
            raise InputError("rank must be 0 (the first guess) or 1 (the second)", 422)
        with self._lock:
            if input_id is None and self._inputs:
                input_id = next(reversed(self._inputs))
            x = self._inputs.get(input_id) if input_id is not None else None
        if x is None:
            raise InputError("no such input kept: POST /api/predict first (the server keeps the last "
                             f"{KEEP_INPUTS})", 410 if input_id is not None else 409)
        with torch.inference_mode():
            logits = self.predictor.logits(x)
        target = int(torch.argsort(logits[0], descending=True)[rank])
        try:
            with self._lock:
                heat, target, layer = saliency_map(self.model, x.clone(), method="gradcam", target=target)
        except ValueError as exc:  # a model without a spatial layer
            raise InputError(str(exc), 422) from None
        q = np.rint(np.clip(heat, 0, 1) * 255).astype(np.uint8)
        return {"input_id": input_id, "rank": rank, "target": target, "label": self.classes[target],
                "layer": layer, "shape": list(q.shape), "data": base64.b64encode(q.tobytes()).decode("ascii")}

    # ---- samples from the run's own test split -----------------------------------------------
    def samples(self, *, offset: int = 0, limit: int = 24, wrong: bool = False) -> dict[str, Any]:
        from convscope.web.samples import Samples

        if self._samples is None:
            self._samples = Samples(self)
        return self._samples.page(offset=offset, limit=limit, wrong=wrong)

    def predict_sample(self, index: int) -> dict[str, Any]:
        return as_lists(self._sample(index))

    def _sample(self, index: int) -> dict[str, Any]:
        from convscope.web.samples import Samples

        if self._samples is None:
            self._samples = Samples(self)
        image, truth = self._samples.image(index)
        out = self.compute(self.prepare(image, preprocess=False))
        out["sample"] = {"index": index, "truth": truth, "label": self.classes[truth]}
        return out


class _BatchLayers:
    """The layers of one batched forward pass, each encoded for every row at once on first
    use (`encode_maps_rows`); `compute_many` hands each answer its row."""

    def __init__(self, explorer: Explorer, values: dict[str, torch.Tensor], rows: int) -> None:
        self.explorer, self.values, self.rows = explorer, values, rows
        self.done: dict[str, list[dict[str, Any]]] = {}

    def encoded(self, layer: dict[str, Any], row: int) -> dict[str, Any]:
        name = layer["name"]
        if name not in self.done:
            v = self.values[self.explorer.graph.shown[name]][:self.rows].float()
            a = v.numpy() if v.dim() == 4 else v.reshape(self.rows, -1).numpy()
            self.done[name] = encode_maps_rows(name, a)
        return Explorer._finish_encoding(dict(self.done[name][row]), "index")
