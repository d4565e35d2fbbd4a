"""Grad-CAM for the static site: a second ONNX graph that computes what `/api/gradcam` does.

An inference graph gives no gradients, and onnxruntime-web has no autograd. So the
gradient Grad-CAM needs (Selvaraju et al. 2017, eq. 1: the class score's gradient
with respect to the chosen layer's maps, averaged over each map) is derived by
torch's own autograd, not by hand: `make_fx` traces the forward *and* the backward
of the network into plain ATen operations, and that graph is exported like any
other module. Inputs: the normalised image and a one-hot row selecting the class;
output: the map over the input, before it is scaled by its peak (the page does that
as `Explorer.gradcam` does). The layer is the server's (`last_spatial_layer`).

Before it is written the graph is checked with onnxruntime against
`analysis.saliency.saliency_map` (Captum, what the server runs) on random inputs
and both of their top classes; a network whose gradient graph cannot be exported,
fails that check, or is too big to ship twice gets no graph, and a sentence saying
why (the page shows it beside its disabled Grad-CAM buttons).
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from convscope.predictor import main_logits

FILE = "gradcam.onnx"
INPUT, ONEHOT, CAM = "input", "onehot", "cam"
MAX_PARAMS = 5_000_000   # the weights travel a second time in this graph
TOLERANCE = 1e-3         # on the map scaled to [0, 1]; the page quantises it to 1/255
SERVER = "`convscope serve` computes Grad-CAM"


class _Cam:
    """x, onehot -> the Grad-CAM map (H, W) of the class `onehot` selects, at `layer`."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.model, self.layer = model, layer

    def __call__(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        from convscope.capture import Capture

        with torch.enable_grad():
            with Capture(self.model, [self.layer], detach=False, clone=False) as cap:
                logits = self.model(x.clone().requires_grad_(True))
            logits = main_logits(logits)
            a = cap.outputs[self.layer]                                   # (1, K, h, w)
            (grad,) = torch.autograd.grad((logits * onehot).sum(), a)      # d score / d A
        weights = grad.mean(dim=(2, 3), keepdim=True)                      # alpha_k (eq. 1)
        cam = F.relu((weights * a).sum(1, keepdim=True))                   # eq. 2
        return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def export_gradcam(model: nn.Module, input_size: tuple[int, ...], num_classes: int, out_dir: Path, *,
                   max_params: int | None = None) -> dict[str, Any]:
    """Write `out_dir/gradcam.onnx`: {"onnx", "layer", "check_max_abs_diff"}; or, where the
    site cannot have it, {"unavailable": why} and nothing is written."""
    from torch._decomp import core_aten_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx

    from convscope.analysis.saliency import last_spatial_layer
    from convscope.export.onnx import OPSET

    max_params = MAX_PARAMS if max_params is None else max_params
    n = sum(p.numel() for p in model.parameters())
    if n > max_params:
        return {"unavailable": f"Grad-CAM is not in this static site: the network has {n:,} parameters and the "
                               f"site ships its gradient graph only up to {max_params:,}; {SERVER}"}
    net = copy.deepcopy(model).eval()
    for m in net.modules():  # autograd needs each layer's output intact (as Captum does)
        if getattr(m, "inplace", False) is True:
            m.inplace = False
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.zeros(1, *input_size)
    onehot = torch.zeros(1, num_classes)
    try:
        layer = last_spatial_layer(net, x)
    except ValueError as exc:
        return {"unavailable": f"Grad-CAM is not available: {exc}"}
    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            graph = make_fx(_Cam(net, layer), decomposition_table=core_aten_decompositions())(x, onehot)
            program = torch.onnx.export(graph, (x, onehot), input_names=[INPUT, ONEHOT], output_names=[CAM],
                                        dynamo=True, opset_version=OPSET, optimize=True, verbose=False)
        data = program.model_proto.SerializeToString()
    except Exception as exc:  # an operation of the backward that ONNX has no translation for
        return {"unavailable": f"Grad-CAM could not be exported for this network ({_first_line(exc)}); {SERVER}"}
    diff = check_gradcam(data, model, input_size, num_classes)
    if not diff <= TOLERANCE:
        return {"unavailable": f"the site's Grad-CAM graph differs from the server's by {diff:.2g} (tolerance "
                               f"{TOLERANCE:g}), so it is left out; {SERVER}"}
    (out_dir / FILE).write_bytes(data)
    return {"onnx": FILE, "layer": layer, "check_max_abs_diff": diff}


def run_gradcam(data: bytes | str, x: np.ndarray, target: int, num_classes: int) -> np.ndarray:
    """The graph's map (H, W) for a normalised input x (1, C, H, W), scaled by its peak."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    onehot = np.zeros((1, num_classes), np.float32)
    onehot[0, target] = 1
    (cam,) = sess.run([CAM], {INPUT: x.astype(np.float32), ONEHOT: onehot})
    peak = float(cam.max())
    return cam / peak if peak > 0 else cam


def check_gradcam(data: bytes, model: nn.Module, input_size: tuple[int, ...], num_classes: int, *,
                  trials: int = 3, seed: int = 0) -> float:
    """Largest difference between the graph's map and Captum's (`saliency_map`, the server's)
    on `trials` random inputs, for each input's first and second class."""
    from convscope.analysis.saliency import saliency_map

    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(trials):
        x = torch.randn(1, *input_size, generator=gen)
        with torch.no_grad():
            logits = model.eval()(x)
        logits = main_logits(logits)
        for target in torch.argsort(logits[0], descending=True)[:2].tolist():
            want, _, _ = saliency_map(copy.deepcopy(model), x.clone(), method="gradcam", target=int(target))
            got = run_gradcam(data, x.numpy(), int(target), num_classes)
            worst = max(worst, float(np.abs(got - want).max()))
    return worst
