"""convscope evaluate: top-1, top-5, per-class accuracy, a confusion matrix and the errors of a run."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from convscope import limits

NAME = "evaluate"
HELP = "score a trained run: top-1, top-5, per-class accuracy, confusion matrix, top losses"
ORDER = 55
DESCRIPTION = """Score a run folder on a split of a dataset (default: the run's own dataset, test split).
Writes confusion-<data>-<split>.png and top-losses-<data>-<split>.png (the most
confident mistakes: image, truth, guess, probability) into the run folder (or --out),
and lists the most-confused pairs. --json adds "most_confused" and "misclassified"
(every wrong image of the split, highest loss first; "index" is its place in the split).

examples:
  convscope evaluate runs/demo
  convscope evaluate runs/demo --data mnist --split val --json
  convscope evaluate runs/demo --gallery errors.png --top-losses 25"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run folder written by `convscope train`")
    p.add_argument("--data", help="dataset name (default: the one the run was trained on)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--out", type=limits.out_dir, help="folder for the confusion-matrix PNG (default: the run folder)")
    p.add_argument("--gallery", metavar="FILE", help="where to write the top-losses PNG "
                   "(default: top-losses-<data>-<split>.png beside the confusion matrix)")
    p.add_argument("--top-losses", type=int, default=16, metavar="N", help="images in the gallery (default 16)")
    p.add_argument("--data-root", help="where the dataset files are")
    p.add_argument("--device", type=limits.device, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _safe(dataset: str) -> str:
    return str(dataset).replace(":", "-").replace("/", "-")


def _table(res: dict) -> str:
    lines = [f"{res['dataset']} {res['split']} ({res['n']} images): top-1 {100 * res['top1']:.2f}%  "
             f"top-5 {100 * res['top5']:.2f}%  loss {res['loss']:.4f}", "per class:"]
    width = max(len(c) for c in res["per_class"])
    for cls, acc in res["per_class"].items():
        lines.append(f"  {cls:<{width}}  " + ("   n/a" if acc is None else f"{100 * acc:6.2f}%"))
    wrong = len(res["misclassified"])
    lines.append(f"misclassified: {wrong} of {res['n']}" + ("; most confused (truth -> predicted: count):"
                                                             if res["most_confused"] else ""))
    for pair in res["most_confused"][:10]:
        lines.append(f"  {pair['truth']} -> {pair['predicted']}: {pair['count']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from convscope.train import evaluate
    from convscope.train.plots import plot_confusion

    if args.top_losses < 0:
        raise ValueError(f"--top-losses {args.top_losses} must be 0 or more")
    folder = Path(args.out) if args.out else Path(args.run)

    def beside(kind: str, dataset: str) -> Path:
        return folder / f"{kind}-{_safe(dataset)}-{args.split}.png"

    gallery = Path(args.gallery) if args.gallery else (lambda dataset: beside("top-losses", dataset))
    res = evaluate(args.run, args.data, split=args.split, device=args.device, data_root=args.data_root,
                   gallery=gallery, gallery_count=args.top_losses)
    png = beside("confusion", res["dataset"])
    try:
        plot_confusion(res["confusion"], res["classes"], png,
                       title=f"{Path(args.run).name} on {res['dataset']} {args.split}: top-1 {100 * res['top1']:.2f}%")
    except OSError as exc:
        raise ValueError(f"cannot write {png}: {exc.strerror or exc}; pass --out to a folder you can write") from None
    res["confusion_png"] = str(png)
    if args.json:
        print(json.dumps(res))
    else:
        print(_table(res))
        print(f"confusion matrix: {png}")
        print(f"top losses: {res['gallery_png']}")
    return 0

