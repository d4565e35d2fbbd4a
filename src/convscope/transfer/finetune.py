"""Fine-tuning a trained model on new data: freeze, reinitialise, new head, two phases.

    plan = prepare(load_source("runs/fashion"), mnist, freeze=1, reinit=0)
    result = fit_plan(plan, mnist, "runs/ft", epochs=3)

What `prepare` does, in order:
  1. copy the source model (the source is never changed);
  2. input adaptation when the data's channels differ (see `adapt`);
  3. `reinit` N: the last N stages get the fresh initial weights of a new model
     of the same architecture ("Reinitialize and Train");
  4. a new head for the target's classes (`reset_classifier`), unless `keep_head`;
  5. `freeze` N (or "all"): the first N stages (all not reinitialised) are
     frozen for the whole run: requires_grad=False and their batch norm kept
     in eval mode, so its running statistics do not move either.

The schedule `fit_plan` runs is fastai's `fine_tune` (Howard & Gugger 2020):
  phase 1, `freeze_epochs` (default 1): only the head and the reinitialised
    stages train, the body is frozen, one-cycle at `lr`;
  phase 2, `epochs`: everything not frozen trains, one-cycle at `lr / 2`, with
    discriminative learning rates: stage i of L trains at
    lr/2 * body_lr_mult ** ((L - i) / L), from lr/2 * body_lr_mult for the first
    stage up towards lr/2 for the head (fastai's `slice(lr * mult, lr)`);
    the head and reinitialised stages train at lr/2.
With freeze="all" there is one phase: the head (and reinitialised stages) for `epochs`.
"""
from __future__ import annotations

import copy
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convscope.transfer.adapt import adapt_input_channels
from convscope.transfer.sources import Source
from convscope.transfer.stages import Stage, head, stage_of, stages

PHASE1 = "phase1-head"


@dataclass
class Plan:
    """A model ready to fine-tune, and which of its stages are frozen or new."""

    model: nn.Module
    source: Source
    stages: list[Stage]
    head: Stage
    frozen: list[Stage]
    reinit: list[Stage]
    adapted: str | None = None      # e.g. "3->1: filters summed over the input channels"

    def names(self, which: list[Stage]) -> list[str]:
        return [s.name for s in which]

    def summary(self) -> dict[str, Any]:
        return {"stages": self.names(self.stages), "frozen": self.names(self.frozen),
                "reinit": self.names(self.reinit), "head": list(self.head.paths), "input_adaptation": self.adapted}


def parse_count(value: Any, what: str, *, allow_all: bool = False) -> int | str:
    """--freeze / --reinit: a whole number (or "all" for --freeze)."""
    if allow_all and isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if n < 0 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        extra = ' or "all"' if allow_all else ""
        raise ValueError(f"--{what} {value!r} is not valid: give a number of stages (0 or more){extra}")
    return n


def _counts(source: Source, body: list[Stage], freeze: Any, reinit: Any) -> tuple[int, int]:
    """(stages to freeze, stages to reinitialise), checked against the body's stages."""
    names = ", ".join(s.name for s in body)
    total = len(body)
    f, r = parse_count(freeze or 0, "freeze", allow_all=True), parse_count(reinit or 0, "reinit")
    if r > total:
        raise ValueError(f"--reinit {r} is more than the {total} stages of {source.name} ({names})")
    f = total - r if f == "all" else f
    if f > total:
        raise ValueError(f"--freeze {f} is more than the {total} stages of {source.name} ({names}); "
                         f"use --freeze all to freeze the whole body")
    if f + r > total:
        raise ValueError(f"--freeze {f} and --reinit {r} overlap: {source.name} has {total} stages ({names}); "
                         f"a reinitialised stage must train, so freeze + reinit can be at most {total}")
    return f, r


def _reinitialise(model: nn.Module, source: Source, which: list[Stage], in_chans: int, num_classes: int) -> None:
    """Copy these stages from a new model of the same architecture: the family's own initialisation."""
    from convscope.models import create_model

    fresh = create_model(source.name, num_classes=num_classes, in_chans=in_chans, **source.kwargs)
    with torch.no_grad():
        for stage in which:
            for path in stage.paths:
                model.get_submodule(path).load_state_dict(fresh.get_submodule(path).state_dict())


def _check_target(plan_model: nn.Module, source: Source, dataset: Any) -> None:
    from convscope.train.api import check_fit

    try:
        check_fit(plan_model, dataset)
    except ValueError as exc:
        c, h, w = (int(v) for v in dataset.train.images.shape[1:])
        why = str(exc).split(". Pick a model")[0]  # train's advice names flags finetune does not have
        raise ValueError(f"the source {source.describe()} does not fit {dataset.name} ({c}x{h}x{w} images, "
                         f"{len(dataset.classes)} classes): {why}. Resize the data to the source's input with "
                         f"--image-size {source.input_size[-1]}, or fine-tune a source built for this size") from None


def prepare(source: Source, dataset: Any, *, freeze: int | str | None = None, reinit: int = 0,
            keep_head: bool = False, seed: int = 0) -> Plan:
    """The fine-tuning model for `dataset` (a convscope.data Dataset); see the module docstring."""
    model = copy.deepcopy(source.model).train()
    n_freeze, n_reinit = _counts(source, stages(model), freeze, reinit)
    c = int(dataset.train.images.shape[1])
    num_classes = len(dataset.classes)
    adapted = None
    if c != source.input_size[0]:
        adapt_input_channels(model, c)
        was = source.input_size[0]
        how = "filters summed over the input channels" if c == 1 else f"filters repeated and scaled by {was}/{c}"
        adapted = f"{was}->{c}: {how}"
    torch.manual_seed(seed)  # the new weights depend on the seed only
    body = stages(model)
    if n_reinit:
        _reinitialise(model, source, body[len(body) - n_reinit:], c, num_classes)
    if keep_head:
        if len(source.classes) != num_classes:
            raise ValueError(f"--keep-head needs the same classes, but the source {source.describe()} has "
                             f"{len(source.classes)} classes and {dataset.name} has {num_classes}; drop --keep-head "
                             f"to train a new head")
    else:
        model.reset_classifier(num_classes)
    body = stages(model)
    plan = Plan(model, source, body, head(model), frozen=body[:n_freeze],
                reinit=body[len(body) - n_reinit:] if n_reinit else [], adapted=adapted)
    _check_target(model, source, dataset)
    return plan


def param_groups(plan: Plan, trainable: list[Stage], *, lr: float, body_lr_mult: float,
                 weight_decay: float) -> list[dict]:
    """Discriminative groups (see the module docstring); biases and norm scales without decay."""
    total, new = len(plan.stages), {s.name for s in plan.reinit}
    names = {s.name for s in trainable}
    index = {s.name: i for i, s in enumerate(plan.stages)}
    buckets: dict[tuple[str, float, bool], list[nn.Parameter]] = {}
    for key, p in plan.model.named_parameters():
        owner = stage_of(key, plan.stages)  # None: the head, or anything outside the stages
        if owner is not None and owner not in names:
            continue
        stage = owner or "head"
        factor = 1.0 if owner is None or stage in new else body_lr_mult ** ((total - index[owner]) / total)
        buckets.setdefault((stage, factor, p.ndim > 1), []).append(p)
    return [{"params": ps, "lr": lr * f, "weight_decay": weight_decay if decay else 0.0, "name": stage}
            for (stage, f, decay), ps in buckets.items()]


def _set_trainable(plan: Plan, trainable: list[Stage]) -> list[nn.Module]:
    """requires_grad per stage; returns the modules to keep in eval mode (the frozen stages)."""
    names = {s.name for s in trainable}
    frozen: list[nn.Module] = []
    for s in plan.stages:
        on = s.name in names
        for p in s.parameters():
            p.requires_grad_(on)
        if not on:
            frozen.extend(s.modules)
    return frozen


def _phase(plan: Plan, dataset: Any, out: Path, trainable: list[Stage], *, epochs: int, lr: float,
           body_lr_mult: float, run_config: dict, progress: bool, runtime: Any, history: list[dict] = (),
           phase: str | None = None, on_checkpoint: Any = None, title: str | None = None, **cfg: Any) -> dict:
    from convscope.train import fit, make_config

    config = make_config(None, epochs=epochs, lr=lr, **cfg)
    frozen = _set_trainable(plan, trainable)
    groups = param_groups(plan, trainable, lr=lr, body_lr_mult=body_lr_mult, weight_decay=config.weight_decay)
    return fit(plan.model, dataset, config, out, run_config=run_config, param_groups=groups,
               frozen_modules=frozen, progress=progress, runtime=runtime, history=history, phase=phase,
               on_checkpoint=on_checkpoint, title=title)


def fit_plan(plan: Plan, dataset: Any, out: str | Path, *, epochs: int = 3, freeze_epochs: int = 1,
              lr: float = 0.05, body_lr_mult: float = 0.1, run_config: dict | None = None,
              progress: bool = True, runtime: Any = None, on_checkpoint: Any = None,
              **cfg: Any) -> dict[str, Any]:
    """Train `plan.model` on `dataset` into the run folder `out` (the two phases above).

    `cfg` are TrainConfig fields (batch_size, optimizer, schedule, seed, weight_decay, augment, ...).
    Returns fit's result: {"run", "history", "epochs", "final"}, history and epochs over both phases.
    on_checkpoint(): called once the run in `out` has its first checkpoint (see `fit`).
    """
    out = Path(out)
    if not 0 < body_lr_mult <= 1:
        raise ValueError(f"--body-lr-mult {body_lr_mult} is not valid: use a number in (0, 1] "
                         f"(the first stage's learning rate as a fraction of the head's)")
    if freeze_epochs < 0:
        raise ValueError(f"--freeze-epochs {freeze_epochs} is not valid: use 0 or more")
    info = dict(plan.summary(), source=plan.source.origin, source_description=plan.source.describe(),
                source_preprocessing=plan.source.preprocessing, freeze_epochs=freeze_epochs,
                body_lr_mult=body_lr_mult, lr=lr)
    base = dict(run_config or {})
    new, frozen = plan.reinit, {s.name for s in plan.frozen}
    unfrozen = [s for s in plan.stages if s.name not in frozen]
    kw = dict(run_config=base, progress=progress, runtime=runtime, **cfg)
    if len(plan.frozen) + len(plan.reinit) == len(plan.stages) or freeze_epochs == 0:
        # one phase: nothing pretrained would be unfrozen later, or no head-only warm-up asked for
        kw["run_config"] = dict(base, finetune=dict(info, phases=[{"trained": plan.names(unfrozen), "epochs": epochs}]))
        return _phase(plan, dataset, out, unfrozen, epochs=epochs, lr=lr, body_lr_mult=body_lr_mult,
                      on_checkpoint=on_checkpoint, **kw)
    try:  # phase 1 checkpoints into a folder of its own: a crash in it leaves `out` without a run
        first = _phase(plan, dataset, out / PHASE1, list(new), epochs=freeze_epochs, lr=lr, body_lr_mult=1.0,
                       phase="head", **kw)
        phases = [{"trained": ["head", *plan.names(new)], "epochs": freeze_epochs, "lr": lr,
                   "history": first["history"]},
                  {"trained": plan.names(unfrozen), "epochs": epochs, "lr": lr / 2}]
        kw["run_config"] = dict(base, finetune=dict(info, phases=phases))
        second = _phase(plan, dataset, out, unfrozen, epochs=epochs, lr=lr / 2, body_lr_mult=body_lr_mult,
                        history=first["history"], phase="all", on_checkpoint=on_checkpoint,
                        title=f"{out.name} (fine-tune: head, then all)", **kw)
    finally:
        shutil.rmtree(out / PHASE1, ignore_errors=True)
    return dict(second, epochs=len(second["history"]))


def with_source_normalization(dataset: Any, source: Source) -> Any:
    """The dataset normalised as the source was trained (when the channels agree), else as is."""
    norm = source.normalization
    if not norm or len(norm.get("mean", ())) != int(dataset.train.images.shape[1]):
        return dataset
    return dataclasses.replace(dataset, mean=tuple(norm["mean"]), std=tuple(norm["std"]))
