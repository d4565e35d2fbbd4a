"""convscope lr-find: the learning-rate range test (Smith 2017) of a model on a dataset."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from convscope.commands._common import add_data_options, add_model_arg_option, add_runtime_options

NAME = "lr-find"
HELP = "learning-rate range test: the loss over an exponential lr sweep, with suggestions"
ORDER = 52
DESCRIPTION = """Train a fresh copy of a model (or of a run's, to fine-tune it) for at most one epoch
while the learning rate grows exponentially from --start-lr to --end-lr, one step per batch;
stop when the smoothed loss passes 4x its minimum. Prints the suggestions (steepest descent,
valley) and writes the whole curve as a PNG with both marked. Nothing is saved as a run and a
--from run is only read.

Without --out the PNG is lr-find-MODEL-DATA.png in the current folder; with --out DIR
it is DIR/lr-find.png beside DIR/lr-find.json. `convscope train --lr find` runs this first.

examples:
  convscope lr-find --model lenet5 --data mnist --batch-size 16
  convscope lr-find --recipe mnist-fast --json
  convscope lr-find --from runs/demo --data fashion-mnist --out lr"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registered model name (default: the recipe's, else lenet5)")
    p.add_argument("--from", dest="from_run", metavar="RUN",
                   help="start from a run's weights (fine-tuning); a new head when --data has other classes")
    p.add_argument("--recipe", help="take batch size, optimizer and augmentation from a recipe")
    p.add_argument("--out", help="folder for lr-find.png and lr-find.json")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["sgd", "adamw"])
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--augment", choices=["auto", "none", "digits", "fashion", "natural"])
    p.add_argument("--start-lr", type=float, default=1e-5)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=200, help="sweep length (at most one epoch of batches)")
    p.add_argument("--seed", type=int, default=0)
    add_data_options(p)
    add_model_arg_option(p)
    add_runtime_options(p)
    p.add_argument("--json", action="store_true", help="print suggestions, lrs and losses as JSON")


def run(args: argparse.Namespace) -> int:
    from convscope.commands._common import parse_model_args
    from convscope.train.lr_find import range_test

    import torch

    from convscope.train.runtime import choose_threads

    torch.set_num_threads(args.threads or choose_threads())  # as `convscope train` chooses
    if args.from_run and (args.model or args.model_arg):
        raise ValueError("--from RUN brings its own model; drop --model/--model-arg")
    settings = {k: getattr(args, k) for k in ("batch_size", "optimizer", "momentum", "weight_decay", "augment")}
    result, info = range_test(model=args.model, data=args.data, run=args.from_run, recipe=args.recipe,
                              model_kwargs=parse_model_args(args.model_arg) or None, device=args.device,
                              data_root=args.data_root, download=args.download, image_size=args.image_size,
                              start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps, seed=args.seed,
                              **settings)
    res = dict(result.to_dict(), **info)
    png = _write(args, result, res, info)
    if args.json:
        print(json.dumps(res))
        return 0
    s = res["suggestions"]
    print(f"lr range test of {info['model']} on {info['data']}: {res['steps']} steps of {res['batch_size']} "
          f"from {args.start_lr:g} to {result.lrs[-1]:.3g} in {res['seconds']:.1f}s (stopped: {res['stopped']})")
    print(f"  steepest descent  {s['steepest']:.3g}   (what `train --lr find` uses)")
    print(f"  valley            {s['valley']:.3g}")
    print(f"  minimum / 10      {s['minimum']:.3g}")
    if res.get("warning"):
        print(f"  note: {res['warning']}")
    print(f"curve: {png}")
    return 0


def _write(args: argparse.Namespace, result, res: dict, info: dict) -> Path:
    from convscope.runs import atomic_write_json
    from convscope.train.lr_find import plot_lr_find

    if res["steps"] < 50:
        res["warning"] = (f"one epoch holds only {res['steps']} batches of {res['batch_size']}: a coarse curve; "
                          f"a smaller --batch-size gives a longer sweep")
    safe = f"{info['model']}-{info['data']}".replace(":", "-").replace("/", "-")
    png = Path(args.out) / "lr-find.png" if args.out else Path(f"lr-find-{safe}.png")
    res["png"] = str(png)
    try:
        plot_lr_find(result, png, title=f"LR range test: {info['model']} on {info['data']}, batch {res['batch_size']}")
        if args.out:
            atomic_write_json(Path(args.out) / "lr-find.json", res)
    except OSError as exc:
        raise ValueError(f"cannot write {png.parent}: {exc.strerror or exc}; pass --out a folder you can write") \
            from None
    return png
