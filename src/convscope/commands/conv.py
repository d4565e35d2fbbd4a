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
the input: the command says so, lists the paddings and strides that fit, and
exits with status 2.

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


def _report(args: argparse.Namespace) -> dict:
    from convscope.geometry import GeometryError, arithmetic, conv_output_size, effective_kernel, suggest_fixes

    n, f, s, p, d = args.input, args.kernel, args.stride, args.padding, args.dilation
    report = {"input": n, "kernel": f, "stride": s, "padding": p, "dilation": d,
              "effective_kernel": None, "output": None, "valid": False, "arithmetic": None,
              "message": None, "fixes": {"padding": [], "stride": []}}
    try:
        report["output"] = conv_output_size(n, f, s, p, d, strict=True)
    except GeometryError as exc:
        report["message"], report["fixes"] = str(exc), exc.fixes
        if n >= 1 and f >= 1 and s >= 1 and d >= 1 and p >= 0:  # the sizes are sane, the fit is not
            report["effective_kernel"] = effective_kernel(f, d)
            report["arithmetic"] = arithmetic(n, f, s, p, d)
            if report["output"] is None and n + 2 * p >= effective_kernel(f, d):
                report["output_if_rounded_down"] = conv_output_size(n, f, s, p, d)
        return report
    report["effective_kernel"] = effective_kernel(f, d)
    report["arithmetic"] = arithmetic(n, f, s, p, d)
    report["valid"] = True
    report["fixes"] = suggest_fixes(n, f, s, p, d)
    return report


def _text(report: dict) -> str:
    n, f, d, out = report["input"], report["kernel"], report["dilation"], report["output"]
    lines = [f"input {n}x{n}, kernel {f}x{f}, stride {report['stride']}, padding {report['padding']}"
             + (f", dilation {d} (the kernel spans {report['effective_kernel']})" if d != 1 else "")]
    if report["valid"]:
        verdict = ""
    elif report["input"] + 2 * report["padding"] < report["effective_kernel"]:
        verdict = "   <- the kernel is larger than the padded input"
    else:
        verdict = "   <- not a whole number: the kernel does not tile the input"
    lines.append(f"output = (N - F + 2P)/S + 1 = {report['arithmetic']}{verdict}")
    if report["valid"]:
        lines.append(f"a {n}x{n} input gives a {out}x{out} output")
        return "\n".join(lines)
    fixes = report["fixes"]
    if fixes["padding"]:
        lines.append("fits with padding: " + ", ".join(
            f"{d_['padding']} -> {d_['output']}x{d_['output']}" for d_ in fixes["padding"]))
    if fixes["stride"]:
        lines.append("fits with stride:  " + ", ".join(
            f"{d_['stride']} -> {d_['output']}x{d_['output']}" for d_ in fixes["stride"]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from convscope.cli import UserError

    report = _report(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["valid"] else 2
    if report["arithmetic"] is not None:
        print(_text(report))
    if not report["valid"]:
        raise UserError(report["message"])
    return 0
