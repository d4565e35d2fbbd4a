"""`convscope saliency`: which pixels drove a run's decision on one image."""
from __future__ import annotations

import argparse

from convscope import limits

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
    parser.add_argument("image", type=limits.image_file, metavar="IMAGE", help="an image file (PNG, JPEG, ...)")
    parser.add_argument("--method", choices=("gradcam", "gradients"), default="gradcam", help="default gradcam")
    parser.add_argument("--layer", default=None, help="Grad-CAM's layer (default: the last with a spatial output)")
    parser.add_argument("--out", type=limits.out_file(".png"), default="saliency.png", metavar="FILE.png", help="where to write (default saliency.png)")


def run(args: argparse.Namespace) -> int:
    from convscope.analysis.resolve import run_predictor
    from convscope.analysis.saliency import plot_saliency
    from convscope.capture import resolve

    p = run_predictor(args.run_dir, "saliency")
    if args.layer is not None:
        resolve(p.model, [args.layer])  # an unknown name: a clear error, with the close names
    x = p.prepare(args.image)
    if args.layer is not None and args.method == "gradcam":
        _check_spatial(p, x, args.layer)
    path = plot_saliency(p.model, x, args.out, method=args.method, config=p.config, layer=args.layer,
                         title=f"{p.name} ({args.run_dir})")
    print(f"wrote {path}")
    return 0


def _check_spatial(p, x, layer: str) -> None:
    """Grad-CAM locates with a layer's feature maps: a layer without height and width
    (a fully connected one) is refused, naming the layers that have them."""
    from torch import nn

    from convscope.errors import UserError

    _, outs = p.capture(x, [layer])
    out = outs[layer]
    if getattr(out, "dim", lambda: 0)() == 4 and out.shape[-1] * out.shape[-2] > 1:
        return
    _, every = p.capture(x)
    modules = dict(p.model.named_modules())
    convs = [n for n, t in every.items() if isinstance(modules.get(n), nn.Conv2d) and t.dim() == 4]
    shape = "x".join(str(v) for v in getattr(out, "shape", ())[1:]) or "?"
    raise UserError(f"--layer {layer} gives {shape} values with no height and width to locate with (Grad-CAM needs "
                    f"feature maps); choose a conv layer: {', '.join(convs) or 'none found, use --method gradients'}")
