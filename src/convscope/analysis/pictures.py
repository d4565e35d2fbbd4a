"""Pictures of what a network learned: its filters and its feature maps.

`kernel_mosaic` lays out a convolution's filters as AlexNet's Figure 3 does:
one tile per filter, colour when the filter reads 3 channels (RGB), grey
when it reads 1; a filter over C channels is shown as C grey tiles in a row.
Each filter is scaled to [0, 1] on its own (its min to black, its max to
white), so the pattern shows whatever the filter's overall size.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

MAX_FILTERS = 96      # AlexNet's figure shows its 96 first-layer kernels
MAX_FILTER_ROWS = 32  # filters drawn when each takes a row of per-channel tiles
MAX_IN_CHANNELS = 16  # tiles per filter when it reads more than 3 channels
MAX_MAPS = 16         # feature maps drawn per layer


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def find_conv(model: nn.Module, layer: str | None) -> tuple[str, nn.Conv2d]:
    convs = conv_layers(model)
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution layers")
    if layer is None:
        return convs[0]
    for name, mod in convs:
        if name == layer:
            return name, mod
    names = ", ".join(n for n, _ in convs[:12]) + (", ..." if len(convs) > 12 else "")
    raise ValueError(f"no convolution named {layer!r}; the convolutions are: {names}")


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)


def _grid(tiles: Sequence[np.ndarray], cols: int, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """Tiles of equal shape (h, w) or (h, w, 3) into one image, `pad` pixels of `fill` between."""
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    shape = (rows * (h + pad) + pad, cols * (w + pad) + pad) + tiles[0].shape[2:]
    out = np.full(shape, fill, dtype=np.float32)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = t
    return out


def filters_shown(weight: torch.Tensor) -> int:
    return min(weight.shape[0], MAX_FILTERS if weight.shape[1] in (1, 3) else MAX_FILTER_ROWS)


def kernel_mosaic(weight: torch.Tensor) -> np.ndarray:
    """(out, in, kH, kW) weights -> one image: RGB (H, W, 3) for in=3, grey (H, W) otherwise."""
    w = weight.detach().float().cpu().numpy()[: filters_shown(weight)]
    if w.shape[1] == 3:  # (kH, kW, 3) colour tiles
        tiles = [_unit(f.transpose(1, 2, 0)) for f in w]
        return _grid(tiles, cols=min(len(tiles), 12))
    if w.shape[1] == 1:
        tiles = [_unit(f[0]) for f in w]
        return _grid(tiles, cols=min(len(tiles), 12))
    cin = min(w.shape[1], MAX_IN_CHANNELS)  # one row per filter, one tile per input channel
    tiles = [_unit(f[:cin])[c] for f in w for c in range(cin)]
    return _grid(tiles, cols=cin)


def plot_kernels(model: nn.Module, out: str | Path, *, layer: str | None = None, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, conv = find_conv(model, layer)
    w = conv.weight
    mosaic = kernel_mosaic(w)
    shown = filters_shown(w)
    what = f"{name}: {w.shape[0]} filters of {w.shape[2]}x{w.shape[3]}x{w.shape[1]}"
    if shown < w.shape[0] or (w.shape[1] not in (1, 3) and w.shape[1] > MAX_IN_CHANNELS):
        what += f" (first {shown} filters" + (f", first {MAX_IN_CHANNELS} input channels)" if w.shape[1] > MAX_IN_CHANNELS
                                             else ")")
    if w.shape[1] not in (1, 3):
        what += "\none row per filter, one grey tile per input channel"
    aspect = mosaic.shape[0] / mosaic.shape[1]
    fig, ax = plt.subplots(figsize=(8, min(max(2.0, 8 * aspect), 16)), dpi=110)
    ax.imshow(mosaic, cmap=None if mosaic.ndim == 3 else "gray", interpolation="nearest", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(f"{title}\n{what}" if title else what, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def save_figure(fig: Any, out: str | Path) -> Path:
    """Write a matplotlib figure to `out` (folders made) and close it."""
    import matplotlib.pyplot as plt

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---- feature maps -------------------------------------------------------------------------

def layer_outputs(model: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor]:
    """Every leaf layer's tensor output, in the order they run, and the logits (dropout and
    identities left out); caught by `convscope.capture`, which copies each output."""
    from convscope.capture import capture
    from convscope.predictor import main_logits

    logits, outs = capture(model, x)
    return [(n, t) for n, t in outs.items() if isinstance(t, torch.Tensor)], main_logits(logits)


def map_mosaic(t: torch.Tensor, max_maps: int = MAX_MAPS) -> np.ndarray:
    """(1, C, H, W) -> a grid of the first `max_maps` maps, each scaled on its own; (1, N) -> a strip."""
    a = t[0].float().cpu().numpy()
    if a.ndim == 3:
        maps = [_unit(m) for m in a[:max_maps]]
        return _grid(maps, cols=min(len(maps), 8), fill=np.nan)  # gaps drawn blank
    flat = a.reshape(-1)
    cols = min(flat.size, 40)
    rows = math.ceil(flat.size / cols)
    padded = np.full(rows * cols, np.nan, dtype=np.float32)
    padded[: flat.size] = _unit(flat)
    return padded.reshape(rows, cols)


def show_input(x: torch.Tensor, config: dict[str, Any] | None) -> np.ndarray:
    """The model's input as a viewable image in [0, 1]: normalisation undone, (H, W) or (H, W, 3)."""
    from convscope.predictor import unnormalize

    norm = (config or {}).get("normalization") or {}
    a = unnormalize(x, norm.get("mean", [0.0]), norm.get("std", [1.0]))
    return a[0] if a.shape[0] == 1 else a[:3].transpose(1, 2, 0)


def plot_activations(model: nn.Module, x: torch.Tensor, out: str | Path, *, config: dict[str, Any] | None = None,
                     title: str = "", max_layers: int = 40) -> Path:
    """Input, then every layer's feature maps (a grid each), then the output probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, logits = layer_outputs(model, x)
    probs = torch.softmax(logits[0].float(), 0).cpu().numpy()
    labels = list((config or {}).get("classes") or range(len(probs)))
    layers = layers[:max_layers]
    n = len(layers) + 2
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.5 * n), dpi=100,
                             gridspec_kw={"height_ratios": [2] + [1.3] * len(layers) + [1.6]})
    img = show_input(x, config)
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    axes[0].set_title(f"{title}\ninput {'x'.join(str(v) for v in x.shape[1:])}" if title else "input", fontsize=9)
    for ax, (name, t) in zip(axes[1:-1], layers):
        ax.imshow(map_mosaic(t), cmap="viridis", interpolation="nearest", aspect="auto" if t.dim() == 2 else "equal")
        shape = "x".join(str(v) for v in t.shape[1:])
        extra = f" (first {MAX_MAPS} of {t.shape[1]} maps)" if t.dim() == 4 and t.shape[1] > MAX_MAPS else ""
        ax.set_title(f"{name}: {shape}{extra}", fontsize=8, loc="left")
    for ax in axes[:-1]:
        ax.set_axis_off()
    _probability_bars(axes[-1], probs, labels)
    fig.tight_layout()
    return save_figure(fig, out)


def _probability_bars(ax: Any, probs: np.ndarray, labels: Sequence[Any]) -> None:
    from convscope.predictor import top_k

    top = [t["index"] for t in top_k(probs, 10)]
    order = sorted(top) if len(probs) <= 10 else top
    colors = ["tab:red" if i == top[0] else "tab:orange" if len(top) > 1 and i == top[1] else "tab:blue"
              for i in order]
    ax.bar(range(len(order)), probs[order], color=colors)
    ax.set_xticks(range(len(order)), [str(labels[i]) if i < len(labels) else str(i) for i in order], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(f"output probabilities: first guess {labels[top[0]]} ({probs[top[0]]:.0%})"
                 + (f", second {labels[top[1]]} ({probs[top[1]]:.0%})" if len(top) > 1 else ""), fontsize=9, loc="left")
