""""You may not need a large dataset": fine-tune a source run vs train from scratch on k images per class.

For every k in `shots`, the target's training split is cut to k images per
class (seeded, stratified), and two models get the same budget:

    finetune   the source run, fine-tuned (fastai's schedule: `freeze_epochs` of
               head only, then `epochs` of everything at discriminative rates)
    scratch    the same architecture from random weights, one-cycle over
               `freeze_epochs + epochs` epochs at the same peak `lr`

Same epochs, same batches: a small train split is repeated to at least
`min_epoch` images per epoch, so k = 10 still makes several optimizer steps
per epoch. Both are scored on the whole test split of the target.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from convscope.train.api import build_model, full_kwargs, run_config_for
from convscope.transfer.finetune import fit_plan, prepare, with_source_normalization
from convscope.transfer.grid import Grid
from convscope.transfer.sources import Source, load_source
from convscope.transfer.subsets import few_shot, per_class_counts, repeat_train


def test_top1(model: torch.nn.Module, dataset: Any) -> float:
    from convscope.train import evaluate

    device = next(model.parameters()).device  # where fit left it
    return float(evaluate(model, dataset, split="test", device=str(device))["top1"])


def train_scratch(name: str, kwargs: dict, dataset: Any, out: Path, *, epochs: int, lr: float, seed: int,
                  batch_size: int, runtime: Any = None, **cfg: Any) -> torch.nn.Module:
    """A new `name` model trained on `dataset` with fit (one-cycle at `lr`); returns the model."""
    from convscope.train import fit, make_config

    model, _ = build_model(name, full_kwargs(kwargs, dataset), seed)
    config = make_config(None, epochs=epochs, lr=lr, seed=seed, batch_size=batch_size, **cfg)
    fit(model, dataset, config, out, run_config=run_config_for(name, kwargs, dataset), progress=False,
        runtime=runtime)
    return model


def _shots(shots: Sequence[int]) -> list[int]:
    out = sorted({int(k) for k in shots})
    if not out or out[0] < 1:
        raise ValueError(f"--shots must be positive numbers of images per class, e.g. 10,100,1000; got {list(shots)}")
    return out


def transfer_vs_scratch(source: str | Path | Source, data: Any, out: str | Path, *,
                        shots: Sequence[int] = (10, 100, 1000), epochs: int = 3, freeze_epochs: int = 1,
                        lr: float = 0.05, body_lr_mult: float = 0.1,
                        batch_size: int = 64, min_epoch: int = 1024, seed: int = 0, repeats: int = 1,
                        val_per_class: int = 100, progress: bool = True, runtime: Any = None,
                        keep_runs: bool = False) -> dict[str, Any]:
    """The comparison for every k in `shots`; returns {"rows": [...], ...} and writes out/results.json.

    Repeat r uses seed + r for the k-shot cut, the new weights and the batch order.
    """
    from convscope.train.api import load_dataset
    from convscope.runs import atomic_write_json

    out = Path(out)
    src = load_source(source)
    full = load_dataset(data)
    ks = _shots(shots)
    settings = {"source": str(src.origin), "data": getattr(full, "name", str(data)), "epochs": epochs,
                "freeze_epochs": freeze_epochs, "lr": lr, "body_lr_mult": body_lr_mult, "batch_size": batch_size,
                "min_epoch": min_epoch, "seed": seed, "val_per_class": val_per_class}
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"--repeats {repeats!r} is not valid: use 1 or more")
    names = [f"k{k}-{m}-r{r}" for r in range(repeats) for k in ks for m in ("finetune", "scratch")]
    grid = Grid(out, names, progress=progress, unit="run", settings=settings)
    budget = dict(epochs=epochs, freeze_epochs=freeze_epochs, lr=lr, body_lr_mult=body_lr_mult,
                  batch_size=batch_size, runtime=runtime)
    for cell in grid.todo():
        k_text, method, r_text = cell.split("-")
        k, r = int(k_text[1:]), int(r_text[1:])
        cut = few_shot(full, k, seed=seed + r, val_per_class=val_per_class)
        reps = max(1, math.ceil(min_epoch / len(cut.train)))
        run_dir = out / "runs" / cell
        top1, n = _train_one(method, src, repeat_train(cut, reps), run_dir, seed=seed + r, **budget)
        used = min(per_class_counts(cut.train).values())
        grid.done(cell, {"k": k, "method": method, "repeat": r, "per_class_used": used,
                         "train_images": len(cut.train), "repeats_per_epoch": reps, "test_top1": top1, "test_n": n})
        if not keep_runs:
            shutil.rmtree(run_dir, ignore_errors=True)
    rows = [_row(k, repeats, grid.results) for k in ks]
    result = {"source": src.describe(), "data": getattr(full, "name", str(data)), "rows": rows,
              "settings": settings}
    atomic_write_json(out / "results.json", result)
    from convscope.transfer.plots import plot_shots

    plot_shots(result, out / "accuracy_vs_shots.png")
    return result


def _train_one(method: str, src: Source, ds: Any, run_dir: Path, *, epochs: int, freeze_epochs: int, lr: float,
               body_lr_mult: float, batch_size: int, seed: int, runtime: Any) -> tuple[float, int]:
    """One cell: fine-tune the source or train from scratch on `ds`; (test top-1, test images)."""
    bs = min(batch_size, len(ds.train))
    if method == "finetune":
        ds = with_source_normalization(ds, src)
        plan = prepare(src, ds, seed=seed)
        fit_plan(plan, ds, run_dir, run_config=run_config_for(src.name, src.kwargs, ds), epochs=epochs,
                 freeze_epochs=freeze_epochs, lr=lr, body_lr_mult=body_lr_mult, batch_size=bs, seed=seed,
                 progress=False, runtime=runtime, nesterov=True)
        model = plan.model
    else:
        model = train_scratch(src.name, src.kwargs, ds, run_dir, epochs=epochs + freeze_epochs, lr=lr, seed=seed,
                              batch_size=bs, runtime=runtime, nesterov=True)
    return test_top1(model, ds), len(ds.test)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    return m, (sum((v - m) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5


def _row(k: int, repeats: int, results: dict[str, dict]) -> dict[str, Any]:
    ft = [results[f"k{k}-finetune-r{r}"] for r in range(repeats)]
    sc = [results[f"k{k}-scratch-r{r}"] for r in range(repeats)]
    (f_mean, f_sd), (s_mean, s_sd) = _mean_sd([c["test_top1"] for c in ft]), _mean_sd([c["test_top1"] for c in sc])
    return {"k": k, "per_class_used": ft[0]["per_class_used"], "finetune_top1": f_mean, "scratch_top1": s_mean,
            "gain": f_mean - s_mean, "finetune_sd": f_sd, "scratch_sd": s_sd, "repeats": repeats,
            "finetune_values": [c["test_top1"] for c in ft], "scratch_values": [c["test_top1"] for c in sc],
            "finetune_seconds": sum(c["seconds"] for c in ft) / repeats,
            "scratch_seconds": sum(c["seconds"] for c in sc) / repeats}


def format_table(result: dict[str, Any]) -> str:
    lines = [f"source: {result['source']}  ->  {result['data']}",
             f"{'k/class':>8} {'used':>6} {'fine-tuned':>16} {'scratch':>16} {'gain':>7}"]
    for r in result["rows"]:
        ft, sc = f"{100 * r['finetune_top1']:>8.2f} +- {100 * r['finetune_sd']:4.2f}", \
            f"{100 * r['scratch_top1']:>8.2f} +- {100 * r['scratch_sd']:4.2f}"
        lines.append(f"{r['k']:>8} {r['per_class_used']:>6} {ft} {sc} {100 * r['gain']:>+6.2f}")
    lines.append(f"(test top-1 in %, mean +- sd over {result['rows'][0]['repeats']} repeat(s))")
    return "\n".join(lines)
