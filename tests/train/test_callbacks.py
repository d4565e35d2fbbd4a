"""`fit`'s callbacks: called where the docstring says, with what it says, and changing nothing."""
from __future__ import annotations

import json

import torch

from convscope.runs import RunDir
from convscope.train import train


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_start(self, fit) -> None:
        self.events.append(("start", fit.epoch, fit.step, fit.steps))

    def after_step(self, fit, loss) -> None:
        self.events.append(("step", fit.epoch, fit.step, float(loss)))

    def after_epoch(self, fit, row) -> None:
        self.events.append(("epoch", row["epoch"], fit.history[-1] is row))


def test_callbacks_see_every_step_and_epoch_and_change_no_weight(tmp_path, synthetic):
    rec = Recorder()
    kw = dict(model="lenet5", data=synthetic, epochs=2, batch_size=64, progress=False, seed=4, threads=1)
    with_cb = train(out=tmp_path / "a", callbacks=[rec], **kw)
    without = train(out=tmp_path / "b", **kw)
    steps = rec.events[0][3]
    assert [e[0] for e in rec.events].count("start") == 1
    assert rec.events[0] == ("start", 0, 0, steps)
    step_events = [e for e in rec.events if e[0] == "step"]
    assert [(e[1], e[2]) for e in step_events] == [(ep, s) for ep in range(2) for s in range(steps)]
    assert all(torch.isfinite(torch.tensor(e[3])) for e in step_events)
    assert [e for e in rec.events if e[0] == "epoch"] == [("epoch", 1, True), ("epoch", 2, True)]
    history = [json.loads(line) for line in (with_cb / "metrics.jsonl").read_text().splitlines()]
    # the mean of the steps' losses is the epoch's train loss
    first = [e[3] for e in step_events if e[1] == 0]
    assert abs(sum(first) / len(first) - history[0]["train_loss"]) < 1e-5
    a, b = RunDir(with_cb).read_weights(), RunDir(without).read_weights()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
