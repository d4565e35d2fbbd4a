"""The Train tab's training process: `python -m convscope.web.train_worker REQUEST_JSON [SERVER_PID]`.

REQUEST_JSON is a `TrainRequest.to_json()` the server checked already. It trains through
`convscope.train.api.train_request` (so the run folder is exactly the one `convscope train`
writes with the same seed) and prints one JSON event a line on stdout for the server to relay:

    {"type": "hello", "run", "classes", "strip": [[...28x28 uint8...]], "strip_labels", ...}
    {"type": "step", "epoch", "step", "steps", "loss", "lr", "images_per_second"}     <= every 0.25 s
    {"type": "probe", "train_loss", "train_top1", "val_loss", "val_top1",           <= about every 1 s
     "kernels": {"layer", "shape", "data"}, "strip": [{"label", "probability"}]}
    {"type": "epoch", ...metrics.jsonl row...}
    {"type": "done" | "stopped" | "error", "message"}

The probes run the model in eval mode under inference_mode on fixed images:
they change no weight, no batch-norm statistic and no random number, so the
numbers of the run do not depend on whether anyone watches. SIGINT (the Stop
button) is the loop's own Ctrl-C: it finishes the step, saves the exact
position, and `resume` continues from there. SIGUSR1 pauses it after the step in
progress and SIGUSR2 lets it go on (the process keeps running, so Stop and the watch on the
server below still work while it is paused). SIGTERM (the server stopping), or the server
process gone, is a Stop too, asked once (a SIGTERM after a Ctrl-C is not a second Ctrl-C), that
ends the process within STOP_DEADLINE seconds whatever happens: it never outlives the server.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

STEP_EVERY = 0.25      # seconds between step events
PROBE_EVERY = 1.0      # seconds between probes (longer if a probe is slow)
PROBE_IMAGES = 256     # train and val images scored by each probe
STRIP = 10             # test images whose predictions are shown (one per class where possible)
MAX_KERNELS = 64
STOP_DEADLINE = 2.5    # seconds from SIGTERM (or the server gone) to the process's end


def emit(event: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # the server is gone (its end of the pipe closed): stop
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (the rest is said to nobody)
        for stop in _WHEN_GONE:
            stop()


_WHEN_GONE: list = []  # main's Stopper: what a broken pipe to the server calls


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    return None


def strip_indices(labels: torch.Tensor, n: int = STRIP) -> list[int]:
    """The first test image of each class, then the next ones, up to n."""
    seen, out = set(), []
    for i, y in enumerate(labels.tolist()):
        if y not in seen:
            seen.add(y)
            out.append(i)
        if len(out) == n:
            return out
    rest = [i for i in range(len(labels)) if i not in out]
    return (out + rest)[:n]


def kernels(model: nn.Module) -> dict[str, Any] | None:
    found = first_conv(model)
    if found is None:
        return None
    name, conv = found
    w = conv.weight.detach()[:MAX_KERNELS, :3].float().cpu()          # (out, in<=3, kh, kw)
    return {"layer": name, "shape": list(w.shape), "data": [round(v, 4) for v in w.flatten().tolist()]}


class Watcher:
    """Emits events from inside the loop (`Watch` makes one when `fit` starts)."""

    def __init__(self, fit: Any) -> None:
        self.fit = fit
        ds = fit.dataset
        g = torch.Generator().manual_seed(0)
        self.train_idx = torch.randperm(len(fit.train_data), generator=g)[:PROBE_IMAGES]
        self.val_idx = torch.arange(min(PROBE_IMAGES, len(fit.val_data)))
        test = ds.test if len(ds.test) else ds.val
        self.strip = strip_indices(test.labels)
        from convscope.train.batches import Batches

        self.test_data = Batches(test, ds.mean, ds.std, fit.rt.device)
        self.classes = [str(c) for c in ds.classes]
        self.last_step = self.last_probe = 0.0
        self.probe_cost = 0.0
        self.losses: list[float] = []
        emit({"type": "hello", "run": str(fit.out), "classes": self.classes, "epochs": fit.cfg.epochs,
              "steps": fit.steps, "epoch": fit.epoch, "step": fit.step,
              "strip": [test.images[i, 0].tolist() for i in self.strip],
              "strip_labels": [self.classes[int(test.labels[i])] for i in self.strip]})

    @torch.inference_mode()
    def _score(self, data: Any, idx: torch.Tensor) -> tuple[float, float]:
        from convscope.train.batches import main_logits

        x, y = data.get(idx.to(data.labels.device))
        logits = main_logits(self.fit.module(x)).float()
        return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()

    def after_step(self, loss: torch.Tensor) -> None:
        self.losses.append(float(loss))
        now = time.perf_counter()
        if now - self.last_step >= STEP_EVERY:
            self.last_step = now
            f = self.fit
            emit({"type": "step", "epoch": f.epoch, "step": f.step, "steps": f.steps,
                  "loss": sum(self.losses) / len(self.losses), "lr": f.opt.param_groups[0]["lr"]})
            self.losses = []
        if now - self.last_probe >= max(PROBE_EVERY, 5 * self.probe_cost):
            self.probe()

    def probe(self) -> None:
        t0 = time.perf_counter()
        module = self.fit.module
        was = module.training
        module.eval()
        try:
            tl, ta = self._score(self.fit.train_data, self.train_idx)
            vl, va = self._score(self.fit.val_data, self.val_idx) if len(self.val_idx) else (None, None)
            with torch.inference_mode():
                from convscope.train.batches import main_logits

                x, _ = self.test_data.get(torch.tensor(self.strip, device=self.test_data.labels.device))
                probs = main_logits(module(x)).float().softmax(1)
        finally:
            module.train(was)
        top = probs.max(1)
        emit({"type": "probe", "epoch": self.fit.epoch, "step": self.fit.step, "steps": self.fit.steps,
              "train_loss": tl, "train_top1": ta, "val_loss": vl, "val_top1": va, "kernels": kernels(module),
              "strip": [{"label": self.classes[int(i)], "probability": float(p)}
                        for p, i in zip(top.values.tolist(), top.indices.tolist())]})
        self.last_probe = time.perf_counter()
        self.probe_cost = self.last_probe - t0


class Watch:
    """The Train tab's view of a training run, as `fit` callbacks (train.loop.fit): a Watcher
    once training starts (at the resumed position too), one after every step, and each epoch's
    row and a probe at each epoch's end. `pace_s`: a sleep after each step (between steps, so
    watching slowly changes no number); while `paused` is set it holds still between steps
    (Stop still ends it: the loop's Ctrl-C handler sets fit.stop_requested)."""

    def __init__(self, pace_s: float = 0.0) -> None:
        self.pace_s = pace_s
        self.paused = threading.Event()
        self.fit: Any = None
        self.watcher: Watcher | None = None

    def on_start(self, fit: Any) -> None:
        self.fit = fit
        self.watcher = Watcher(fit)

    def after_step(self, fit: Any, loss: torch.Tensor) -> None:
        self.watcher.after_step(loss)
        if self.pace_s:
            time.sleep(self.pace_s)
        while self.paused.is_set() and not fit.stop_requested:
            time.sleep(0.05)  # a sleep, not Event.wait: the SIGINT handler runs between sleeps

    def after_epoch(self, fit: Any, row: dict) -> None:
        emit(dict(row, type="epoch"))
        self.watcher.probe()


class Stopper:
    """Stops the run as the Stop button does (the position is saved for resume), once, whoever
    asks (SIGTERM, the server gone, its pipe broken): asking again is not a second Ctrl-C. The
    process ends for good STOP_DEADLINE seconds later if the stop has not ended it."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.asked = False

    def __call__(self, *_: Any) -> None:
        if self.asked:
            return
        self.asked = True
        timer = threading.Timer(STOP_DEADLINE, os._exit, args=(1,))
        timer.daemon = True
        timer.start()
        if self.watch.fit is not None:
            self.watch.fit.stop_requested = True  # what the loop's own Ctrl-C handler sets
        else:
            os.kill(os.getpid(), signal.SIGINT)  # not training yet: stop where it is


def _watch_server(server_pid: int, stop: Stopper) -> None:
    """When the server process is gone (killed, crashed), nobody reads this run: stop."""
    def watch() -> None:
        while os.getppid() == server_pid:
            time.sleep(0.5)
        stop()

    threading.Thread(target=watch, name="convscope-watch-server", daemon=True).start()


def _signals(watch: Watch, stop: Stopper) -> None:
    signal.signal(signal.SIGUSR1, lambda *_: watch.paused.set())
    signal.signal(signal.SIGUSR2, lambda *_: watch.paused.clear())
    signal.signal(signal.SIGTERM, stop)
    _WHEN_GONE.append(stop)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    watch = Watch()
    stop = Stopper(watch)
    _signals(watch, stop)
    _watch_server(int(args[1]) if len(args) > 1 else os.getppid(), stop)
    from convscope.train import Interrupted
    from convscope.train.api import train_request
    from convscope.train.request import TrainRequest

    try:
        req = TrainRequest.parse(json.loads(args[0]))
        watch.pace_s = req.pace_ms / 1000
        run = train_request(req, progress=False, report=False, callbacks=[watch])
    except Interrupted as exc:
        emit({"type": "stopped", "message": exc.message, "run": str(exc.run)})
        return 0
    except KeyboardInterrupt:
        emit({"type": "stopped", "message": "stopped before the first step: nothing to resume"})
        return 0
    except Exception as exc:  # noqa: BLE001  (every failure reaches the page as one message)
        emit({"type": "error", "message": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__})
        return 1
    emit({"type": "done", "run": str(run), "message": f"finished: {run}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
