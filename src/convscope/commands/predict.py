"""convscope predict: labels and probabilities for image files, with the run's own preprocessing."""
from __future__ import annotations

import argparse
import json

NAME = "predict"
HELP = "classify image files with a trained run (top-k labels and probabilities)"
ORDER = 60
DESCRIPTION = """Classify images with a run folder. Each image is prepared the way the run's
training data was (config.json "preprocessing": MNIST-style centring for digits,
a resize otherwise) and normalised with the run's mean and std.

examples:
  convscope predict runs/demo digit.png
  convscope predict runs/demo a.png b.jpg --top 3 --json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run folder written by `convscope train`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top", type=int, default=5, help="how many classes to list per image (default 5)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per image")


def predict_files(run: str, images: list[str], top: int) -> list[dict]:
    import torch

    from convscope.data.preprocess import prepare_image
    from convscope.train.batches import main_logits
    from convscope.train.checkpoint import load

    model, config = load(run)
    classes = config.get("classes") or [str(i) for i in range(10)]
    k = min(top, len(classes))
    xs = []
    for path in images:  # prepare all first: a bad file fails before any output
        try:
            xs.append(prepare_image(path, config))
        except FileNotFoundError:
            raise FileNotFoundError(f"image {path!r} does not exist") from None
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot use image {path!r}: {exc}") from None
    with torch.inference_mode():
        probs = torch.softmax(main_logits(model(torch.cat(xs))).float(), dim=1)  # (N, classes)
    p, idx = probs.topk(k, dim=1)
    return [{"image": path, "top": [{"index": int(i), "label": classes[int(i)], "probability": float(q)}
                                    for q, i in zip(p[n].tolist(), idx[n].tolist())]}
            for n, path in enumerate(images)]


def run(args: argparse.Namespace) -> int:
    from convscope.cli import UserError

    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    results = predict_files(args.run, args.images, args.top)
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        guesses = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in r["top"])
        print(f"{r['image']}: {guesses}")
    return 0
