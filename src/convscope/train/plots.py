"""curves.png (loss and accuracy per epoch) and the confusion-matrix PNG (matplotlib, Agg)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from convscope.runs import atomic_write_bytes


def _figure(*args, **kw):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(*args, **kw)


def save_png(plt: Any, fig: Any, path: Path, *, dpi: int = 100) -> None:
    """The figure as a PNG, written atomically; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(history: Sequence[dict], path: str | Path, title: str = "") -> None:
    plt, (fig, (ax_loss, ax_acc)) = _figure(1, 2, figsize=(10, 4))
    ep = [h["epoch"] for h in history]
    ax_loss.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    # epochs without a validation split (--val-fraction 0) carry null val figures: drawn as gaps
    val = [h for h in history if h.get("val_top1") is not None]
    if val:
        vep = [h["epoch"] for h in val]
        ax_loss.plot(vep, [h["val_loss"] for h in val], "o-", label="validation")
        ax_acc.plot(vep, [100 * h["val_top1"] for h in val], "o-", label="val top-1")
        ax_acc.plot(vep, [100 * h["val_top5"] for h in val], "o-", label="val top-5")
        ax_acc.legend()
    else:
        ax_acc.text(0.5, 0.5, "no validation split:\nevery image was trained on", ha="center", va="center",
                    transform=ax_acc.transAxes)
    ax_loss.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_png(plt, fig, Path(path))


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path,
                   title: str = "") -> None:
    import numpy as np

    m = np.asarray(confusion)
    k = len(classes)
    side = max(4.0, 0.45 * k + 2)
    plt, (fig, ax) = _figure(figsize=(side, side))
    ax.imshow(m, cmap="Blues")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    ax.set_xticklabels(classes, rotation=90 if k > 5 else 0)
    ax.set_yticklabels(classes)
    if k <= 20:
        hi = m.max() if m.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > hi / 2 else "black")
    fig.tight_layout()
    save_png(plt, fig, Path(path))
