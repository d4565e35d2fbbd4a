"""convscope train: train a model on a dataset and write a run folder."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convscope import limits
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
  convscope train --recipe mnist-fast --val-fraction 0 --test-fraction 0 --out runs/all5k
                                                         # every one of the 5,000 offline digits trains
  convscope train --out runs/f --resume                  # continue after Ctrl-C or a crash
  torchrun --nproc-per-node 2 -m convscope train --recipe fashion-fast --out runs/ddp

recipes: mnist-fast, fashion-fast, fashion-best (see docs/training.md)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registered model name (default: the recipe's, else lenet5)")
    p.add_argument("--recipe", help="named settings: mnist-fast, fashion-fast, fashion-best")
    p.add_argument("--out", type=limits.out_dir, help="run folder (default: runs/MODEL-DATA)")
    add_data_options(p, default_help=" (default: the recipe's, else mnist)")
    p.add_argument("--val-fraction", type=_fraction, metavar="F",
                   help="share of each class of the training images held out for validation (default 0.1; "
                        "0: none, every image trains and metrics.jsonl's val figures are null)")
    p.add_argument("--test-fraction", type=_fraction, metavar="F",
                   help="for data without a test split of its own (offline mnist, folder:PATH): the share "
                        "of each class held out for testing (default 0.2; 0: none)")
    add_optim_options(p)
    _allow_lr_find(p)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--momentum", type=limits.arg("momentum"))
    p.add_argument("--schedule", choices=SCHEDULES, metavar="NAME", help="the lr schedule: %(choices)s")
    p.add_argument("--step-size", type=limits.arg("step_size"), help="step schedule: epochs between decays")
    p.add_argument("--gamma", type=limits.arg("gamma"), help="step/plateau: decay factor")
    p.add_argument("--warmup-epochs", type=limits.arg("warmup_epochs"), help="cosine: epochs of linear warm-up")
    p.add_argument("--label-smoothing", type=limits.arg("label_smoothing"))
    p.add_argument("--erase-p", type=limits.arg("erase_p"), help="fashion/natural: random-erasing probability (default 0.5)")
    add_model_arg_option(p)
    add_runtime_options(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its state/")
    add_output_options(p, json_help="print the final metrics as JSON")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share in [0, 1): 0 holds nothing out, 0.1 a tenth")
    return value


def _lr_value(text: str) -> float | str:
    if text.strip().lower() == "find":
        return "find"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or `find`") from None


def _allow_lr_find(p: argparse.ArgumentParser) -> None:
    """--lr also takes `find`: run the LR range test first and train with its suggestion."""
    for action in p._actions:
        if action.dest == "lr":
            action.type = _lr_value
            action.help = "peak learning rate, or `find`: run `convscope lr-find` first and take its " \
                          "steepest-descent suggestion"


def _find_lr(args: argparse.Namespace, extra: dict) -> tuple[float, dict]:
    """The range test with this training's own model, data, batch size and optimizer."""
    from convscope.train.lr_find import range_test

    if args.resume:
        raise UserError("--lr find starts a run; a resumed run keeps the lr it was started with")
    same = {k: v for k, v in extra.items() if k in ("momentum", "nesterov", "weight_decay", "label_smoothing",
                                                      "augment", "erase_p")}
    result, info = range_test(model=args.model, data=args.data, recipe=args.recipe, device=args.device,
                              model_kwargs=parse_model_args(args.model_arg) or None, data_root=args.data_root,
                              download=args.download, image_size=args.image_size, batch_size=args.batch_size,
                              optimizer=args.optimizer, seed=args.seed, val_fraction=args.val_fraction,
                              test_fraction=args.test_fraction, **same)
    lr = result.suggestions["steepest"]
    if not args.quiet:
        print(f"lr-find: {len(result.lrs)} steps in {result.seconds:.1f}s, steepest descent at {lr:.3g} "
              f"(valley {result.suggestions['valley']:.3g}); training with --lr {lr:.3g}", file=sys.stderr)
    return lr, {"lr_find": {"used": "steepest", "lr": lr, "suggestions": result.suggestions,
                            "steps": len(result.lrs), "batch_size": result.batch_size,
                            "seconds": round(result.seconds, 3), "settings": result.settings}}


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
    if args.lr == "find":
        args.lr, extra["extra"] = _find_lr(args, extra)
    try:
        run_dir = train(model=args.model, data=args.data, out=out, recipe=args.recipe, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                        schedule=args.schedule, seed=args.seed, resume=args.resume,
                        progress=not args.quiet, report=not args.json and not args.quiet,
                        model_kwargs=parse_model_args(args.model_arg), device=args.device,
                        threads=args.threads, data_root=args.data_root, download=args.download,
                        image_size=args.image_size, overwrite=args.overwrite,
                        val_fraction=args.val_fraction, test_fraction=args.test_fraction, **extra)
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
