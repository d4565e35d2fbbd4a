"""The top-losses gallery: the most confident mistakes of a run, as one PNG.

Each tile is the image as the dataset stores it (before normalisation), with
its true class, the network's guess and the probability it gave that guess,
and the probability it gave the truth. Like fastai's `plot_top_losses`, the
tiles are in order of loss, highest first.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch

from convscope.train.plots import _figure, save_png


def plot_top_losses(images: torch.Tensor, items: Sequence[dict[str, Any]], path: str | Path, *,
                    count: int = 16, title: str = "") -> int:
    """Draw the first `count` of `items` (misclassified entries, index into `images` uint8
    (N, C, H, W)) in a grid; returns the number of tiles drawn (0 draws a "no mistakes" note)."""
    chosen = list(items)[:max(count, 0)]
    cols = min(4, max(1, len(chosen)))
    rows = max(1, math.ceil(len(chosen) / cols))
    plt, (fig, axes) = _figure(rows, cols, figsize=(2.6 * cols, 3.0 * rows + 0.4), squeeze=False,
                                layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    if not chosen:
        axes[0, 0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    for ax, item in zip(axes.flat, chosen):
        img = images[item["index"]]                                   # (C, H, W) uint8
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img[:3].permute(1, 2, 0).numpy())
        ax.set_title(f"#{item['index']} truth: {item['truth']}\nguess: {item['predicted']} "
                     f"({100 * item['probability']:.0f}%)\np(truth) {100 * item['truth_probability']:.1f}%",
                     fontsize=8)
    fig.suptitle(title or "top losses: truth, guess (probability)", fontsize=10)
    save_png(plt, fig, Path(path))
    return len(chosen)
