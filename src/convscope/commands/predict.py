"""convscope predict: labels and probabilities for image files, with the run's own preprocessing."""
from __future__ import annotations

import argparse
import json

NAME = "predict"
HELP = "classify image files with a trained run (top-k labels and probabilities)"
ORDER = 60
DESCRIPTION = """Classify images with a run folder. Each image is prepared the way the run's
training data was (config.json "preprocessing": MNIST-style centring for digits,
a resize otherwise) and normalised with the run's mean and std.

examples:
  convscope predict runs/demo digit.png
  convscope predict runs/demo a.png b.jpg --top 3 --json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run folder written by `convscope train`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top", type=int, default=5, help="how many classes to list per image (default 5)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per image")


def run(args: argparse.Namespace) -> int:
    from convscope.errors import UserError
    from convscope.predictor import Predictor

    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    results = Predictor.from_run(args.run).predict(args.images, k=args.top)
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        guesses = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in r["top"])
        print(f"{r['image']}: {guesses}")
    return 0
