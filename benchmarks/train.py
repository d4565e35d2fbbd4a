"""Training benchmarks; prints one JSON object (results recorded in docs/benchmarks.md).

    python benchmarks/train.py                       # all four, full length
    python benchmarks/train.py --only overhead --only mnist
    python benchmarks/train.py --quick               # shorter runs, same questions

1. overhead  images/s of convscope's training step (fit) against a minimal
             hand-written PyTorch loop: same model, data, batch, threads, same
             process, runs interleaved A/B and the medians compared.
2. fashion   time until fashion-mnist *test* accuracy first reaches 92.0%:
             --recipe fashion-fast against the pytorch/examples MNIST recipe
             (its 2-conv net with dropout, Adadelta lr 1.0, StepLR gamma 0.7,
             batch 64, a per-sample DataLoader), same data, same session.
3. best      fashion-best: test accuracy and wall time (goal: 93.5% in 10 minutes).
4. mnist     mnist-fast on the 5,000-digit offline set: val accuracy and time.

Times count training only (the test split is scored between epochs, off the
clock, for both sides). The machine is shared: compare ratios, not absolutes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convscope.data import get_dataset
from convscope.data._base import Split
from convscope.models import create_model
from convscope.runs import RunDir
from convscope.train import RECIPES, fit, make_config, train
from convscope.train.runtime import choose_threads, setup


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="convscope-bench-"))


def _rt():
    """The thread count main() chose, for fit too (fit would otherwise pick its own)."""
    return setup("cpu", threads=torch.get_num_threads())


def _with_test_as_val(ds):
    """The full training set (train + val: 60,000 for fashion-mnist), and the test split as
    the val split that fit scores each epoch, to track test accuracy."""
    full = Split(torch.cat([ds.train.images, ds.val.images]), torch.cat([ds.train.labels, ds.val.labels]))
    return dataclasses.replace(ds, train=full, val=ds.test)


# ---- 1. overhead ------------------------------------------------------------------------
def _hand_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """The minimal loop: pre-normalised tensors, a permutation, slices, no host syncs."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    perm = torch.randperm(len(y))
    steps = len(y) // batch
    t0 = time.perf_counter()
    for i in range(steps):
        idx = perm[i * batch:(i + 1) * batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def bench_overhead(quick: bool) -> dict:
    ds = get_dataset("fashion-mnist")
    n, batch, reps = (6400 if quick else 19200), 128, (3 if quick else 5)
    small = dataclasses.replace(ds, train=Split(ds.train.images[:n], ds.train.labels[:n]),
                                val=Split(ds.val.images[:500], ds.val.labels[:500]))
    x, y = ds.normalize(small.train.images), small.train.labels
    cfg = make_config(epochs=1, batch_size=batch, lr=0.01, augment="none", schedule="constant")
    ours, hand = [], []
    for r in range(reps + 1):  # the first round warms up both and is dropped
        torch.manual_seed(r)
        out = fit(create_model("lenet5"), small, cfg, _tmp(), progress=False, runtime=_rt())
        torch.manual_seed(r)
        h = _hand_loop(create_model("lenet5"), x, y, batch)
        if r:
            ours.append(out["history"][-1]["images_per_second"])
            hand.append(h)
    o, h = statistics.median(ours), statistics.median(hand)
    return {"model": "lenet5", "data": f"fashion-mnist first {n}", "batch": batch,
            "threads": torch.get_num_threads(), "repeats": reps, "convscope_img_s": ours,
            "plain_loop_img_s": [round(v, 1) for v in hand], "ratio_of_medians": round(o / h, 3),
            "median_paired_ratio": round(statistics.median(a / b for a, b in zip(ours, hand)), 3)}


# ---- 2. time to 92% -----------------------------------------------------------------------
class ExamplesNet(nn.Module):
    """pytorch/examples mnist/main.py `Net`, verbatim in structure."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)   # (N, 64, 12, 12)
        x = F.relu(self.fc1(torch.flatten(self.dropout1(x), 1)))
        return F.log_softmax(self.fc2(self.dropout2(x)), dim=1)


class _PILDataset(torch.utils.data.Dataset):
    """Like torchvision's FashionMNIST: a PIL image per sample, ToTensor + Normalize."""

    def __init__(self, split: Split) -> None:
        from torchvision import transforms

        self.images, self.labels = split.images[:, 0].numpy(), split.labels.tolist()
        self.tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.tf(Image.fromarray(self.images[i], mode="L")), self.labels[i]


def _examples_recipe(ds, target: float, max_seconds: float, max_epochs: int = 14) -> dict:
    torch.manual_seed(1)  # the example's default --seed
    model = ExamplesNet()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    train_loader = torch.utils.data.DataLoader(_PILDataset(ds.train), batch_size=64, shuffle=True)
    test_loader = torch.utils.data.DataLoader(_PILDataset(ds.test), batch_size=1000)
    clock, curve = 0.0, []
    for epoch in range(1, max_epochs + 1):
        model.train()
        t0 = time.perf_counter()
        for x, y in train_loader:
            opt.zero_grad()
            F.nll_loss(model(x), y).backward()
            opt.step()
        sched.step()
        clock += time.perf_counter() - t0
        acc = _test_accuracy(model, test_loader)
        curve.append([epoch, round(acc, 4), round(clock, 1)])
        if acc >= target or clock > max_seconds:  # stop at the target, as the comparison needs
            break
    return {"curve": curve, **_times_to(curve, target)}


@torch.no_grad()
def _test_accuracy(model, loader) -> float:
    model.eval()
    right = sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    return right / len(loader.dataset)


def _recipe_curve(ds, recipe: str, target: float | None = None) -> dict:
    r = dict(RECIPES[recipe])
    torch.manual_seed(0)
    model = create_model(r["model"], num_classes=10, in_chans=1, **r.get("model_kwargs", {}))
    res = fit(model, _with_test_as_val(ds), make_config(recipe), _tmp(), progress=False, runtime=_rt())
    clock, curve = 0.0, []
    for h in res["history"]:
        clock += h["seconds"]
        curve.append([h["epoch"], round(h["val_top1"], 4), round(clock, 1)])
    return {"curve": curve, **_times_to(curve, target), "final_test_top1": curve[-1][1]}


def _times_to(curve: list, target: float | None) -> dict:
    """Training seconds until test top-1 first reached `target` (and 90%, for scale); None: never."""
    out = {}
    for name, t in (("seconds_to_target", target), ("seconds_to_90", 0.90)):
        hit = next((c for c in curve if t is not None and c[1] >= t), None)
        out[name] = hit[2] if hit else None
    return out


def bench_fashion(quick: bool) -> dict:
    ds = get_dataset("fashion-mnist")
    target = 0.92
    ours = _recipe_curve(ds, "fashion-fast", target)
    ref = _examples_recipe(_with_test_as_val(ds), target, max_seconds=300 if quick else 1800)
    a, b = ours["seconds_to_target"], ref["seconds_to_target"]
    a90, b90 = ours["seconds_to_90"], ref["seconds_to_90"]
    return {"target_test_top1": target, "convscope_fashion_fast": ours, "pytorch_examples": ref,
            "speedup": round(b / a, 2) if a and b else None,
            "speedup_to_90": round(b90 / a90, 2) if a90 and b90 else None,
            "note": "None = the target was not reached within the run (curve: epoch, test top-1, seconds)"}


# ---- 3. best in 10 minutes, 4. mnist-fast -------------------------------------------------------
def bench_best(quick: bool) -> dict:
    ds = get_dataset("fashion-mnist")
    t0 = time.perf_counter()
    res = _recipe_curve(ds, "fashion-best", 0.935)  # seconds_to_target: first epoch at 93.5%
    return {"recipe": "fashion-best", "model": RECIPES["fashion-best"]["model"], **res,
            "wall_seconds": round(time.perf_counter() - t0, 1)}


def bench_mnist(quick: bool) -> dict:
    t0 = time.perf_counter()
    run = train(recipe="mnist-fast", out=_tmp() / "run", progress=False, threads=torch.get_num_threads())
    wall = time.perf_counter() - t0
    rows = RunDir(run).read_history()
    clock, first = 0.0, None
    for r in rows:
        clock += r["seconds"]
        if first is None and r["val_top1"] >= 0.985:
            first = [r["epoch"], round(clock, 1)]
    return {"recipe": "mnist-fast", "final_val_top1": rows[-1]["val_top1"],
            "best_val_top1": max(r["val_top1"] for r in rows), "train_seconds": round(clock, 1),
            "wall_seconds_with_loading_and_writing": round(wall, 1), "first_epoch_at_98.5": first}


BENCHES = {"overhead": bench_overhead, "fashion": bench_fashion, "best": bench_best, "mnist": bench_mnist}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=list(BENCHES))
    p.add_argument("--quick", action="store_true", help="shorter runs (the reference capped at 5 minutes)")
    p.add_argument("--threads", type=int, help="torch threads (default: convscope's choice)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads or choose_threads())
    out = {"threads": torch.get_num_threads(), "torch": torch.__version__, "quick": args.quick}
    for name in args.only or list(BENCHES):
        t0 = time.perf_counter()
        out[name] = BENCHES[name](args.quick)
        out[name]["bench_wall_seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
