"""`convscope models`: the registered architectures, their size and native input."""
from __future__ import annotations

import argparse
import json

NAME = "models"
HELP = "list the registered models: parameters and default input size"
DESCRIPTION = """\
List the architectures convscope can build (built on the meta device: no
weights are allocated, so the whole zoo is listed in about a second).

examples:
  convscope models
  convscope models 'resnet*'
  convscope models --json
"""
ORDER = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default=None, metavar="PATTERN",
                        help="shell-style wildcard, e.g. 'vgg*' (default: all)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def run(args: argparse.Namespace) -> int:
    from convscope.errors import UserError
    from convscope.models import list_models, model_rows

    found = model_rows(args.pattern)
    if not found:
        raise UserError(f"no model matches {args.pattern!r}; registered: {', '.join(list_models())}")
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    width = max(len(r["name"]) for r in found)
    print(f"{'name'.ljust(width)}  {'parameters':>13}  input      classes")
    for r in found:
        size = "x".join(str(v) for v in r["default_input_size"])
        print(f"{r['name'].ljust(width)}  {r['params']:>13,}  {size:<9}  {r['num_classes'] or '-'}")
    return 0
