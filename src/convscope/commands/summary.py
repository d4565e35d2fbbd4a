"""`convscope summary`: the per-layer table of a model or a trained run."""
from __future__ import annotations

import argparse
import json

NAME = "summary"
HELP = "per-layer table: output shapes, parameters, multiply-adds, memory, receptive fields"
DESCRIPTION = """\
One row per layer: output shape, activations (values), parameters (weights
without and with biases), multiply-adds (MACs; FLOPs = 2 x MACs), other ops
(batch norm, pooling, activations: counted apart), receptive field and jump;
then the totals, with the forward activation memory and an estimate for
training (forward + backward). Runs on the meta device: no weights are
allocated, so even VGG16 (553 MB of weights) takes a fraction of a second.

examples:
  convscope summary vgg16
  convscope summary resnet50 --input 3x160x160
  convscope summary runs/mnist-lenet --json
"""
ORDER = 21


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="NAME|RUN", help="a registered model (see `convscope models`) or a run folder")
    parser.add_argument("--input", default=None, metavar="CxHxW",
                        help="input size, e.g. 3x224x224 (default: the model's or the run's own)")
    parser.add_argument("--json", action="store_true", help="print summary.to_dict() as JSON")


def run(args: argparse.Namespace) -> int:
    from convscope.analysis import summary
    from convscope.analysis.resolve import meta_model, run_input_size

    model, label, config = meta_model(args.target)
    size = args.input or run_input_size(config)
    s = summary(model, size)
    s.model = label
    print(json.dumps(s.to_dict(), indent=2) if args.json else str(s))
    return 0
