"""`convscope export`: a run or a registered model as an ONNX file, checked with onnxruntime."""
from __future__ import annotations

import argparse
import json

NAME = "export"
HELP = "export a run or a model to ONNX (checked against torch with onnxruntime)"
ORDER = 75
DESCRIPTION = """\
Write the network as an ONNX file that onnxruntime, Netron and deployment
tools read. The input "input" is (N, C, H, W) with a dynamic batch axis N
(C, H, W: the run's input size, or the model's default); the output is
"logits". With --all-layers every shown layer (conv, pool, linear, batch
norm, LRN and activation outputs) is an extra output named by its module name,
what the explorer draws.

Before the file is written, onnxruntime runs it on random inputs (a batch of 3)
and each output must equal torch's within 1e-4 (times the output's largest
magnitude where that is over 1: float32 keeps 7 digits); the largest difference
is printed.

examples:
  convscope export runs/demo --format onnx --out model.onnx
  convscope export resnet18 --format onnx --out resnet18.onnx --all-layers
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="RUN|NAME", help="a run folder or a registered model (random weights)")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="file format (only onnx)")
    parser.add_argument("--out", required=True, metavar="FILE", help="where to write, e.g. model.onnx")
    parser.add_argument("--all-layers", action="store_true",
                        help="also output every shown layer's activation, named by module name")
    parser.add_argument("--json", action="store_true", help="print the result and the check as JSON")


def run(args: argparse.Namespace) -> int:
    from convscope.export.onnx import check_out_path

    check_out_path(args.out)  # before loading anything
    from convscope.analysis.resolve import real_model, run_input_size
    from convscope.export import export_onnx

    model, label, config = real_model(args.target)
    size = run_input_size(config) or tuple(model.default_input_size)
    result = export_onnx(model, args.out, size, all_layers=args.all_layers)
    if args.json:
        print(json.dumps({"model": label, **result.to_dict()}, indent=2))
        return 0
    extra = f" + {len(result.outputs) - 1} layer outputs" if len(result.outputs) > 1 else ""
    print(f"wrote {result.path} ({result.bytes / 1e6:.1f} MB): {label}, input N x "
          f"{'x'.join(map(str, size))} (N dynamic), logits{extra}")
    print(f"check: onnxruntime vs torch on a random batch of {result.batch}: max abs diff "
          f"{result.max_abs_diff:.2e}; worst against its values' size {result.max_scaled_diff:.2e} "
          f"(on {result.worst_output}) <= {result.tolerance:g}: ok")
    return 0
