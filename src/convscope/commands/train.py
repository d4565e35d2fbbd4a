"""convscope train: train a model on a dataset and write a run folder."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convscope.commands._common import (SCHEDULES, UserError, add_data_options, add_model_arg_option,
                                        add_optim_options, add_output_options, add_runtime_options,
                                        parse_model_args)

NAME = "train"
HELP = "train a model on a dataset (resumable, DDP under torchrun)"
ORDER = 50
DESCRIPTION = """Train a registered model on a dataset and write a run folder:
model.safetensors, config.json, metrics.jsonl, curves.png and state/ (for --resume).

examples:
  convscope train --recipe mnist-fast --out runs/demo
  convscope train --model lenet5 --data fashion-mnist --epochs 5 --lr 0.05 --out runs/f
  convscope train --out runs/f --resume                  # continue after Ctrl-C or a crash
  torchrun --nproc-per-node 2 -m convscope train --recipe fashion-fast --out runs/ddp

recipes: mnist-fast, fashion-fast, fashion-best (see docs/training.md)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registered model name (default: the recipe's, else lenet5)")
    p.add_argument("--recipe", help="named settings: mnist-fast, fashion-fast, fashion-best")
    p.add_argument("--out", help="run folder (default: runs/MODEL-DATA)")
    add_data_options(p, default_help=" (default: the recipe's, else mnist)")
    add_optim_options(p)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--momentum", type=float)
    p.add_argument("--schedule", choices=SCHEDULES, metavar="NAME", help="the lr schedule: %(choices)s")
    p.add_argument("--step-size", type=int, help="step schedule: epochs between decays")
    p.add_argument("--gamma", type=float, help="step/plateau: decay factor")
    p.add_argument("--warmup-epochs", type=float, help="cosine: epochs of linear warm-up")
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--erase-p", type=float, help="fashion/natural: random-erasing probability (default 0.5)")
    add_model_arg_option(p)
    add_runtime_options(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its state/")
    add_output_options(p, json_help="print the final metrics as JSON")


def _default_out(model: str | None, data: str | None, recipe: str | None) -> Path:
    from convscope.train.config import recipe_defaults

    rd = recipe_defaults(recipe)
    m = model or rd.get("model", "lenet5")
    d = (data or rd.get("data", "mnist")).replace(":", "-").replace("/", "-")
    base = Path("runs") / f"{m}-{d}"
    out, i = base, 2
    while out.exists():
        out, i = base.with_name(f"{base.name}-{i}"), i + 1
    return out


def run(args: argparse.Namespace) -> int:
    from convscope.runs import RunDir
    from convscope.train import Interrupted, train

    if args.resume and not args.out:
        raise UserError("--resume needs --out RUN (the run folder to continue)")
    out = Path(args.out) if args.out else _default_out(args.model, args.data, args.recipe)
    extra = {k: getattr(args, k) for k in ("momentum", "nesterov", "weight_decay", "step_size", "gamma",
                                           "warmup_epochs", "label_smoothing", "augment", "erase_p")}
    try:
        run_dir = train(model=args.model, data=args.data, out=out, recipe=args.recipe, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                        schedule=args.schedule, seed=args.seed, resume=args.resume,
                        progress=not args.quiet, report=not args.json and not args.quiet,
                        model_kwargs=parse_model_args(args.model_arg), device=args.device,
                        threads=args.threads, data_root=args.data_root, download=args.download,
                        image_size=args.image_size, overwrite=args.overwrite, **extra)
    except Interrupted as exc:
        print(exc.message, file=sys.stderr)
        return 130
    if args.json:
        import os

        if int(os.environ.get("RANK", "0")) == 0:
            history = RunDir(run_dir).read_history()
            print(json.dumps({"run": str(run_dir), "epochs": len(history), "final": history[-1],
                              "seconds": round(sum(h["seconds"] for h in history), 3)}))
    return 0
