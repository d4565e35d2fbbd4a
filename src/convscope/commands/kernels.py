"""`convscope kernels`: a convolution's filters as an image grid."""
from __future__ import annotations

import argparse

from convscope import limits

NAME = "kernels"
HELP = "draw a convolution's learned filters as an image grid (colour for RGB filters, grey otherwise)"
DESCRIPTION = """\
Draw the filters of one convolution layer (default: the first), one tile per
filter, as the lecture shows AlexNet's 96 first-layer kernels: colour when
the filter reads 3 channels, grey when it reads 1, and one grey tile per
input channel otherwise. Each filter is scaled to black..white on its own.

Given a RUN, the filters are the trained ones. Given a model NAME, there is
nothing learned yet: the layer gets PyTorch's default random initialisation,
and the title says so.

examples:
  convscope kernels runs/mnist-lenet --out kernels.png
  convscope kernels runs/mnist-lenet --layer conv2
  convscope kernels alexnet --layer features.conv1
"""
ORDER = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="RUN|NAME", help="a run folder, or a registered model (random weights)")
    parser.add_argument("--layer", default=None, help="the convolution to draw, by module name (default: the first)")
    parser.add_argument("--out", type=limits.out_file(".png"), default="kernels.png", metavar="FILE.png", help="where to write (default kernels.png)")


def run(args: argparse.Namespace) -> int:
    from convscope.analysis.pictures import find_conv, plot_kernels
    from convscope.analysis.resolve import is_run, meta_model, real_model

    if is_run(args.target):
        model, name, _ = real_model(args.target)
        title = f"{name}, trained ({args.target})"
    else:
        # only the drawn layer gets real memory: the rest of the model stays on the meta device
        model, name, _ = meta_model(args.target)
        _, conv = find_conv(model, args.layer)
        conv.to_empty(device="cpu")
        conv.reset_parameters()
        title = f"{name}: random initialisation, not trained (PyTorch's default for Conv2d)"
    path = plot_kernels(model, args.out, layer=args.layer, title=title)
    print(f"wrote {path}")
    return 0
