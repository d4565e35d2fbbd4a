"""`convscope tuning`: Hubel & Wiesel's experiment on a network's units."""
from __future__ import annotations

import argparse

NAME = "tuning"
HELP = "Hubel & Wiesel in silico: orientation tuning and selectivity (OSI) of a layer's units"
DESCRIPTION = """\
Sweep oriented bars and sinusoidal gratings (0-180 degrees, several phases and
spatial frequencies) through the receptive field of the centre unit of every
channel of --layer, draw the tuning curves, and report each unit's preferred
orientation (0 = horizontal bar, 90 = vertical) and its orientation
selectivity index (vector-sum OSI = 1 - circular variance on doubled angles).
The same architecture at its random initialisation (the run's seed) is the
baseline; the command says whether the trained units are more selective.
Writes tuning-<layer>.png into --out.

examples:
  convscope tuning runs/mnist-lenet --layer conv1 --out tuning/
  convscope tuning runs/mnist-lenet --layer conv1 --out tuning/ --json
"""
ORDER = 34


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="RUN|NAME", help="a run folder or a registered model name")
    parser.add_argument("--layer", required=True, help="a conv or pooling layer, e.g. conv1")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from convscope.units.report import tuning, tuning_sentence
    from convscope.units.target import load_target

    target = load_target(args.target)
    target.check_layer(args.layer)
    baseline = load_target(args.target, random_init=True)
    result = tuning(target, baseline, args.layer, args.out)
    result["verdict"] = tuning_sentence(result, target.seed, trained=target.is_run)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for u in result["units"]:
        print(f"  channel {u['channel']:>3}: prefers {u['preferred_orientation']:5.1f} degrees, OSI {u['osi']:.2f}")
    print(result["verdict"])
    print(f"wrote {result['png']}")
    return 0
