"""The layer-transferability experiment of Yosinski, Clune, Bengio & Lipson (2014),
"How transferable are features in deep neural networks?", on data that fits here.

The design (section 3 and Figure 1 of the paper):
  * split the classes into halves A and B at random (seeded);
  * baseA and baseB: the network trained from scratch on A and on B;
  * for n = 1 .. L (L = the network's stages, `convscope.transfer.stages`):
      BnB   first n stages copied from baseB and frozen, the rest reinitialised, trained on B
      BnB+  the same, but the copied stages are fine-tuned too
      AnB   first n stages copied from baseA and frozen, the rest reinitialised, trained on B
      AnB+  the same, fine-tuned
    every treatment gets a new head and the same training as the bases (a
    single one-cycle run at `lr`, the copied stages at the same rate, as in the paper).
  * score every network on B's test split (the paper used the validation set).

Repeat r draws its own A/B split (seed + r), like the paper's two random splits,
and its own initialisations. Every cell is a JSON file in out/cells/, so an
interrupted run resumes at the first unfinished cell; the bases' run folders
are kept in out/runs/ (the treatments copy from them).
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from convscope.runs import RunDir
from convscope.train.api import full_kwargs, run_config_for
from convscope.transfer.finetune import fit_plan, prepare
from convscope.transfer.grid import Grid
from convscope.transfer.small_data import test_top1, train_scratch
from convscope.transfer.sources import from_run
from convscope.transfer.subsets import class_subset

TREATMENTS = ("BnB", "BnB+", "AnB", "AnB+")


def split_classes(n_classes: int, seed: int) -> tuple[list[int], list[int]]:
    """Halves A and B of the class indices, drawn at random (sorted within each half)."""
    perm = np.random.default_rng(seed).permutation(n_classes)
    half = n_classes // 2
    return sorted(int(c) for c in perm[:half]), sorted(int(c) for c in perm[half:2 * half])


def halves(full: Any, seed: int, subset: int | None) -> tuple[Any, Any, dict]:
    """Datasets A and B, both normalised with the whole dataset's statistics (so that no
    network sees differently scaled inputs), with at most `subset` train images per class."""
    a, b = split_classes(len(full.classes), seed)
    norm = dict(mean=tuple(full.mean), std=tuple(full.std))
    da = dataclasses.replace(class_subset(full, a, name=f"{full.name}-A", per_class=subset, seed=seed), **norm)
    db = dataclasses.replace(class_subset(full, b, name=f"{full.name}-B", per_class=subset, seed=seed), **norm)
    return da, db, {"A": [full.classes[i] for i in a], "B": [full.classes[i] for i in b]}


def cell_names(layers: int, repeats: int) -> list[str]:
    names = []
    for r in range(repeats):
        names += [f"r{r}-baseA", f"r{r}-baseB"]
        names += [f"r{r}-{t}-n{n}" for n in range(1, layers + 1) for t in TREATMENTS]
    return names


def _layers(model: str, kwargs: dict, dataset: Any) -> list[str]:
    from convscope.models import create_model
    from convscope.transfer.stages import stages

    net = create_model(model, **full_kwargs(kwargs, dataset))
    return [s.name for s in stages(net)]


def transferability(data: Any = "fashion-mnist", out: str | Path = "runs/transferability", *,
                    model: str = "lenet5", model_kwargs: dict | None = None, epochs: int = 4,
                    subset: int | None = 2000, repeats: int = 1, seed: int = 0, lr: float = 0.05,
                    batch_size: int = 128, progress: bool = True, runtime: Any = None,
                    keep_runs: bool = False) -> dict[str, Any]:
    """Run (or resume) the whole grid; returns the table and writes out/results.json and out/figure2.png."""
    from convscope.train.api import load_dataset
    from convscope.runs import atomic_write_json

    out, kwargs = Path(out), dict(model_kwargs or {})
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"--repeats {repeats!r} is not valid: use 1 or more")
    if subset is not None and subset < 1:
        raise ValueError(f"--subset {subset!r} is not valid: give training images per class (1 or more)")
    full = load_dataset(data)
    if len(full.classes) < 4:
        raise ValueError(f"{full.name} has {len(full.classes)} classes; the A/B split needs at least 4")
    layers = _layers(model, kwargs, full)
    settings = {"data": full.name, "model": model, "model_kwargs": kwargs, "epochs": epochs, "subset": subset,
                "seed": seed, "lr": lr, "batch_size": batch_size}
    grid = Grid(out, cell_names(len(layers), repeats), progress=progress, settings=settings)
    train_kw = dict(epochs=epochs, lr=lr, batch_size=batch_size, runtime=runtime, nesterov=True)
    splits: dict[int, tuple] = {}
    for cell in grid.todo():
        r = int(cell.split("-")[0][1:])
        if r not in splits:
            splits[r] = halves(full, seed + r, subset)
        da, db, names = splits[r]
        grid.done(cell, _run_cell(cell, out, da, db, model, kwargs, len(layers), seed + r, train_kw, keep_runs)
                  | {"classes": names})
    result = summarize(grid.results, layers, repeats, settings)
    atomic_write_json(out / "results.json", result)
    from convscope.transfer.plots import plot_transferability

    plot_transferability(result, out / "figure2.png")
    return result


def _base(out: Path, r_seed: int, which: str, name: str, kwargs: dict, ds: Any, train_kw: dict) -> Path:
    """baseA/baseB of a repeat: trained once, kept in out/runs/ (a cell's JSON may outlive a deleted run)."""
    run = out / "runs" / f"r{r_seed}-base{which}"
    rd = RunDir(run)
    if not rd.weights_path.is_file() or not rd.exists():
        shutil.rmtree(run, ignore_errors=True)
        train_scratch(name, kwargs, ds, run, seed=r_seed, **train_kw)
    return run


def _run_cell(cell: str, out: Path, da: Any, db: Any, name: str, kwargs: dict, n_layers: int, r_seed: int,
              train_kw: dict, keep_runs: bool) -> dict[str, Any]:
    parts = cell.split("-")
    if parts[1] in ("baseA", "baseB"):
        which = parts[1][-1]
        ds = da if which == "A" else db
        run = _base(out, r_seed, which, name, kwargs, ds, train_kw)
        return {"kind": parts[1], "test_top1": test_top1(from_run(run).model, ds), "test_n": len(ds.test)}
    treatment, n = parts[1], int(parts[2][1:])
    src_data = da if treatment.startswith("A") else db
    source = from_run(_base(out, r_seed, treatment[0], name, kwargs, src_data, train_kw))
    frozen = not treatment.endswith("+")
    plan = prepare(source, db, freeze=n if frozen else 0, reinit=n_layers - n, seed=r_seed * 1000 + n)
    run = out / "runs" / cell
    fit_plan(plan, db, run, run_config=run_config_for(name, kwargs, db), freeze_epochs=0, body_lr_mult=1.0,
             progress=False, seed=r_seed, **train_kw)
    top1 = test_top1(plan.model, db)
    if not keep_runs:
        shutil.rmtree(run, ignore_errors=True)
    return {"kind": treatment, "n": n, "test_top1": top1, "test_n": len(db.test),
            "copied": [s.name for s in plan.stages[:n]], "frozen": [s.name for s in plan.frozen]}


def summarize(results: dict[str, dict], layers: list[str], repeats: int, settings: dict) -> dict[str, Any]:
    """The JSON table: one row per (treatment, n) with every repeat's value and their mean."""
    def values(key: str) -> list[float]:
        return [results[f"r{r}-{key}"]["test_top1"] for r in range(repeats)]

    base = {b: {"values": values(b), "mean": float(np.mean(values(b)))} for b in ("baseA", "baseB")}
    base_b = np.array(values("baseB"))
    # "delta": minus the same split's baseB, so that easy and hard splits can be averaged
    table = [{"treatment": t, "n": n, "layer": layers[n - 1], "values": values(f"{t}-n{n}"),
              "mean": float(np.mean(values(f"{t}-n{n}"))),
              "delta": float(np.mean(np.array(values(f"{t}-n{n}")) - base_b))}
             for t in TREATMENTS for n in range(1, len(layers) + 1)]
    splits = [results[f"r{r}-baseA"].get("classes") for r in range(repeats)]
    seconds = sum(c.get("seconds", 0.0) for c in results.values())
    return {"data": settings["data"], "model": settings["model"], "layers": layers, "settings": settings,
            "splits": splits, "base": base, "table": table, "cell_seconds": round(seconds, 1)}


def format_table(result: dict[str, Any]) -> str:
    """Top-1 (%) on B's test split: a row per treatment, a column per n."""
    ns = range(1, len(result["layers"]) + 1)
    head = f"{'':8}" + "".join(f"{f'n={n} ({name})':>16}" for n, name in zip(ns, result["layers"]))
    base = result["base"]
    rows = [f"baseB   {100 * base['baseB']['mean']:>8.2f}   (baseA {100 * base['baseA']['mean']:.2f})", head]
    for key, fmt in (("mean", "{:>16.2f}"), ("delta", "{:>+16.2f}")):
        if key == "delta":
            rows.append("minus the same split's baseB (percentage points):")
        for t in TREATMENTS:
            cells = {r["n"]: r[key] for r in result["table"] if r["treatment"] == t}
            rows.append(f"{t:8}" + "".join(fmt.format(100 * cells[n]) for n in ns))
    return "\n".join(rows)
