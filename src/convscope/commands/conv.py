"""`convscope conv`: the output size of a convolution or pooling, with the arithmetic shown."""
from __future__ import annotations

import argparse
import json

NAME = "conv"
HELP = "output size of a convolution (N - F + 2P)/S + 1, or why it does not fit and what fixes it"
DESCRIPTION = """\
Work out the lecture's formula for one spatial axis (square images, square kernels):

    output = (N - F + 2P)/S + 1

N input size, F kernel size (a dilated kernel spans D(F - 1) + 1), P padding,
S stride. When (N - F + 2P)/S is not a whole number the kernel does not tile
the input: the command says so (the lecture's rule), says what PyTorch does
instead (it rounds down, and the last rows/columns are never covered: how
many, and whether they are image or padding), lists the paddings, strides and
input sizes that fit, and exits with status 2.

examples:
  convscope conv --input 7 --kernel 3 --stride 2      # 3x3
  convscope conv --input 7 --kernel 3 --stride 3      # does not fit: pad by 1
  convscope conv --input 224 --kernel 11 --stride 4 --padding 2 --json
"""
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", "-n", type=int, required=True, metavar="N", help="input size (height = width)")
    parser.add_argument("--kernel", "-f", type=int, required=True, metavar="F", help="kernel size")
    parser.add_argument("--stride", "-s", type=int, default=1, metavar="S", help="stride (default 1)")
    parser.add_argument("--padding", "-p", type=int, default=0, metavar="P", help="zero padding per side (default 0)")
    parser.add_argument("--dilation", "-d", type=int, default=1, metavar="D", help="dilation (default 1)")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    from convscope.commands._common import UserError

    from convscope.geometry import explain, explain_text

    report = explain(args.input, args.kernel, args.stride, args.padding, args.dilation)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["valid"] else 2
    text = explain_text(report)
    if text:
        print(text)
    if not report["valid"]:
        raise UserError(report["message"])
    return 0
