"""`convscope compare`: the lecture's "at a glance" table and bubble chart."""
from __future__ import annotations

import argparse
import json

NAME = "compare"
HELP = "ImageNet top-1 vs multiply-adds for the zoo: a table and a bubble chart (area = parameters)"
DESCRIPTION = """\
Parameters and multiply-adds are measured by convscope (each model at its
native input size, on the meta device); top-1 accuracies come from
convscope/analysis/accuracy.json, which cites the paper or torchvision's
published numbers for every row. Models with no published ImageNet accuracy
(lenet5, for one) are skipped with a note.

examples:
  convscope compare
  convscope compare alexnet vgg16 resnet50 mobilenet_v1 --out zoo.png
  convscope compare --json
"""
ORDER = 22


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="models to compare (default: every registered model)")
    parser.add_argument("--out", default=None, metavar="FILE.png", help="write the bubble chart here")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args: argparse.Namespace) -> int:
    import sys
    from dataclasses import asdict

    from convscope.analysis.compare import bubble_chart, compare, table
    from convscope.errors import UserError

    entries, skipped = compare(args.names or None)
    if not entries:
        raise UserError(f"none of {', '.join(args.names)} has a published ImageNet accuracy to compare "
                        "(see convscope/analysis/accuracy.json)")
    if args.out:
        path = bubble_chart(entries, args.out)
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps({"units": "MACs = multiply-accumulates; FLOPs = 2 x MACs; top1/top5 in percent",
                          "models": [asdict(e) for e in entries], "skipped": skipped}, indent=2))
        return 0
    print(table(entries))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return 0
