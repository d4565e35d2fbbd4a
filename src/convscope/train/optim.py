"""Optimisers, weight-decay groups and learning-rate schedules.

Weight decay skips biases and normalisation weights by default, like timm's
`param_groups_weight_decay`: decaying a BN scale only fights the next layer.

Schedules are small classes with plain-number state (resumable with
`torch.load(weights_only=True)`). Each sets every group's lr to the group's
own base lr times a factor, so a caller's param groups with different lrs
(a fine-tuned body and a fresh head) keep their ratio.

    step      x gamma every `step_size` epochs
    plateau   / 10 when val top-1 has not improved for `patience` epochs
              (the AlexNet rule, Krizhevsky et al. 2012, sec. 5; He et al. 2016, sec. 3.4)
    onecycle  up to the peak for `warmup` of the steps, then down to peak / 2.5e5,
              both halves cosine (Smith & Topin 2017; the same numbers as torch's OneCycleLR)
    cosine    linear warm-up for `warmup_epochs`, then cosine to 0 (Loshchilov & Hutter 2017)
    constant  the base lr throughout
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import nn

SCHEDULES = ("step", "plateau", "onecycle", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw")


def param_groups(model: nn.Module, weight_decay: float, *, decay_norm_and_bias: bool = False,
                 param_filter: Callable[[str, nn.Parameter], bool] | None = None) -> list[dict]:
    """Two groups: decayed weights, and 1-D tensors (biases, BN/LN scales) without decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or (param_filter is not None and not param_filter(name, p)):
            continue
        (no_decay if p.ndim <= 1 and not decay_norm_and_bias else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(groups: Iterable[dict], *, name: str, lr: float, momentum: float = 0.9,
                    nesterov: bool = False, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    groups = list(groups)
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen (requires_grad=False)")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


class Schedule:
    """lr factor as a function of progress; `epoch_end(val_top1)` for data-driven rules."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int) -> None:
        self.optimizer = optimizer
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        for g in optimizer.param_groups:
            g.setdefault("base_lr", g["lr"])
        self.factor = 1.0

    def factor_at(self, epoch: int, step: int) -> float:  # epoch counts from 0
        return 1.0

    def step(self, epoch: int, step: int) -> None:
        """Call before optimizer.step() of step `step` (0-based) in epoch `epoch`."""
        self.factor = self.factor_at(epoch, step)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * self.factor

    def epoch_end(self, val_top1: float) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.factor = float(state["factor"])


class StepSchedule(Schedule):
    def __init__(self, optimizer, *, step_size: int = 10, gamma: float = 0.1, **kw) -> None:
        super().__init__(optimizer, **kw)
        self.step_size, self.gamma = max(1, step_size), gamma

    def factor_at(self, epoch: int, step: int) -> float:
        return self.gamma ** (epoch // self.step_size)


class PlateauSchedule(Schedule):
    def __init__(self, optimizer, *, patience: int = 2, gamma: float = 0.1, **kw) -> None:
        super().__init__(optimizer, **kw)
        self.patience, self.gamma = patience, gamma
        self.best, self.bad_epochs, self.level = -1.0, 0, 1.0

    def factor_at(self, epoch: int, step: int) -> float:
        return self.level

    def epoch_end(self, val_top1: float) -> None:
        if val_top1 > self.best + 1e-4:
            self.best, self.bad_epochs = val_top1, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.level *= self.gamma
                self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "best": self.best, "bad_epochs": self.bad_epochs, "level": self.level}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])
        self.level = float(state["level"])


class OneCycleSchedule(Schedule):
    """torch's OneCycleLR (cosine annealing, two phases) as a factor of the peak lr:
    from 1/div up to 1 over `warmup` of the steps, then down to 1/(div * final_div)."""

    def __init__(self, optimizer, *, warmup: float = 0.25, div: float = 25.0, final_div: float = 1e4, **kw):
        super().__init__(optimizer, **kw)
        self.warmup, self.div, self.final_div = warmup, div, final_div

    @staticmethod
    def _cos(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def factor_at(self, epoch: int, step: int) -> float:
        total = self.epochs * self.steps_per_epoch
        i = min(epoch * self.steps_per_epoch + step, total - 1)
        peak = float(self.warmup * total) - 1
        start, end = 1.0 / self.div, 1.0 / (self.div * self.final_div)
        if i <= peak:
            return self._cos(start, 1.0, i / peak) if peak > 0 else 1.0
        return self._cos(1.0, end, (i - peak) / max(total - 1 - peak, 1e-12))


class CosineSchedule(Schedule):
    def __init__(self, optimizer, *, warmup_epochs: float = 1.0, **kw) -> None:
        super().__init__(optimizer, **kw)
        self.warmup_steps = warmup_epochs * self.steps_per_epoch

    def factor_at(self, epoch: int, step: int) -> float:
        i = epoch * self.steps_per_epoch + step
        if i < self.warmup_steps:
            return (i + 1) / self.warmup_steps
        rest = max(1.0, self.epochs * self.steps_per_epoch - self.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (i - self.warmup_steps) / rest)))


def build_schedule(name: str, optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int,
                   step_size: int = 10, gamma: float = 0.1, patience: int = 2,
                   warmup: float = 0.25, warmup_epochs: float = 1.0) -> Schedule:
    kw = {"epochs": epochs, "steps_per_epoch": steps_per_epoch}
    if name == "step":
        return StepSchedule(optimizer, step_size=step_size, gamma=gamma, **kw)
    if name == "plateau":
        return PlateauSchedule(optimizer, patience=patience, gamma=gamma, **kw)
    if name == "onecycle":
        return OneCycleSchedule(optimizer, warmup=warmup, **kw)
    if name == "cosine":
        return CosineSchedule(optimizer, warmup_epochs=warmup_epochs, **kw)
    if name == "constant":
        return Schedule(optimizer, **kw)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
