"""Weight-decay groups and schedules against torch's own schedulers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.train.optim import build_optimizer, build_schedule, param_groups


def _opt(lr=0.1):
    p = nn.Parameter(torch.zeros(2))
    return torch.optim.SGD([p], lr=lr, momentum=0.9)


def _ours(name, epochs, steps, **kw):
    opt = _opt()
    sched = build_schedule(name, opt, epochs=epochs, steps_per_epoch=steps, **kw)
    out = []
    for e in range(epochs):
        for s in range(steps):
            sched.step(e, s)
            out.append(opt.param_groups[0]["lr"])
    return out


def _torch_steps(make, total):
    opt = _opt()
    sched = make(opt)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_no_weight_decay_on_bias_and_batchnorm():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = param_groups(model, 5e-4)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model[0].weight), id(model[3].weight)}
    assert len(groups[1]["params"]) == 4  # conv bias, bn weight, bn bias, linear bias


def test_param_filter_and_all_frozen():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    groups = param_groups(model, 0.0, param_filter=lambda name, p: name.startswith("1."))
    assert sum(len(g["params"]) for g in groups) == 2
    with pytest.raises(ValueError, match="frozen"):
        build_optimizer(param_groups(model, 0.0, param_filter=lambda n, p: False), name="sgd", lr=0.1)


def test_onecycle_matches_torch():
    ours = _ours("onecycle", 3, 7, warmup=0.3)
    ref = _torch_steps(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.1, total_steps=21, pct_start=0.3, cycle_momentum=False), 21)
    assert ours == pytest.approx(ref, rel=1e-6)


def test_cosine_with_warmup_matches_torch():
    ours = _ours("cosine", 4, 5, warmup_epochs=1)
    ref = _torch_steps(lambda o: torch.optim.lr_scheduler.SequentialLR(o, [
        torch.optim.lr_scheduler.LinearLR(o, start_factor=1 / 5, total_iters=4),
        torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=15)], milestones=[5]), 20)
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-12)


def test_step_matches_torch():
    ours = _ours("step", 7, 2, step_size=3, gamma=0.5)[::2]
    opt = _opt()
    ref_s = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    ref = []
    for _ in range(7):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        ref_s.step()
    assert ours == pytest.approx(ref)


def test_plateau_matches_torch():
    accs = [0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7]
    opt = _opt()
    ours = build_schedule("plateau", opt, epochs=10, steps_per_epoch=1, patience=2)
    ref_opt = _opt()
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, mode="max", factor=0.1, patience=2,
                                                     threshold=1e-4, threshold_mode="abs")
    for e, acc in enumerate(accs):
        ours.step(e, 0)
        assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"])
        ours.epoch_end(acc)
        ref.step(acc)


def test_schedule_keeps_each_groups_own_lr():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = build_optimizer([{"params": [a], "lr": 0.01}, {"params": [b]}], name="sgd", lr=0.1)
    sched = build_schedule("step", opt, epochs=4, steps_per_epoch=1, step_size=1, gamma=0.5)
    sched.step(2, 0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0025, 0.025])
