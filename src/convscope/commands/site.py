"""`convscope site`: the explorer as a folder of static files that runs the network in the browser."""
from __future__ import annotations

import argparse
import json

NAME = "site"
HELP = "build a static explorer of a run that runs entirely in the browser (ONNX Runtime Web)"
ORDER = 76
DESCRIPTION = """\
Write DIR/index.html and everything it loads, all inside DIR: the explorer
page, the run's network as ONNX with every shown layer as an output, its
config and classes, and onnxruntime-web's JavaScript and WebAssembly (npm,
pinned). Drawing, preprocessing, the guesses and every layer then run in the
visitor's browser: after loading, no request leaves the page, so any static
host serves a whole class.

  convscope site runs/demo --out site
  python -m http.server -d site 8001      # then open http://127.0.0.1:8001

onnxruntime-web comes from scripts/bootstrap.sh (which vendors it with npm into
.cache/), $CONVSCOPE_ORT_WEB, or an `npm install` into ~/.cache/convscope on first
use. Without Node.js and npm this command cannot build a site; `convscope serve`
still serves the same explorer.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run folder written by `convscope train`")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write (new, empty, or a site built before)")
    parser.add_argument("--json", action="store_true", help="print what was written as JSON")


def run(args: argparse.Namespace) -> int:
    from convscope.export.site import build_site, check_site_dir

    check_site_dir(args.out)
    info = build_site(args.run, args.out)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"wrote {info['out']}/: {info['files']} files, {info['bytes'] / 1e6:.1f} MB "
          f"(model.onnx {info['onnx_bytes'] / 1e6:.2f} MB, onnxruntime-web {info['ort_web']}) in {info['seconds']:.1f} s")
    print(f"check: onnxruntime vs torch, every layer: max abs diff {info['check_max_abs_diff']:.2e}")
    cam = info["gradcam"]
    print(f"Grad-CAM: in the browser, at layer {cam['layer']}" if "layer" in cam else f"Grad-CAM: {cam['unavailable']}")
    print(f"serve it with any static server, e.g.  python -m http.server -d {info['out']} 8001")
    return 0
