"""Progress to stderr: a tqdm bar (images/s and ETA) on a terminal, and one
line per epoch always (with images/s and the run's ETA), so logs keep them too."""
from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    def __init__(self, epochs: int, steps: int, batch_size: int, *, enabled: bool = True) -> None:
        self.epochs, self.steps, self.batch = epochs, steps, batch_size
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar = None
        self.epoch_times: list[float] = []

    def start_epoch(self, epoch: int, step: int = 0) -> None:
        self.epoch, self.t0 = epoch, time.perf_counter()
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.steps * self.batch, initial=step * self.batch, unit="img",
                            unit_scale=True, desc=f"epoch {epoch + 1}/{self.epochs}", file=sys.stderr,
                            leave=False, dynamic_ncols=True)

    def update(self, steps: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(steps * self.batch)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def end_epoch(self, row: dict) -> None:
        self.close()
        self.epoch_times.append(row["seconds"])
        if not self.enabled:
            return
        left = self.epochs - row["epoch"]
        eta = sum(self.epoch_times) / len(self.epoch_times) * left
        val = ("no validation split (every image trains)" if row["val_top1"] is None else
               f"val_loss {row['val_loss']:.4f}  val_top1 {100 * row['val_top1']:.2f}%  "
               f"val_top5 {100 * row['val_top5']:.2f}%")
        print(f"epoch {row['epoch']}/{self.epochs}  train_loss {row['train_loss']:.4f}  {val}  lr {row['lr']:.3g}  "
              f"{row['images_per_second']:.0f} img/s  {row['seconds']:.1f}s  ETA {_clock(eta)}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
