"""`convscope activations`: every layer's feature maps for one image."""
from __future__ import annotations

import argparse

NAME = "activations"
HELP = "draw each layer's feature maps for one image, from the input to the output probabilities"
DESCRIPTION = """\
Run one image through a trained run's model and draw what every layer
outputs: a grid of feature maps per convolution, pooling or activation
(the first 16 maps, each scaled on its own), a strip for fully connected
layers, and the output probabilities with the first and second guess.
The image is prepared exactly as `convscope predict` prepares it.

examples:
  convscope activations runs/mnist-lenet digit.png --out activations.png
"""
ORDER = 31


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run folder written by `convscope train`")
    parser.add_argument("image", metavar="IMAGE", help="an image file (PNG, JPEG, ...)")
    parser.add_argument("--out", default="activations.png", metavar="FILE.png",
                        help="where to write (default activations.png)")


def run(args: argparse.Namespace) -> int:
    from convscope.analysis.pictures import plot_activations
    from convscope.analysis.resolve import run_predictor

    p = run_predictor(args.run_dir, "activations")
    x = p.prepare(args.image)
    path = plot_activations(p.model, x, args.out, config=p.config, title=f"{p.name} ({args.run_dir})")
    print(f"wrote {path}")
    return 0
