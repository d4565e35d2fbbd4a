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

With --profile every row is also timed on a real forward pass (and, with
--backward, a backward pass): milliseconds beside the MACs and the time per
MAC, with the end-to-end forward timed in the same run; the model is built
with real weights (random, or the run's), so use a small --input for big
networks on a CPU.

examples:
  convscope summary vgg16
  convscope summary resnet50 --input 3x160x160
  convscope summary runs/mnist-lenet --json
  convscope summary mobilenet_v1 --input 3x128x128 --profile --backward
"""
ORDER = 21


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="NAME|RUN", help="a registered model (see `convscope models`) or a run folder")
    parser.add_argument("--input", default=None, metavar="CxHxW",
                        help="input size, e.g. 3x224x224 (default: the model's or the run's own)")
    parser.add_argument("--json", action="store_true", help="print summary.to_dict() as JSON")
    prof = parser.add_argument_group("time per layer")
    prof.add_argument("--profile", action="store_true", help="measure each row's forward time (ms)")
    prof.add_argument("--backward", action="store_true", help="with --profile: each row's backward time too")
    prof.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    prof.add_argument("--batch-size", type=int, default=1, help="images per timed pass (default 1)")
    prof.add_argument("--repeats", type=int, default=10, help="timed passes; medians are reported (default 10)")
    prof.add_argument("--threads", type=int, default=1,
                      help="CPU threads (default 1: then the clock is the thread's CPU time, which other "
                           "processes do not inflate; with more, wall-clock time)")


def run(args: argparse.Namespace) -> int:
    from convscope.analysis import summary
    from convscope.analysis.resolve import meta_model, run_input_size

    if args.backward and not args.profile:
        raise ValueError("--backward times the backward pass of --profile; add --profile")
    if args.profile:
        return _profile(args)
    model, label, config = meta_model(args.target)
    size = args.input or run_input_size(config)
    s = summary(model, size)
    s.model = label
    print(json.dumps(s.to_dict(), indent=2) if args.json else str(s))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from convscope.analysis.profile import profile
    from convscope.analysis.resolve import real_model, run_input_size

    import torch

    if args.threads < 1:
        raise ValueError(f"--threads {args.threads} must be at least 1")
    torch.set_num_threads(args.threads)
    model, label, config = real_model(args.target)
    if config is not None:
        label = f"{label} ({args.target})"
    p = profile(model, args.input or run_input_size(config), backward=args.backward, device=args.device,
                batch_size=args.batch_size, repeats=args.repeats)
    p.summary.model = label
    print(json.dumps(p.to_dict(), indent=2) if args.json else str(p))
    return 0
