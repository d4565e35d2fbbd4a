"""`fit`: the training loop under `train()`, reusable by fine-tuning.

One epoch: a seeded permutation of the in-memory training split, global
batches of `batch_size` (each DDP rank takes its contiguous slice), batched
augmentation, one optimizer step per batch, the lr set per step by the
schedule, then the validation split scored with BN in eval mode. The host
syncs only every `log_every` steps (loss check and progress) and at epoch end.

After each finished epoch rank 0 writes state/state.pt (for --resume), then
model.safetensors, config.json, metrics.jsonl and curves.png, each atomically.
A SIGKILL therefore loses at most the epoch in progress; Ctrl-C saves the
exact position inside the epoch as well.
"""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from convscope.train import augment as aug
from convscope.train import optim, state as st
from convscope.train.batches import Batches, loss_with_aux, score
from convscope.runs import RunDir
from convscope.train.config import TrainConfig
from convscope.train.progress import Progress
from convscope.train.runtime import Runtime, all_sum, setup


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint was saved; `.run` is the folder."""

    def __init__(self, run: Path, message: str) -> None:
        super().__init__(message)
        self.run, self.message = run, message


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Shuffling and augmentation of epoch `epoch` depend on (seed, epoch) only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def check_schedule(cfg: TrainConfig, dataset: Any) -> None:
    """Nothing may be picked by a validation split that is not there."""
    if cfg.schedule == "plateau" and not len(dataset.val.labels):
        raise ValueError("--schedule plateau lowers the lr when val top-1 stops improving, but this run "
                         "has no validation split (--val-fraction 0); use onecycle, cosine or step")


def fit(model: nn.Module, dataset: Any, config: TrainConfig, out: str | Path, *,
        run_config: dict[str, Any] | None = None,
        param_groups: Iterable[dict] | None = None,
        param_filter: Callable[[str, nn.Parameter], bool] | None = None,
        frozen_modules: Iterable[nn.Module] = (),
        before_epoch: Callable[[nn.Module, int], None] | None = None,
        resume: bool = False, progress: bool = True,
        runtime: Runtime | None = None, history: Iterable[dict] = (), phase: str | None = None,
        on_checkpoint: Callable[[], None] | None = None, title: str | None = None,
        callbacks: Iterable[Any] = ()) -> dict[str, Any]:
    """Train `model` on `dataset` (a convscope.data Dataset) and write the run to `out`.

    param_groups: torch-style groups (each may carry its own "lr" and
        "weight_decay"); the schedule scales each group's own lr. Default: all
        trainable parameters, no weight decay on biases and norm layers.
    param_filter(name, param) -> bool: train only the parameters it accepts.
    frozen_modules: kept in eval mode while training (frozen BN statistics).
    before_epoch(model, epoch): called after model.train() each epoch.
    history: the rows of an earlier phase written into the same run (two-phase fine-tuning):
        metrics.jsonl and curves.png show them first, and this phase's epochs number on after them.
    phase: a name stored in each new row's "phase" (e.g. "head", "all").
    on_checkpoint(): called once, after the first checkpoint (state/state.pt) is written.
    title: the title of curves.png (default: the run folder's name).
    callbacks: objects with any of `on_start(fit)` (once, at the position training starts from,
        a resumed one included), `after_step(fit, loss)` (after each optimizer step, before the
        step counter moves on; `loss` is the step's detached loss) and `after_epoch(fit, row)`
        (after each epoch's row is written). `fit` gives `module`, `opt`, `dataset`,
        `train_data`, `val_data`, `rt` (the device), `cfg`, `steps`, `epoch`, `step`, `out` and
        `history`; a callback reads them (the Train tab's live view: web/train_worker.py).
    Returns {"run", "history", "epochs", "final"}: history over every phase, epochs = this phase's.
    """
    return _Fit(model, dataset, config, Path(out), run_config=run_config, param_groups=param_groups,
                param_filter=param_filter, frozen_modules=list(frozen_modules),
                before_epoch=before_epoch, progress=progress, rt=runtime or setup(),
                history=list(history), phase=phase, on_checkpoint=on_checkpoint, title=title,
                callbacks=list(callbacks)).run(resume)


class _Fit:
    def __init__(self, model, dataset, cfg: TrainConfig, out: Path, *, run_config, param_groups,
                 param_filter, frozen_modules, before_epoch, progress, rt: Runtime, history: list[dict],
                 phase: str | None, on_checkpoint: Callable[[], None] | None, title: str | None,
                 callbacks: list[Any] = ()) -> None:
        self.cfg, self.out, self.rt, self.dataset = cfg, out, rt, dataset
        self.run_dir = RunDir(out)
        self.prior, self.phase, self.on_checkpoint = history, phase, on_checkpoint
        self.title = title or str(out.name)
        self.callbacks = list(callbacks)
        self.module = model.to(rt.device)
        self.model = self.module
        if rt.world > 1:
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        kind = cfg.augment if cfg.augment != "auto" else getattr(dataset, "kind", "none")
        spec = aug.spec_for(kind, image_size=dataset.train.images.shape[-1], erase_p=cfg.erase_p,
                            options=cfg.augment_options)
        self.train_data = Batches(dataset.train, dataset.mean, dataset.std, rt.device, spec)
        self.val_data = Batches(dataset.val, dataset.mean, dataset.std, rt.device)
        check_schedule(cfg, dataset)
        self.run_config = run_config or {}
        self.frozen, self.before_epoch, self.show = frozen_modules, before_epoch, progress and rt.main
        n, b = len(self.train_data), cfg.batch_size
        if b % rt.world:
            raise ValueError(f"--batch-size {b} must split evenly over {rt.world} processes")
        self.steps = max(1, n // b)  # the last incomplete batch is dropped (every step a full batch)
        groups = list(param_groups) if param_groups is not None else optim.param_groups(
            self.module, cfg.weight_decay, decay_norm_and_bias=cfg.decay_norm_and_bias, param_filter=param_filter)
        self.opt = optim.build_optimizer(groups, name=cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum,
                                         nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
        self.sched = optim.build_schedule(cfg.schedule, self.opt, epochs=cfg.epochs, steps_per_epoch=self.steps,
                                          step_size=cfg.step_size, gamma=cfg.gamma, patience=cfg.patience,
                                          warmup=cfg.warmup, warmup_epochs=cfg.warmup_epochs)
        self.history: list[dict] = list(history)
        self.plotted = time.perf_counter()
        self.in_step = False
        self.gen: torch.Generator | None = None
        self.epoch, self.step, self.gen_state, self.partial = 0, 0, None, [0.0, 0.0]

    # ---- state -------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "model": self.module.state_dict(),
                "optimizer": self.opt.state_dict(), "schedule": self.sched.state_dict(),
                "rng": st.rng_state(), "generator": self.gen_state, "partial": list(self.partial),
                "history": self.history, "config": self.cfg.to_dict()}

    def _restore(self) -> None:
        s = st.load_state(self.out)
        self.module.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        self.sched.load_state_dict(s["schedule"])
        st.set_rng_state(s["rng"])
        self.epoch, self.step, self.gen_state = int(s["epoch"]), int(s["step"]), s.get("generator")
        self.partial, self.history = list(s.get("partial", [0.0, 0.0])), list(s["history"])

    def _checkpointed(self) -> None:
        if self.on_checkpoint is not None:
            self.on_checkpoint()
            self.on_checkpoint = None

    def _config(self, **extra: Any) -> dict[str, Any]:
        return dict(self.run_config, recipe=self.cfg.to_dict(), seed=self.cfg.seed, **extra)

    def _write_epoch(self) -> None:
        """State first (resume needs only it), then the files people read."""
        st.save_state(self.out, self._state())
        self._checkpointed()
        run = self.run_dir
        run.save(self.module, self._config(epochs_done=self.epoch, result=self.history[-1]))
        run.write_history(self.history)
        # matplotlib costs ~0.5 s a figure: redraw at most every 15 s, and always at the end
        if self.epoch >= self.cfg.epochs or time.perf_counter() - self.plotted > 15:
            from convscope.train.plots import plot_curves

            plot_curves(self.history, run.curves_path, title=self.title)
            self.plotted = time.perf_counter()

    # ---- the loop ----------------------------------------------------------
    def _on_sigint(self, signum, frame) -> None:
        """First Ctrl-C: finish the step in progress, then save; a second one stops at once."""
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True

    def _notify(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    def run(self, resume: bool) -> dict[str, Any]:
        if resume:
            self._restore()
        self._notify("on_start")
        bar = Progress(self.cfg.epochs, self.steps, self.cfg.batch_size, enabled=self.show)
        self.stop_requested = False
        # Under DDP the ranks could stop at different steps and hang in the next all-reduce,
        # so there Ctrl-C stops at once and the last finished epoch is the checkpoint.
        main_thread = threading.current_thread() is threading.main_thread() and self.rt.world == 1
        old = signal.signal(signal.SIGINT, self._on_sigint) if main_thread else None
        try:
            while self.epoch < self.cfg.epochs:
                self._train_epoch(bar)
                self._end_epoch(bar)
                if self.stop_requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()
            raise self._on_interrupt() from None
        finally:
            bar.close()
            if main_thread:
                signal.signal(signal.SIGINT, old)
        return {"run": self.out, "history": self.history, "epochs": self.epoch,
                "final": self.history[-1] if self.history else None}

    def _train_epoch(self, bar: Progress) -> None:
        cfg, rt = self.cfg, self.rt
        gen = self.gen = epoch_generator(cfg.seed, self.epoch)
        perm = torch.randperm(len(self.train_data), generator=gen)
        if self.step and self.gen_state is not None:
            gen.set_state(self.gen_state)  # Ctrl-C resume: continue inside the epoch
        self.model.train()
        for m in self.frozen:
            m.eval()
        if self.before_epoch is not None:
            self.before_epoch(self.module, self.epoch)
        bar.start_epoch(self.epoch, self.step)
        self.t0 = time.perf_counter()
        pending: list[torch.Tensor] = []
        while self.step < self.steps:
            self.in_step = True
            loss = self._train_step(perm, gen)
            pending.append(loss)
            self._notify("after_step", loss)
            self.step += 1
            self.in_step = False
            if self.stop_requested:
                raise KeyboardInterrupt
            if len(pending) >= cfg.log_every or self.step == self.steps:
                self._check(pending, bar)
                pending = []

    def _train_step(self, perm: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        cfg, rt, b = self.cfg, self.rt, self.cfg.batch_size
        idx = perm[self.step * b:(self.step + 1) * b]
        prm = aug.sample_params(self.train_data.spec, len(idx), *self.train_data.shape[1:], gen)
        share = len(idx) // rt.world
        lo, hi = rt.rank * share, (rt.rank + 1) * share
        x, y = self.train_data.get(idx[lo:hi].to(rt.device), aug.slice_params(prm, lo, hi))
        self.sched.step(self.epoch, self.step)
        with torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=rt.amp):
            loss = loss_with_aux(self.model(x), y, cfg.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def _check(self, pending: list[torch.Tensor], bar: Progress) -> None:
        losses = torch.stack(pending).float()
        total = losses.sum()
        if not torch.isfinite(total).item():
            bad = int((~torch.isfinite(losses)).nonzero()[0]) + self.step - len(pending)
            raise TrainingDiverged(
                f"the loss became {losses[bad - self.step + len(pending)].item()} at epoch {self.epoch + 1}, "
                f"step {bad + 1} of {self.steps} (lr {self.opt.param_groups[0]['lr']:.4g}); lower --lr "
                f"(or use --schedule onecycle/cosine with warm-up). The last finished epoch is kept in {self.out}")
        self.partial[0] += float(total)
        self.partial[1] += len(pending)
        bar.update(len(pending), self.partial[0] / self.partial[1])

    def _end_epoch(self, bar: Progress) -> None:
        rt = self.rt
        seconds = time.perf_counter() - self.t0
        train_loss = all_sum(torch.tensor([self.partial[0] / max(self.partial[1], 1)], dtype=torch.float64,
                                          device=rt.device), rt).item() / rt.world
        # no validation split (--val-fraction 0): the val keys stay in every row, as null
        val = (score(self.module, self.val_data, rt, batch_size=self.cfg.eval_batch_size) if len(self.val_data)
               else {"loss": None, "top1": None, "top5": None})
        if val["top1"] is not None:
            self.sched.epoch_end(val["top1"])
        self.epoch, self.step, self.gen_state, self.partial = self.epoch + 1, 0, None, [0.0, 0.0]
        row = {"epoch": len(self.prior) + self.epoch, "train_loss": train_loss, "val_loss": val["loss"],
               "val_top1": val["top1"],
               "val_top5": val["top5"], "lr": self.opt.param_groups[0]["lr"], "seconds": round(seconds, 3),
               "images_per_second": round(self.steps * min(self.cfg.batch_size, len(self.train_data))
                                            / max(seconds, 1e-9), 1)}  # a batch over the data set is the data set
        if self.phase is not None:
            row["phase"] = self.phase
        self.history.append(row)
        if rt.main:
            self._write_epoch()
        bar.end_epoch(row)
        self._notify("after_epoch", row)

    def _on_interrupt(self) -> Interrupted:
        hint = f"convscope train --out {self.out} --resume"
        state = self.run_dir.state_path
        if self.in_step:  # stopped inside an optimizer step: the weights may be half-updated
            if self.epoch == 0 and not state.is_file():
                return Interrupted(self.out, f"interrupted inside epoch 1, before any checkpoint: nothing was "
                                             f"saved in {self.out}; start the run again with the same command")
            return Interrupted(self.out, f"interrupted inside epoch {self.epoch + 1}; the checkpoint of the "
                                         f"last finished epoch ({self.epoch}) is kept in {state}. "
                                         f"Resume with: {hint}")
        if self.rt.main:
            self.gen_state = self.gen.get_state() if self.gen is not None else None
            st.save_state(self.out, self._state())
            self._checkpointed()
            if not self.run_dir.exists():  # before the first epoch ended: --resume needs the config too
                self.run_dir.write_config(self._config(epochs_done=self.epoch))
        where = f"epoch {self.epoch + 1}, step {self.step} of {self.steps}"
        return Interrupted(self.out, f"interrupted at {where}; checkpoint saved in {state}. "
                                     f"Resume with: {hint}")
