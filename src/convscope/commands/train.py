"""convscope train: train a model on a dataset and write a run folder."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from convscope import limits
from convscope.commands._common import (SCHEDULES, UserError, add_data_options, add_model_arg_option,
                                        add_optim_options, add_output_options, add_runtime_options,
                                        parse_model_args)

if TYPE_CHECKING:
    from convscope.train.request import TrainRequest

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


def _find_lr(args: argparse.Namespace, req: "TrainRequest") -> tuple[float, dict]:
    """The range test with this training's own model, data, batch size and optimizer."""
    from convscope.train.lr_find import range_test

    if req.resume:
        raise UserError("--lr find starts a run; a resumed run keeps the lr it was started with")
    same = {k: v for k, v in req.overrides.items() if k in ("momentum", "nesterov", "weight_decay",
                                                             "label_smoothing", "augment", "erase_p")}
    result, info = range_test(model=req.model, data=req.data, recipe=req.recipe, device=req.device,
                              model_kwargs=dict(req.model_kwargs) if req.model_kwargs else None,
                              data_root=req.data_root, download=req.download, image_size=req.image_size,
                              batch_size=req.batch_size, optimizer=req.optimizer, seed=req.seed,
                              val_fraction=req.val_fraction, test_fraction=req.test_fraction, **same)
    lr = result.suggestions["steepest"]
    if not args.quiet:
        print(f"lr-find: {len(result.lrs)} steps in {result.seconds:.1f}s, steepest descent at {lr:.3g} "
              f"(valley {result.suggestions['valley']:.3g}); training with --lr {lr:.3g}", file=sys.stderr)
    return lr, {"lr_find": {"used": "steepest", "lr": lr, "suggestions": result.suggestions,
                            "steps": len(result.lrs), "batch_size": result.batch_size,
                            "seconds": round(result.seconds, 3), "settings": result.settings}}


_OVERRIDES = ("momentum", "nesterov", "weight_decay", "step_size", "gamma", "warmup_epochs", "label_smoothing",
              "augment", "erase_p")
_PLAIN = ("model", "data", "recipe", "epochs", "batch_size", "optimizer", "schedule", "seed", "resume",
          "device", "threads", "data_root", "download", "image_size", "overwrite", "val_fraction", "test_fraction")


def request_of(args: argparse.Namespace) -> "TrainRequest":
    """The options as one checked TrainRequest (the library's and the Train tab's too); the run
    folder defaults to runs/MODEL-DATA (-2, -3, ... when taken)."""
    from convscope.train.request import TrainRequest, default_out

    values = {k: getattr(args, k) for k in (*_PLAIN, *_OVERRIDES)}
    req = TrainRequest.parse(dict(values, out=args.out, lr=None if args.lr == "find" else args.lr,
                                  model_kwargs=parse_model_args(args.model_arg)))
    if req.out is None:
        req = dataclasses.replace(req, out=default_out(Path("runs"), req.model_name(), req.data_name()))
    return req


def run(args: argparse.Namespace) -> int:
    from convscope.runs import RunDir
    from convscope.train import Interrupted
    from convscope.train.api import train_request

    req = request_of(args)
    if args.lr == "find":
        lr, extra = _find_lr(args, req)
        req = dataclasses.replace(req, lr=lr, overrides=MappingProxyType(dict(req.overrides, extra=extra)))
    try:
        run_dir = train_request(req, progress=not args.quiet, report=not args.json and not args.quiet)
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
