"""convscope transfer-vs-scratch: fine-tuning a source run vs training from scratch on k images per class."""
from __future__ import annotations

import argparse
from pathlib import Path

from convscope.commands._common import print_experiment, runtime

NAME = "transfer-vs-scratch"
HELP = "fine-tune a run vs train from scratch on k labelled images per class"
ORDER = 85
DESCRIPTION = """For every k in --shots, cut the target's training split to k images per class
(seeded) and train two models with the same budget: the source run fine-tuned (the
finetune command's schedule) and the same architecture from scratch. Both are scored
on the target's whole test split. Writes OUT/results.json, OUT/accuracy_vs_shots.png
and OUT/cells/*.json (run again with the same --out to resume).

examples:
  convscope transfer-vs-scratch --source runs/fashion --data mnist --shots 10,100,1000 --out runs/f2m
  convscope transfer-vs-scratch --source runs/mnist --data fashion-mnist --repeats 3 --json --out runs/m2f"""


def _shots(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shots {text!r}: give whole numbers separated by commas, e.g. 10,100,1000")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, metavar="RUN|torchvision:NAME", help="the trained source")
    p.add_argument("--data", required=True, help="the target dataset")
    p.add_argument("--shots", type=_shots, default=[10, 100, 1000], help="images per class (default 10,100,1000)")
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs after the head-only one (default 3); "
                                                          "scratch trains freeze-epochs + epochs")
    p.add_argument("--freeze-epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--body-lr-mult", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--min-epoch", type=int, default=1024,
                   help="a small train split is repeated to at least this many images per epoch (default 1024)")
    p.add_argument("--repeats", type=int, default=1, help="seeds per k (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--device")
    p.add_argument("--keep-runs", action="store_true", help="keep the run folders of every model")
    p.add_argument("--out", required=True, help="output folder (resumes what is there)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true", help="print results.json")


def run(args: argparse.Namespace) -> int:
    from convscope.transfer.small_data import format_table, transfer_vs_scratch

    with runtime(args) as rt:
        result = transfer_vs_scratch(args.source, args.data, Path(args.out), shots=args.shots, epochs=args.epochs,
                                     freeze_epochs=args.freeze_epochs, lr=args.lr, body_lr_mult=args.body_lr_mult,
                                     batch_size=args.batch_size, min_epoch=args.min_epoch, seed=args.seed,
                                     repeats=args.repeats, progress=not args.quiet and not args.json, runtime=rt,
                                     keep_runs=args.keep_runs)
    print_experiment(args, result, format_table, "accuracy_vs_shots.png")
    return 0
