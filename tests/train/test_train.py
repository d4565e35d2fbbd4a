"""train/fit/evaluate on the synthetic set: the run folder, determinism, resume, errors."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from convscope.models import create_model
from convscope.train import TrainingDiverged, evaluate, fit, make_config, train
from convscope.train.checkpoint import load

FAST = dict(epochs=2, batch_size=64, lr=0.05, progress=False)


def _weights(run):
    return load_file(str(run / "model.safetensors"))


def test_train_writes_a_complete_run_that_evaluates_like_plain_torch(tmp_path, synthetic):
    run = train(model="lenet5", data="synthetic", out=tmp_path / "run", **FAST)
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "curves.png", "metrics.jsonl",
                                                    "model.safetensors", "state"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "seconds"} <= rows[0].keys()
    assert rows[-1]["val_top1"] > 0.8 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["name"] == "lenet5" and cfg["dataset"] == "synthetic" and len(cfg["classes"]) == 10
    assert cfg["normalization"]["mean"] == list(synthetic.mean) and cfg["preprocessing"]["kind"] == "resize"
    assert cfg["recipe"]["epochs"] == 2 and cfg["seed"] == 0 and "torch" in cfg["versions"]
    # oracle: the reloaded model applied by hand with plain torch
    model, _ = load(run)
    with torch.no_grad():
        logits = model(synthetic.normalize(synthetic.test.images))
    expect_top1 = (logits.argmax(1) == synthetic.test.labels).float().mean().item()
    res = evaluate(run, "synthetic")
    assert res["top1"] == pytest.approx(expect_top1) and res["n"] == len(synthetic.test)
    assert res["top5"] >= res["top1"] and len(res["confusion"]) == 10
    assert sum(map(sum, res["confusion"])) == res["n"]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    kw = dict(model="lenet5", data="synthetic", epochs=1, batch_size=64, lr=0.05, progress=False)
    a = _weights(train(out=tmp_path / "a", **kw))
    b = _weights(train(out=tmp_path / "b", **kw))
    c = _weights(train(out=tmp_path / "c", seed=1, **kw))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def _sigint_at(model: nn.Module, call: int) -> None:
    """Send this process a real SIGINT (Ctrl-C) during the `call`-th training forward pass."""
    import os
    import signal

    count = {"n": 0}

    def hook(module, args, output):
        if module.training:
            count["n"] += 1
            if count["n"] == call:
                os.kill(os.getpid(), signal.SIGINT)

    model.register_forward_hook(hook)


def test_ctrl_c_saves_mid_epoch_and_resume_ends_with_the_same_weights(tmp_path, synthetic):
    from convscope.train import Interrupted

    cfg = make_config(epochs=2, batch_size=64, lr=0.05)

    def net():
        torch.manual_seed(0)
        return create_model("lenet5", dropout=0.3)  # dropout: the RNG state must come back too

    ref = fit(net(), synthetic, cfg, tmp_path / "ref", progress=False)["history"]
    model = net()
    _sigint_at(model, call=45)  # epoch 2 (30 steps an epoch), step 15
    with pytest.raises(Interrupted, match=r"epoch 2, step 15 of 30.*--resume"):
        fit(model, synthetic, cfg, tmp_path / "cut", progress=False)
    res = fit(net(), synthetic, cfg, tmp_path / "cut", resume=True, progress=False)
    assert res["epochs"] == 2 and len(res["history"]) == 2
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert res["history"][-1]["val_top1"] == ref[-1]["val_top1"]


def test_ctrl_c_in_the_first_epoch_resumes(tmp_path):
    from convscope.runs import RunDir
    from convscope.train import Interrupted

    torch.manual_seed(0)
    model = create_model("lenet5")
    _sigint_at(model, call=3)
    out = tmp_path / "cut"
    with pytest.raises(Interrupted, match="Resume with: convscope train --out .* --resume") as info:
        train(out=out, model=model, data="synthetic", epochs=1, batch_size=64, lr=0.05, progress=False)
    assert "epoch 1, step 3" in info.value.message
    train(out=out, resume=True, progress=False)  # no "holds no run": the config was saved with the state
    assert [r["epoch"] for r in RunDir(out).read_history()] == [1]
    RunDir(out).load()


def test_nan_loss_stops_with_epoch_step_and_lr(tmp_path, synthetic):
    model = create_model("lenet5")
    count = {"n": 0}

    def poison(module, args, output):
        if module.training:
            count["n"] += 1
            if count["n"] == 7:
                return output * float("nan")

    model.register_forward_hook(poison)
    with pytest.raises(TrainingDiverged, match=r"nan at epoch 1, step 7 of 30 \(lr [0-9.e-]+\)"):
        fit(model, synthetic, make_config(epochs=1, batch_size=64, lr=0.05), tmp_path / "nan", progress=False)
    assert not (tmp_path / "nan" / "model.safetensors").exists()


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="lenet_5"), "unknown model 'lenet_5'; did you mean lenet5"),
    (dict(data="mnsit"), "unknown dataset 'mnsit'"),
    (dict(model_kwargs={"input_size": 12}), r"model lenet5 does not fit synthetic's images of size \(1, 28, 28\)"),
    (dict(recipe="mnist-fastest"), "unknown recipe 'mnist-fastest'; did you mean mnist-fast"),
    (dict(epochs=0), "epochs must be a whole number from 1 to 100,000, got 0"),  # limits.LIMITS
    (dict(warmpu=0.1), "unknown training setting 'warmpu' .did you mean warmup"),
])
def test_bad_requests_fail_before_training(tmp_path, kwargs, message):
    args = dict(model="lenet5", data="synthetic", **FAST)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        train(out=tmp_path / "run", **args)
    assert not (tmp_path / "run").exists()


def test_unwritable_out_and_existing_run_are_reported(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="cannot write the run to --out"):
        train(model="lenet5", data="synthetic", out=tmp_path / "file" / "run", **FAST)
    run = train(model="lenet5", data="synthetic", out=tmp_path / "run", epochs=1, progress=False)
    with pytest.raises(ValueError, match="already holds a run; continue it with --resume"):
        train(model="lenet5", data="synthetic", out=run, epochs=1, progress=False)
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(out=tmp_path / "nothing", resume=True, progress=False)


def test_resume_of_a_finished_run_can_extend_it(tmp_path):
    run = train(model="lenet5", data="synthetic", out=tmp_path / "run", epochs=1, progress=False)
    train(out=run, resume=True, epochs=2, progress=False)
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]


class _TinyBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))  # (N, 4, 26, 26)
        return self.head(x.mean(dim=(2, 3)))


def test_frozen_modules_stay_in_eval_and_param_filter_trains_only_what_it_accepts(tmp_path, synthetic):
    model = _TinyBN()
    model.conv.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    fit(model, synthetic, make_config(epochs=2, batch_size=64, lr=0.1), tmp_path / "ft", progress=False,
        frozen_modules=[model.bn], param_filter=lambda name, p: name.startswith("head"),
        before_epoch=lambda m, epoch: seen.append((epoch, m.bn.training)))
    after = model.state_dict()
    assert seen == [(0, False), (1, False)]
    for k in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["head.weight"], after["head.weight"])


class _WithAux(nn.Module):
    """GoogLeNet's pattern: (logits, aux) in train mode, logits in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU())
        self.main, self.aux = nn.Linear(32, 10), nn.Linear(32, 10)

    def forward(self, x):
        h = self.body(x)
        return (self.main(h), self.aux(h)) if self.training else self.main(h)


def test_auxiliary_heads_add_three_tenths_of_their_loss(tmp_path, synthetic):
    from convscope.train.batches import loss_with_aux

    main, aux, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    expect = nn.functional.cross_entropy(main, y) + 0.3 * nn.functional.cross_entropy(aux, y)
    assert loss_with_aux((main, aux), y, 0.0).item() == pytest.approx(expect.item())
    res = fit(_WithAux(), synthetic, make_config(epochs=1, batch_size=64, lr=0.05), tmp_path / "aux",
              progress=False)
    assert res["final"]["val_top1"] > 0.3


def test_progress_lines_keep_rate_and_eta_and_end_with_one_result_line(tmp_path, capsys):
    train(model="lenet5", data="synthetic", out=tmp_path / "run", epochs=2, batch_size=64, lr=0.05)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and all("img/s" in line and "ETA" in line for line in lines)
    assert lines[0].startswith("epoch 1/2  train_loss")
    out = captured.out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("done: 2 epochs in") and str(tmp_path / "run") in out[0]


def test_overwrite_that_fails_before_its_first_checkpoint_puts_the_old_run_back(tmp_path):
    run = train(model="lenet5", data="synthetic", out=tmp_path / "run", epochs=1, progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    model = create_model("lenet5")

    def crash(module, args, output):
        if module.training:
            raise RuntimeError("power cut")

    model.register_forward_hook(crash)
    with pytest.raises(RuntimeError, match="power cut"):
        train(model=model, data="synthetic", out=run, epochs=1, progress=False, overwrite=True)
    # the old run is back, whole: no half-new run for a mistaken --resume to pick up
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert (run / "state" / "state.pt").is_file() and not list(run.glob(".previous-*"))


def test_a_run_of_any_shape_reloads_with_its_class_and_channel_counts(tmp_path):
    """config.json keeps num_classes and in_chans, so load() rebuilds a 3-class RGB network."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(12):
            px = rng.integers(0, 80, (28, 28, 3), dtype=np.uint8)
            px[..., c] += 150
            Image.fromarray(px).save(tmp_path / "imgs" / name / f"{i}.png")
    run = train(model="lenet5", data=f"folder:{tmp_path / 'imgs'}", image_size=28, out=tmp_path / "run",
                epochs=1, batch_size=8, lr=0.05, progress=False)
    kwargs = json.loads((run / "config.json").read_text())["model"]["kwargs"]
    assert kwargs["num_classes"] == 3 and kwargs["in_chans"] == 3
    model, _ = load(run)
    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 3)
