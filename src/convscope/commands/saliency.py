"""`convscope saliency`: which pixels drove a run's decision on one image."""
from __future__ import annotations

import argparse

NAME = "saliency"
HELP = "which pixels drove the decision: Grad-CAM or input gradients, overlaid on the image"
DESCRIPTION = """\
Explain a trained run's guess for one image with Captum:

  gradcam    Grad-CAM (Selvaraju et al. 2017): the last feature maps, weighted
             by the gradient of the winning class, upsampled to the image
  gradients  the absolute gradient of the winning class score w.r.t. each
             input pixel (Simonyan et al. 2014), largest over channels

Works on 1-channel digits and on RGB images alike.

examples:
  convscope saliency runs/mnist-lenet digit.png --out saliency.png
  convscope saliency runs/mnist-lenet digit.png --method gradients
"""
ORDER = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run folder written by `convscope train`")
    parser.add_argument("image", metavar="IMAGE", help="an image file (PNG, JPEG, ...)")
    parser.add_argument("--method", choices=("gradcam", "gradients"), default="gradcam", help="default gradcam")
    parser.add_argument("--layer", default=None, help="Grad-CAM's layer (default: the last with a spatial output)")
    parser.add_argument("--out", default="saliency.png", metavar="FILE.png", help="where to write (default saliency.png)")


def run(args: argparse.Namespace) -> int:
    from convscope.analysis.resolve import run_predictor
    from convscope.analysis.saliency import plot_saliency
    from convscope.capture import resolve

    p = run_predictor(args.run_dir, "saliency")
    if args.layer is not None:
        resolve(p.model, [args.layer])  # an unknown name: a clear error, with the close names
    x = p.prepare(args.image)
    path = plot_saliency(p.model, x, args.out, method=args.method, config=p.config, layer=args.layer,
                         title=f"{p.name} ({args.run_dir})")
    print(f"wrote {path}")
    return 0
