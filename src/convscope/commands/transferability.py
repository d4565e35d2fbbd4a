"""convscope transferability: Yosinski et al. (2014)'s layer-transfer experiment, resumable."""
from __future__ import annotations

import argparse
from pathlib import Path

from convscope.commands._common import add_model_arg_option, parse_model_args, print_experiment, runtime

NAME = "transferability"
HELP = "how transferable is each layer? (Yosinski et al. 2014: BnB, BnB+, AnB, AnB+)"
ORDER = 90
DESCRIPTION = """Split the classes into halves A and B at random (seeded), train baseA and
baseB, then for n = 1..L (the network's stages) train BnB, BnB+, AnB and AnB+ on B:
the first n stages copied from baseB or baseA, frozen or fine-tuned (+), the rest
reinitialised. Writes OUT/results.json (the table), OUT/figure2.png (the paper's
Figure 2 style) and OUT/cells/*.json: run it again with the same --out to resume.

The defaults (lenet5, 4 epochs, 2,000 images per class, 1 repeat: 18 networks)
finish a fashion-mnist run in about 4 minutes on 2 shared CPU cores (2 repeats took
8 min 12 s there); see docs/transfer.md.

examples:
  convscope transferability --data fashion-mnist --out runs/transferability
  convscope transferability --data fashion-mnist --repeats 2 --epochs 5 --out runs/tr2"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="fashion-mnist", help="a dataset with at least 4 classes (default fashion-mnist)")
    p.add_argument("--model", default="lenet5", help="registered model (default lenet5: L = 4 stages)")
    add_model_arg_option(p, "small_input=true")
    p.add_argument("--epochs", type=int, default=4, help="epochs of every network (default 4)")
    p.add_argument("--subset", type=int, default=2000,
                   help="training images per class (default 2000; 0 for all)")
    p.add_argument("--repeats", type=int, default=1, help="random A/B splits, each a full grid (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--keep-runs", action="store_true", help="keep every treatment's run folder")
    p.add_argument("--out", required=True, help="output folder (resumes what is there)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print results.json")


def run(args: argparse.Namespace) -> int:
    from convscope.transfer.transferability import format_table, transferability

    with runtime(args) as rt:
        result = transferability(args.data, Path(args.out), model=args.model,
                                 model_kwargs=parse_model_args(args.model_arg), epochs=args.epochs,
                                 subset=args.subset or None, repeats=args.repeats, seed=args.seed, lr=args.lr,
                                 batch_size=args.batch_size, progress=not args.quiet, runtime=rt,
                                 keep_runs=args.keep_runs)
    print_experiment(args, result, format_table, "figure2.png")
    return 0
