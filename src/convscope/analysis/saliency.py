"""Which pixels drove the decision: gradients (Simonyan et al. 2014) and Grad-CAM
(Selvaraju et al. 2017), computed with Captum and drawn over the image.

Works for 1-channel inputs (a digit) as for RGB: the gradient map takes the
largest absolute gradient over the channels (Simonyan et al., section 3.1).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

METHODS = ("gradcam", "gradients")


def _no_inplace(model: nn.Module) -> None:
    # Captum's hooks need each layer's output intact; an in-place ReLU would overwrite it.
    for m in model.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False


def last_spatial_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The last leaf layer whose output is still a feature map (N, C, H, W) larger than 1x1
    (a global pooling has nothing left to locate): Grad-CAM's default."""
    from convscope.analysis.pictures import layer_outputs

    maps = [(n, t) for n, t in layer_outputs(model, x)[0] if t.dim() == 4]
    names = [n for n, t in maps if t.shape[-2] * t.shape[-1] > 1] or [n for n, _ in maps]
    if not names:
        raise ValueError("Grad-CAM needs a layer with a spatial output; this model has none (try --method gradients)")
    return names[-1]


def saliency_map(model: nn.Module, x: torch.Tensor, *, method: str = "gradcam", target: int | None = None,
                 layer: str | None = None) -> tuple[np.ndarray, int, str | None]:
    """(map (H, W) in [0, 1], target class, layer used) for input `x` (1, C, H, W)."""
    from captum.attr import LayerAttribution, LayerGradCam, Saliency

    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    model.eval()
    _no_inplace(model)
    if target is None:
        with torch.no_grad():
            target = int(model(x).argmax(1)[0])
    x = x.detach().clone().requires_grad_(True)
    if method == "gradients":
        attr = Saliency(model).attribute(x, target=target, abs=True)  # (1, C, H, W)
        heat = attr[0].max(0).values
    else:
        layer = layer or last_spatial_layer(model, x.detach())
        cam = LayerGradCam(model, model.get_submodule(layer)).attribute(x, target=target, relu_attributions=True)
        heat = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[0, 0]
    heat = heat.detach().float().cpu().numpy()
    peak = float(heat.max())
    return (heat / peak if peak > 0 else heat), target, (layer if method == "gradcam" else None)


def plot_saliency(model: nn.Module, x: torch.Tensor, out: str | Path, *, method: str = "gradcam",
                  config: dict[str, Any] | None = None, layer: str | None = None, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convscope.analysis.pictures import save_figure, show_input

    heat, target, used = saliency_map(model, x, method=method, layer=layer)
    with torch.no_grad():
        prob = float(torch.softmax(model(x), 1)[0, target])
    labels = (config or {}).get("classes") or []
    label = labels[target] if target < len(labels) else str(target)
    img = show_input(x, config)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.8), dpi=110)
    grey = "gray" if img.ndim == 2 else None
    axes[0].imshow(img, cmap=grey, vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(heat, cmap="jet", vmin=0, vmax=1)
    axes[1].set_title(f"{method}" + (f" at {used}" if used else ""), fontsize=9)
    axes[2].imshow(img, cmap=grey, vmin=0, vmax=1)
    axes[2].imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[2].set_title("overlay", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{title + ': ' if title else ''}which pixels drove the guess {label} ({prob:.0%})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)
