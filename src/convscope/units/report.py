"""The work behind `convscope units` and `convscope tuning`: compute, draw, and return the JSON.

Top patches are taken over every image of the dataset, splits in the order
train, val, test (so `index` counts through them in that order), or over one
split with `split=`. Output files go into `out`: `units-<layer>.png` (the grid),
`units-<layer>-optimized.png` (the full optimised images) with
`method="optimize"`, `hierarchy.png` for `layer="all"`, `tuning-<layer>.png`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from convscope.errors import DataError, UserError
from convscope.units.patches import crop, parse_channels, patch_crops, top_patches
from convscope.units.target import Target

SPLITS = ("all", "train", "val", "test")


def check_out(out: str | Path) -> Path:
    """The output folder, created; a UserError when it cannot be written."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".convscope-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    return out


def dataset_images(target: Target, data: str | None, split: str = "all") -> torch.Tensor:
    """uint8 (N, C, H, W) images to rank: `data` (default: the run's own dataset), at the model's input size."""
    from convscope.data import get_dataset
    from convscope.train.api import split_of

    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    config = target.config or {}
    name = data or config.get("dataset")
    if not name:
        raise UserError(f"{target.name} is a model name, not a run: say which images to rank with --data "
                        "(mnist, fashion-mnist, cifar10, synthetic or folder:PATH)")
    c, h, w = target.input_size
    size = config.get("image_size") or (h if h != _native(name) else None)
    # the run's own dataset is split as the run was (a run trained on every digit has no test split)
    val_fraction, test_fraction = split_of(config) if name == config.get("dataset") else (None, None)
    try:
        ds = get_dataset(name, image_size=size, channels=c if name.startswith("folder:") else None,
                         val_fraction=0.1 if val_fraction is None else val_fraction, test_fraction=test_fraction)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(str(exc)) from None
    parts = [ds.train, ds.val, ds.test] if split == "all" else [ds.split(split)]
    if not any(len(p) for p in parts):
        raise UserError(f"{target.name} was trained without a {split} split of {name} (config.json \"split\"): "
                        "rank --split train or --split all, or pass another --data")
    images = torch.cat([p.images for p in parts if len(p)])
    if tuple(images.shape[1:]) != (c, h, w):
        raise DataError(f"{name} images are {'x'.join(map(str, images.shape[1:]))} but {target.model_name} "
                        f"takes {c}x{h}x{w}; choose a dataset that fits the model")
    return images


def _native(name: str) -> int | None:
    return {"mnist": 28, "fashion-mnist": 28, "cifar10": 32}.get(name.strip().lower())


def layers_for(target: Target, layer: str) -> list[str]:
    """["conv1"] for one layer, every convolution for "all"."""
    if layer == "all":
        convs = target.conv_layers()
        if not convs:
            raise UserError(f"{target.model_name} has no convolution layers")
        return convs
    return [target.check_layer(layer)]


def units_layer(target: Target, images: torch.Tensor, layer: str, out: Path, *, k: int = 9,
                method: str = "patches", channels: str | None = None, steps: int = 256,
                objective: str = "channel", restarts: int = 4,
                progress: Callable[[str, int, int], None] | None = None) -> tuple[dict[str, Any], dict]:
    """(the JSON of one layer, the pictures made: {"patches": {ch: crops}, "optimized": {ch: crop}, ...})."""
    from convscope.units.plots import mosaic, plot_patch_grid

    chans = parse_channels(channels, target.channels(layer))
    report = (lambda what: (lambda i, n: progress(what, i, n))) if progress else (lambda what: None)
    hits = top_patches(target, images, layer, k=k, channels=chans, progress=report(f"{layer} patches"))
    crops = patch_crops(target, images, layer, hits)
    result: dict[str, Any] = {"layer": layer, "method": method,
                              "channels": [{"channel": c, "top": [h.to_dict() for h in hs]} for c, hs in hits.items()]}
    pictures: dict[str, Any] = {"patches": crops}
    opt_crops = None
    if method == "optimize":
        from convscope.units.optimize import Settings, visualize

        order = list(hits)
        settings = Settings(steps=steps, objective=objective, restarts=restarts)
        imgs, acts, where = visualize(target, layer, order, settings, progress=report(f"{layer} optimise"))
        opt_crops = {c: crop(target, imgs[i], layer, *where[i]) for i, c in enumerate(order)}
        pictures["optimized"] = opt_crops
        pictures["optimized_full"] = {c: imgs[i].numpy() for i, c in enumerate(order)}
        for entry, act, pos in zip(result["channels"], acts, where):
            best = entry["top"][0]["activation"] if entry["top"] else float("nan")
            entry["optimized_activation"] = act
            entry["best_patch_activation"] = best
            entry["optimized_position"] = {"y": pos[0], "x": pos[1]}
            entry["ratio"] = act / best if best > 0 else None
            entry["drives_harder"] = bool(act > best)
        full = [[pictures["optimized_full"][c]] for c in order[:64]]
        _write_png(out / f"units-{_safe(layer)}-optimized.png", mosaic(full))
        result["optimized_png"] = str(out / f"units-{_safe(layer)}-optimized.png")
    title = f"{target.model_name}: what the units of {layer} see (receptive field {max(target.fields[layer].r)} px)"
    path = plot_patch_grid(crops, out / f"units-{_safe(layer)}.png", title=title, optimized=opt_crops)
    result["png"] = str(path)
    return result, pictures


def _safe(layer: str) -> str:
    return layer.replace("/", "_")


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import io

    from PIL import Image

    from convscope.runs import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def units(target: Target, layer: str, out: str | Path, *, k: int = 9, method: str = "patches",
          data: str | None = None, split: str = "all", channels: str | None = None, steps: int = 256,
          objective: str = "channel", restarts: int = 4, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """`convscope units`: one layer's JSON, or {"layers": [...], "hierarchy_png"} for layer="all"."""
    if method not in ("patches", "optimize"):
        raise UserError(f"unknown --method {method!r}: choose patches or optimize")
    if k < 1:
        raise UserError(f"--top must be at least 1, got {k}")
    names = layers_for(target, layer)
    out = check_out(out)
    images = dataset_images(target, data, split)
    start = time.perf_counter()
    results, pictures = [], []
    for name in names:
        r, p = units_layer(target, images, name, out, k=k, method=method, channels=channels, steps=steps,
                           objective=objective, restarts=restarts, progress=progress)
        results.append(r)
        pictures.append(p)
    if layer != "all":
        results[0]["seconds"] = round(time.perf_counter() - start, 3)
        return results[0]
    from convscope.units.hierarchy import hierarchy_rows
    from convscope.units.plots import plot_hierarchy

    rows = hierarchy_rows(names, results, pictures)
    path = plot_hierarchy(rows, out / "hierarchy.png", title=f"{target.model_name}: from edges to parts, layer by layer")
    return {"layers": results, "method": method, "hierarchy_png": str(path),
            "seconds": round(time.perf_counter() - start, 3)}


def tuning(target: Target, baseline: Target, layer: str, out: str | Path) -> dict[str, Any]:
    """`convscope tuning`: tuning of `layer` in the trained target and in its random-init baseline."""
    from convscope.units.plots import plot_tuning
    from convscope.units.tuning import background_of, tune

    layer = target.check_layer(layer)
    out = check_out(out)
    start = time.perf_counter()
    bg = background_of(target)
    trained = tune(target, layer, background=bg)
    base = tune(baseline, layer, background=bg)
    labels = ("trained", "random init") if target.is_run else ("this model", "random init")
    path = plot_tuning([trained, base], out / f"tuning-{_safe(layer)}.png", labels=labels,
                       title=f"{target.model_name} {layer}: orientation tuning of the centre unit, per channel")
    med, bmed = trained.median_osi, base.median_osi
    return {"layer": layer, "units": trained.units(), "median_osi": med, "baseline_median_osi": bmed,
            "more_selective": bool(med > bmed), "orientations": [float(a) for a in trained.orientations],
            "unit": {"y": trained.unit[0], "x": trained.unit[1]}, "background": bg,
            "osi": "vector sum: |sum R exp(2i theta)| / sum R = 1 - circular variance on doubled angles",
            "png": str(path), "seconds": round(time.perf_counter() - start, 3)}


def tuning_sentence(result: dict[str, Any], seed: int, *, trained: bool = True) -> str:
    med, bmed = result["median_osi"], result["baseline_median_osi"]
    if not trained:
        return (f"{result['layer']}: median OSI {med:.2f}; a model name has random weights (seed {seed}), "
                "so it is its own baseline: train a run to compare")
    verdict = "more" if med > bmed else ("no more" if med == bmed else "less")
    return (f"{result['layer']}: median OSI {med:.2f} trained vs {bmed:.2f} at random initialisation (seed {seed}): "
            f"the trained units are {verdict} orientation-selective than the untrained ones")
