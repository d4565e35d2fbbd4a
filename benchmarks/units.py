"""What a unit sees, timed: prints JSON.

    PYTHONPATH=src .venv/bin/python benchmarks/units.py [--run RUN] [--threads 2]

lenet5 on the 5,000 MNIST digits shipped offline (train + val + test):
top-9 patches for all 22 conv channels (conv1's 6 and conv2's 16, one pass
per layer; goal under 10 s), optimised images for those 22 channels (the
command's defaults: 256 steps, 4 random starts each; goal under 60 s), and
the orientation tuning of conv1, trained and random-init baseline (goal under
5 s). Without --run a lenet5 is trained first (mnist-fast, 3 epochs, not
timed) so the figures are for units that have learned something. Also prints
each channel's ratio of optimised to best-patch activation.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=None, help="a lenet5 run folder (default: train one, 3 epochs)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machines are shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from convscope.units.optimize import Settings, visualize
    from convscope.units.patches import top_patches
    from convscope.units.report import dataset_images
    from convscope.units.target import load_target
    from convscope.units.tuning import tune

    run = args.run
    if run is None:
        from convscope.train.api import train

        run = os.path.join(tempfile.mkdtemp(), "lenet")
        train(recipe="mnist-fast", epochs=3, out=run, progress=False, threads=args.threads)
    target = load_target(run)
    images = dataset_images(target, None)
    layers = target.conv_layers()
    t0 = time.perf_counter()
    hits = {layer: top_patches(target, images, layer, k=9) for layer in layers}
    t_patches = time.perf_counter() - t0
    t0 = time.perf_counter()
    ratios, harder, as_hard, channels = {}, 0, 0, 0
    for layer in layers:
        chans = list(range(target.channels(layer)))
        _, acts, _ = visualize(target, layer, chans, Settings())
        best = [hits[layer][c][0].activation for c in chans]
        ratios[layer] = [round(a / b, 3) if b > 0 else None for a, b in zip(acts, best)]
        harder += sum(a > b for a, b in zip(acts, best))
        as_hard += sum(a >= b - 1e-3 * abs(b) for a, b in zip(acts, best))
        channels += len(chans)
    t_opt = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained = tune(target, "conv1")
    base = tune(load_target(run, random_init=True), "conv1")
    t_tune = time.perf_counter() - t0
    print(json.dumps({
        "model": target.model_name, "images": int(images.shape[0]), "channels": channels,
        "threads": args.threads,
        "top9_patches_s": round(t_patches, 2), "top9_goal_s": 10,
        "optimized_s": round(t_opt, 2), "optimized_goal_s": 60, "optimize_settings": Settings().__dict__,
        "tuning_conv1_s": round(t_tune, 2), "tuning_goal_s": 5,
        "optimized_harder_than_best_patch": f"{harder} of {channels}",
        "optimized_at_least_as_hard_to_0.1pct": f"{as_hard} of {channels}",
        "ratio_optimized_to_best_patch": ratios,
        "median_osi": round(trained.median_osi, 3), "baseline_median_osi": round(base.median_osi, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
