"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training
Neural Networks", sec. 3.3), with fastai's exponential sweep and suggestions.

Train for at most one epoch while the learning rate grows exponentially from
`start_lr` to `end_lr`, one step per batch, and record the loss. The raw loss
of one batch is noisy, so the curve is an exponential moving average with
Adam's bias correction (the first points are not pulled towards 0):

    avg_i = beta * avg_{i-1} + (1 - beta) * loss_i,   smoothed_i = avg_i / (1 - beta^(i+1))

`beta` defaults to 1 - 5 / steps, at most fastai's 0.98 (0.95 for 100 steps): the average
then spans about a fifth of the sweep, so a short sweep is not all lag. The sweep stops
once the smoothed loss is `diverge` times its minimum (or not finite): past that point
the network is being destroyed, not trained.

Suggestions (fastai's `lr_find`):
    steepest  the lr where the smoothed loss falls fastest (most negative slope against log lr)
    valley    the longest stretch over which the loss keeps falling, half-way into its
              middle third (fastai's default: a little before the minimum)
    minimum   a tenth of the lr at the lowest smoothed loss (the older rule of thumb)

`convscope train --lr find` takes "steepest": on the short sweeps one epoch of a small
dataset allows, the longest falling stretch often starts on the flat, noisy plateau
at tiny rates, and "valley" then lands a decade or more too low (docs/benchmarks.md).

The model is a copy: nothing of the caller's module or run folder is changed.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convscope.train import augment as aug
from convscope.train import optim
from convscope.train.batches import Batches, loss_with_aux
from convscope.train.config import TrainConfig
from convscope.train.loop import epoch_generator


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]               # smoothed (bias-corrected EMA)
    raw_losses: list[float]
    suggestions: dict[str, float]
    stopped: str                      # "diverged", "end_lr" or "epoch"
    seconds: float
    batch_size: int
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"suggestions": self.suggestions, "lrs": self.lrs, "losses": self.losses,
                "raw_losses": self.raw_losses, "stopped": self.stopped, "steps": len(self.lrs),
                "seconds": round(self.seconds, 3), "batch_size": self.batch_size, "settings": self.settings}


def exponential_lrs(start_lr: float, end_lr: float, steps: int) -> np.ndarray:
    """start_lr * (end_lr / start_lr) ** (i / (steps - 1)), i = 0 .. steps - 1."""
    return start_lr * (end_lr / start_lr) ** (np.arange(steps) / max(steps - 1, 1))


def smooth(raw: list[float] | np.ndarray, beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average of `raw`."""
    out, avg = [], 0.0
    for i, v in enumerate(raw):
        avg = beta * avg + (1 - beta) * float(v)
        out.append(avg / (1 - beta ** (i + 1)))
    return np.asarray(out)


def steepest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The lr with the most negative d(loss)/d(log lr)."""
    if len(lrs) < 3:
        return float(lrs[int(np.argmin(losses))])
    grad = np.gradient(losses, np.log(lrs))
    return float(lrs[int(np.argmin(grad))])


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's `valley`: the longest decreasing subsequence of the losses, then the point
    a third and a sixth of the way along it."""
    n = len(losses)
    lds, max_start, max_end = [1] * n, 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[max_end] < lds[i]:
            max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    return float(lrs[min(n - 1, max_start + int(sections) + int(sections / 2))])


def suggestions(lrs: np.ndarray, losses: np.ndarray) -> dict[str, float]:
    return {"steepest": steepest(lrs, losses), "valley": valley(lrs, losses),
            "minimum": float(lrs[int(np.argmin(losses))]) / 10}


def lr_find(model: nn.Module, dataset: Any, config: TrainConfig | None = None, *, start_lr: float = 1e-5,
            end_lr: float = 10.0, steps: int = 200, beta: float | None = None, diverge: float = 4.0,
            device: str | torch.device = "cpu") -> LRFindResult:
    """Run the range test on a copy of `model` with `dataset`'s train split (at most one epoch).

    `config` gives the batch size, optimizer (momentum, Nesterov, weight decay), label smoothing
    and seed (its lr, schedule and augmentation are ignored). The sweep runs on the plain images:
    it reads how fast the loss falls in its first few hundred steps, and augmented images slow
    that fall until it is lost in the noise (lenet5 on the digits preset with elastic moves: 2.29
    -> 2.27, a steepest suggestion of 1e-5 for one seed; plain images: 2.29 -> 2.07, 0.08-0.11).
    Fewer than `steps` batches in an epoch: the sweep takes one step per batch of the epoch.
    """
    cfg = config or TrainConfig()
    if not 0 < start_lr < end_lr:
        raise ValueError(f"the sweep needs 0 < --start-lr < --end-lr, got {start_lr} and {end_lr}")
    if steps < 5 or diverge <= 1 or (beta is not None and not 0 <= beta < 1):
        raise ValueError(f"--steps {steps} must be at least 5, the divergence factor {diverge} above 1 "
                         f"and the smoothing {beta} in [0, 1)")
    dev = torch.device(device)
    net = copy.deepcopy(model).to(dev).train()
    spec = aug.spec_for("none", image_size=dataset.train.images.shape[-1], erase_p=0.0)
    data = Batches(dataset.train, dataset.mean, dataset.std, dev, spec)
    per_epoch = len(data) // cfg.batch_size
    if per_epoch < 5:
        raise ValueError(f"the range test needs at least 5 batches of {cfg.batch_size} in one epoch, but "
                         f"{dataset.name}'s train split has {len(data)} images; lower --batch-size")
    n = min(steps, per_epoch)
    beta = beta if beta is not None else min(0.98, max(0.5, 1 - 5 / n))
    lrs = exponential_lrs(start_lr, end_lr, n)
    groups = optim.param_groups(net, cfg.weight_decay, decay_norm_and_bias=cfg.decay_norm_and_bias)
    opt = optim.build_optimizer(groups, name=cfg.optimizer, lr=float(lrs[0]), momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    gen = epoch_generator(cfg.seed, 0)
    perm = torch.randperm(len(data), generator=gen)
    t0, raw, smoothed, stopped = time.perf_counter(), [], [], "end_lr"
    best, avg = math.inf, 0.0
    for i, lr in enumerate(lrs):
        for g in opt.param_groups:
            g["lr"] = float(lr)
        loss = _step(net, opt, data, perm[i * cfg.batch_size:(i + 1) * cfg.batch_size], gen, cfg, dev)
        raw.append(loss)
        avg = beta * avg + (1 - beta) * loss
        smoothed.append(avg / (1 - beta ** (i + 1)))
        if not math.isfinite(smoothed[-1]) or smoothed[-1] > diverge * best:
            stopped = "diverged"
            break
        best = min(best, smoothed[-1])
    if stopped != "diverged" and n < steps:
        stopped = "epoch"
    k = len(smoothed) - (1 if stopped == "diverged" and not math.isfinite(smoothed[-1]) else 0)
    lr_list, loss_arr = [float(v) for v in lrs[:k]], np.asarray(smoothed[:k])
    return LRFindResult(lrs=lr_list, losses=[float(v) for v in loss_arr], raw_losses=[float(v) for v in raw[:k]],
                        suggestions=suggestions(np.asarray(lr_list), loss_arr), stopped=stopped,
                        seconds=time.perf_counter() - t0, batch_size=cfg.batch_size,
                        settings={"start_lr": start_lr, "end_lr": end_lr, "steps": n, "beta": beta,
                                  "diverge": diverge, "optimizer": cfg.optimizer, "momentum": cfg.momentum,
                                  "nesterov": cfg.nesterov, "weight_decay": cfg.weight_decay,
                                  "augment": spec.kind, "seed": cfg.seed})


def _step(net: nn.Module, opt: torch.optim.Optimizer, data: Batches, idx: torch.Tensor,
          gen: torch.Generator, cfg: TrainConfig, dev: torch.device) -> float:
    prm = aug.sample_params(data.spec, len(idx), *data.shape[1:], gen)
    x, y = data.get(idx.to(dev), prm)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        loss = loss_with_aux(net(x), y, cfg.label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def plot_lr_find(result: LRFindResult, path: str | Path, title: str = "") -> None:
    """The whole smoothed curve (raw losses faint), log-scale lr, both suggestions marked."""
    from convscope.train.plots import _figure, save_png

    plt, (fig, ax) = _figure(figsize=(7, 4.5))
    ax.plot(result.lrs, result.raw_losses, color="0.8", lw=0.8, label="loss of each batch")
    ax.plot(result.lrs, result.losses, color="C0", lw=2, label="smoothed loss")
    lrs, losses = np.asarray(result.lrs), np.asarray(result.losses)
    for key, colour, marker in (("steepest", "C3", "o"), ("valley", "C2", "s")):
        lr = result.suggestions[key]
        y = float(np.interp(np.log(lr), np.log(lrs), losses))
        ax.plot([lr], [y], marker, color=colour, ms=9, label=f"{key}: {lr:.3g}")
        ax.axvline(lr, color=colour, ls=":", lw=1)
    finite = losses[np.isfinite(losses)]
    if finite.size:
        low, top = finite.min(), min(finite.max(), 1.5 * finite[0])  # the divergence runs off the top
        ax.set_ylim(low - 0.15 * (top - low) - 1e-3, top + 0.05 * (top - low) + 1e-3)
    ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel="training loss",
           title=title or f"LR range test ({len(lrs)} steps, stopped: {result.stopped})")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    save_png(plt, fig, Path(path))


def range_test(*, model: str | None = None, data: Any = None, run: str | Path | None = None,
               recipe: str | None = None, model_kwargs: dict | None = None, device: str | None = None,
               data_root: str | None = None, download: bool = False, image_size: int | None = None,
               val_fraction: float | None = None, test_fraction: float | None = None,
               **settings: Any) -> tuple[LRFindResult, dict[str, Any]]:
    """`lr_find` from names: a registered model (fresh weights, seeded) or a run to fine-tune
    (its weights, a new head when the data has other classes) on a dataset name.

    `settings` are TrainConfig fields (batch_size, optimizer, seed, ...) plus lr_find's own
    (start_lr, end_lr, steps, beta, diverge). Returns (result, {"model", "data", "from"}).
    val_fraction/test_fraction split a dataset name as `train` does (the sweep reads its train split).
    Nothing is written: the run folder, if any, is only read.
    """
    from convscope.train.api import full_kwargs, check_fit, load_dataset
    from convscope.train.config import make_config, recipe_defaults

    sweep = {k: settings.pop(k) for k in ("start_lr", "end_lr", "steps", "beta", "diverge") if k in settings}
    rd = recipe_defaults(recipe)
    cfg = make_config(recipe, **settings)
    if run is not None:
        net, name, data = _from_run(run, data)
    else:
        name = model or rd.get("model", "lenet5")
        data = data if data is not None else rd.get("data", "mnist")
    dataset = load_dataset(data, root=data_root, download=download, image_size=image_size,
                           val_fraction=val_fraction, test_fraction=test_fraction)
    if run is None:
        from convscope.models import create_model

        torch.manual_seed(cfg.seed)
        kwargs = model_kwargs if model_kwargs is not None else (rd.get("model_kwargs") if model is None else None)
        net = create_model(name, **full_kwargs(dict(kwargs or {}), dataset))
    elif getattr(net, "num_classes", len(dataset.classes)) != len(dataset.classes):
        net.reset_classifier(len(dataset.classes))
    check_fit(net, dataset)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = lr_find(net, dataset, cfg, device=dev, **sweep)
    return result, {"model": name, "data": dataset.name, "from": str(run) if run is not None else None}


def _from_run(run: str | Path, data: Any) -> tuple[nn.Module, str, Any]:
    from convscope.runs import RunDir

    net, config = RunDir(run).load()
    return net, config["model"]["name"], data if data is not None else config["dataset"]
