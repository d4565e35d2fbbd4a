"""`convscope units`: what a layer's units see, from the dataset and by optimisation."""
from __future__ import annotations

import argparse

NAME = "units"
HELP = "what does a unit see? its top dataset patches (Zeiler & Fergus) or an optimised image (Olah et al.)"
DESCRIPTION = """\
For every channel of a conv or pooling layer:

  patches   (default) the k images of the dataset that drive the channel
            hardest, each cropped to the receptive field of the unit that
            peaked (Zeiler & Fergus 2013, Fig. 2): one pass, no gradients
  optimize  also an image made by gradient ascent on the input (Olah et al.
            2017, "Feature Visualization"): Fourier parametrisation, jitter,
            scale and rotation; the JSON reports, per channel, its activation
            beside the best dataset patch's

--layer all does every convolution and draws Lee et al.'s hierarchy
figure (hierarchy.png). Writes units-<layer>.png into --out. RUN is a run
folder (its own dataset is ranked unless --data says otherwise); NAME a zoo
model at random initialisation (then --data is needed).

examples:
  convscope units runs/mnist-lenet --layer conv2 --out units/
  convscope units runs/mnist-lenet --layer all --method optimize --out units/ --json
"""
ORDER = 33


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="RUN|NAME", help="a run folder or a registered model name")
    parser.add_argument("--layer", required=True, help="a conv or pooling layer (see `convscope summary`), or all")
    parser.add_argument("--top", type=int, default=9, metavar="K", help="patches per channel (default 9)")
    parser.add_argument("--method", choices=("patches", "optimize"), default="patches", help="default patches")
    parser.add_argument("--data", default=None, help="images to rank (default: the run's dataset)")
    parser.add_argument("--split", choices=("all", "train", "val", "test"), default="all",
                        help="which split to rank (default all: train, val, test in that order)")
    parser.add_argument("--channels", default=None, metavar="LIST", help="e.g. 0-7,12 (default: every channel)")
    parser.add_argument("--steps", type=int, default=256, help="optimisation steps (default 256)")
    parser.add_argument("--restarts", type=int, default=4, help="random starts per channel, the best kept (default 4)")
    parser.add_argument("--objective", choices=("channel", "unit"), default="channel",
                        help="optimise the channel's mean (default) or its single centre unit")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from convscope.errors import UserError
    from convscope.units.report import units
    from convscope.units.target import load_target

    if args.steps < 1 or args.restarts < 1:
        raise UserError(f"--steps and --restarts must be at least 1, got {args.steps} and {args.restarts}")
    target = load_target(args.target)
    result = units(target, args.layer, args.out, k=args.top, method=args.method, data=args.data,
                   split=args.split, channels=args.channels, steps=args.steps,
                   objective=args.objective, restarts=args.restarts)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for layer in result.get("layers", [result]):
        print(f"wrote {layer['png']}")
        if args.method == "optimize":
            ratios = [e["ratio"] for e in layer["channels"] if e["ratio"] is not None]
            harder = sum(e["drives_harder"] for e in layer["channels"])
            low = f", ratio to the best patch {min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""
            print(f"  {layer['layer']}: the optimised image drives {harder} of {len(layer['channels'])} channels "
                  f"harder than their best dataset patch{low}")
    if "hierarchy_png" in result:
        print(f"wrote {result['hierarchy_png']}")
    return 0
