"""convscope finetune: start from a trained run (or torchvision's weights) and train on new data."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from convscope.commands._common import add_data_options, add_optim_options, add_output_options, add_runtime_options

NAME = "finetune"
HELP = "fine-tune a run or torchvision:NAME on new data (freeze, reinit, new head)"
ORDER = 80
DESCRIPTION = """Fine-tune a trained model on new data and write an ordinary run folder
(evaluate, predict and serve read it).

The default schedule is fastai's fine_tune: --freeze-epochs (1) with only the new
head trained, then --epochs with everything not frozen, at --lr / 2, the body at
discriminative rates (first stage: lr/2 x --body-lr-mult, rising to the head's).
--freeze N keeps the first N stages frozen the whole run (batch-norm statistics
included); --reinit N gives the last N stages fresh weights. Stages: lenet5
conv1 conv2 fc1 fc2; ResNets stem layer1..layer4; VGG/AlexNet conv blocks, fc6, fc7.
A 3-channel first layer on 1-channel data has its filters summed (docs/transfer.md).

examples:
  convscope finetune --from runs/fashion --data mnist --freeze 1 --out runs/fashion-to-mnist
  convscope finetune --from runs/fashion --data mnist --freeze all --epochs 5 --out runs/probe
  convscope finetune --from torchvision:resnet18 --data cifar10 --image-size 64 --out runs/r18"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, metavar="RUN|torchvision:NAME",
                   help="a run folder, or torchvision:NAME[:WEIGHTS] (fetched once into $TORCH_HOME)")
    p.add_argument("--out", required=True, help="the new run folder")
    p.add_argument("--freeze", default="0", metavar="N|all",
                   help="stages frozen for the whole run, from the input (default 0)")
    p.add_argument("--reinit", type=int, default=0, metavar="N", help="last N stages get fresh weights")
    p.add_argument("--keep-head", action="store_true",
                   help="keep the source's output layer (same classes) instead of a new head")
    p.add_argument("--freeze-epochs", type=int, default=1, help="head-only epochs first (default 1; 0 skips)")
    p.add_argument("--body-lr-mult", type=float, default=0.1,
                   help="first stage's lr as a fraction of the head's in phase 2 (default 0.1)")
    add_data_options(p, required=True, default_help="; torchvision sources: --image-size defaults to their crop")
    add_optim_options(p, epochs=3, epochs_help="epochs after unfreezing (default 3)", lr=0.05,
                      lr_help="the head's peak learning rate (default 0.05)", batch_size=128, optimizer="sgd")
    add_runtime_options(p)
    add_output_options(p, json_help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from convscope.runs import RunDir
    from convscope.transfer import finetune

    extra = {k: getattr(args, k) for k in ("weight_decay", "augment") if getattr(args, k) is not None}
    out = finetune(args.source, args.data, Path(args.out), freeze=args.freeze, reinit=args.reinit,
                   keep_head=args.keep_head, epochs=args.epochs, freeze_epochs=args.freeze_epochs, lr=args.lr,
                   body_lr_mult=args.body_lr_mult, seed=args.seed, image_size=args.image_size,
                   data_root=args.data_root, download=args.download, overwrite=args.overwrite,
                   progress=not args.quiet and not args.json, device=args.device, threads=args.threads,
                   batch_size=args.batch_size, optimizer=args.optimizer, nesterov=True, **extra)
    run = RunDir(out)
    history, cfg = run.read_history(), run.read_config()["finetune"]
    final = history[-1]
    if args.json:
        print(json.dumps({"run": str(out), "epochs": len(history), "final": final,
                          "frozen": cfg["frozen"], "reinit": cfg["reinit"], "stages": cfg["stages"],
                          "input_adaptation": cfg["input_adaptation"]}))
    elif not args.quiet:
        frozen, reinit = ", ".join(cfg["frozen"]) or "none", ", ".join(cfg["reinit"]) or "none"
        print(f"done: fine-tuned {cfg['source']} for {len(history)} epochs (frozen: {frozen}; reinitialised: "
              f"{reinit}): val top-1 {100 * final['val_top1']:.2f}% -> {out}")
    return 0
