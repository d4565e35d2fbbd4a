"""Pictures of what units see: patch grids, tuning curves, and Lee et al.'s hierarchy figure.

Grids are assembled as arrays (one tile per patch, a 1-pixel white gutter)
and written with matplotlib (Agg) so every PNG has labelled rows. Each tile is
shown on the pixel scale [0, 1] it was fed at, never rescaled per tile: a
dataset patch and an optimised image of the same channel compare directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

MAX_ROWS = 64  # channels drawn in one grid; the JSON always has every channel


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> Path:
    """Write the figure as PNG atomically (a reader never sees half a file) and close it."""
    import io

    import matplotlib.pyplot as plt

    from convscope.runs import atomic_write_bytes

    path = Path(out)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _rgb(tile: np.ndarray) -> np.ndarray:
    """(C, h, w) in [0, 1] -> (h, w, 3)."""
    t = np.asarray(tile, dtype=np.float32)
    if t.shape[0] == 1:
        t = np.repeat(t, 3, 0)
    elif t.shape[0] != 3:
        t = np.repeat(t.mean(0, keepdims=True), 3, 0)
    return np.clip(t.transpose(1, 2, 0), 0, 1)


def mosaic(rows: Sequence[Sequence[np.ndarray]], pad: int = 1) -> np.ndarray:
    """Rows of (C, h, w) tiles (h, w may differ between rows) -> one (H, W, 3) picture, tiles top-left aligned."""
    th = max(t.shape[1] for r in rows for t in r)
    tw = max(t.shape[2] for r in rows for t in r)
    cols = max(len(r) for r in rows)
    out = np.ones((len(rows) * (th + pad) + pad, cols * (tw + pad) + pad, 3), dtype=np.float32)
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            y, x = pad + i * (th + pad), pad + j * (tw + pad)
            out[y:y + t.shape[1], x:x + t.shape[2]] = _rgb(t)
    return out


def plot_patch_grid(rows: dict[int, list[np.ndarray]], out: str | Path, *, title: str,
                    optimized: dict[int, np.ndarray] | None = None) -> Path:
    """One row per channel: its top patches, highest first (and, after a gap, its optimised image)."""
    plt = _plt()
    chans = list(rows)[:MAX_ROWS]
    tiles = [list(rows[c]) for c in chans]
    ncols = max(len(t) for t in tiles)
    fig_rows = len(chans)
    width = 1.0 + 0.55 * (ncols + (1.6 if optimized else 0))
    fig, axes = plt.subplots(1, 2 if optimized else 1, figsize=(width, 0.6 + 0.55 * fig_rows), dpi=110,
                             squeeze=False, gridspec_kw={"width_ratios": [ncols, 1.3]} if optimized else None)
    ax = axes[0][0]
    ax.imshow(mosaic(tiles), interpolation="nearest")
    _label_rows(ax, chans, tiles)
    ax.set_title(f"top {ncols} dataset patches", fontsize=8)
    if optimized:
        ax2 = axes[0][1]
        ax2.imshow(mosaic([[optimized[c]] for c in chans]), interpolation="nearest")
        ax2.set_axis_off()
        ax2.set_title("optimised", fontsize=8)
    shown = f" (channels {chans[0]}-{chans[-1]} of {len(rows)})" if len(rows) > len(chans) else ""
    fig.suptitle(title + shown, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def _label_rows(ax, chans: list[int], tiles: list[list[np.ndarray]]) -> None:
    th = max(t.shape[1] for r in tiles for t in r)
    ax.set_yticks([1 + i * (th + 1) + th / 2 for i in range(len(chans))])
    ax.set_yticklabels([str(c) for c in chans], fontsize=6)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_ylabel("channel", fontsize=7)


def plot_tuning(tunings: Sequence, out: str | Path, *, labels: Sequence[str], title: str,
                max_units: int = 16) -> Path:
    """Polar-free tuning curves: one panel per unit, the trained curve and the baseline's, response vs degrees."""
    plt = _plt()
    first = tunings[0]
    n = min(first.curves.shape[0], max_units)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.9 * rows + 0.5), dpi=110, squeeze=False)
    deg = np.append(first.orientations, 180.0)
    for c in range(rows * cols):
        ax = axes[c // cols][c % cols]
        if c >= n:
            ax.set_axis_off()
            continue
        for tu, label, style in zip(tunings, labels, ("-o", "--")):
            curve = np.append(tu.curves[c], tu.curves[c][0])  # 180 degrees is 0 again
            peak = curve.max() or 1.0
            ax.plot(deg, curve / peak, style, ms=2.5, lw=1.2, label=f"{label} OSI {tu.osi[c]:.2f}")
        ax.set_xticks([0, 45, 90, 135, 180])
        ax.tick_params(labelsize=6)
        ax.set_ylim(-0.05, 1.1)
        ax.set_title(f"channel {c}: prefers {first.preferred[c]:.0f}°", fontsize=7)
        ax.legend(fontsize=5, loc="lower right", frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.supxlabel("orientation (degrees; 0 = horizontal bar)", fontsize=7)
    fig.supylabel("response / its peak", fontsize=7)
    fig.tight_layout()
    return _save(fig, out)


def plot_hierarchy(layers: list[tuple[str, list[np.ndarray], list[np.ndarray]]], out: str | Path, *,
                   title: str) -> Path:
    """Lee et al. (2009), Fig. 3 for your run: per layer (a row), its channels' best patch above their optimised image.

    layers: (layer name, best patches per shown channel, optimised images per shown channel).
    """
    plt = _plt()
    fig, axes = plt.subplots(len(layers), 1, figsize=(1.2 + 0.7 * max(len(p) for _, p, _ in layers),
                                                      1.5 * len(layers) + 0.5), dpi=110, squeeze=False)
    for ax, (name, patches, images) in zip(axes[:, 0], layers):
        tiles = [patches] + ([[_resize_like(i, patches[0]) for i in images]] if images else [])
        ax.imshow(mosaic(tiles), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, fontsize=6)
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_visible(False)
    what = "best dataset patch per channel, above its optimised image" if any(i for _, _, i in layers) \
        else "best dataset patch per channel"
    fig.suptitle(f"{title}\n(each layer: {what})", fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def _resize_like(img: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resize of (C, h, w) to like's (h, w), so rows line up."""
    h, w = like.shape[1:]
    ys = np.minimum((np.arange(h) * img.shape[1] / h).astype(int), img.shape[1] - 1)
    xs = np.minimum((np.arange(w) * img.shape[2] / w).astype(int), img.shape[2] - 1)
    return img[:, ys][:, :, xs]
