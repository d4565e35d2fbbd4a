"""`evaluate()`: top-1, top-5, per-class accuracy and the confusion matrix of a run or model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from convscope.train.batches import Batches, score
from convscope.train.metrics import per_class_accuracy
from convscope.train.runtime import Runtime

SPLITS = ("train", "val", "test")


def _model_and_config(run_or_model: Any, config: dict | None, device: torch.device) -> tuple[nn.Module, dict]:
    if isinstance(run_or_model, nn.Module):
        return run_or_model.to(device), dict(config or {})
    from convscope.runs import load

    model, saved = load(run_or_model, device=device)
    return model, dict(saved, **(config or {}))


def evaluate(run_or_model: str | Path | nn.Module, data: Any = None, *, split: str = "test",
             config: dict | None = None, device: str | None = None, batch_size: int = 1000,
             data_root: str | None = None, download: bool = False) -> dict[str, Any]:
    """Score a run folder (or a model) on a split of `data` (a name or a Dataset; default: the run's).

    Returns {"top1", "top5", "per_class": {class: accuracy}, "n", "confusion": [[...]],
    "loss", "split", "dataset", "classes"}. The images are normalised with the
    run's own mean/std (config["normalization"]), falling back to the dataset's.
    """
    from convscope.train.api import load_dataset

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, cfg = _model_and_config(run_or_model, config, dev)
    if data is None:
        if "dataset" not in cfg:
            raise ValueError("which data? pass data= (the model has no run config naming its dataset)")
        data = cfg["dataset"]
    dataset = load_dataset(data, root=data_root, download=download, image_size=cfg.get("image_size"))
    part = getattr(dataset, split, None)
    if part is None or len(part.labels) == 0:
        raise ValueError(f"{dataset.name} has no {split} split; try --split val")
    classes = [str(c) for c in dataset.classes]
    if cfg.get("classes") and len(cfg["classes"]) != len(classes):
        raise ValueError(f"the run knows {len(cfg['classes'])} classes but {dataset.name} has {len(classes)}; "
                         f"evaluate it on the data it was trained for ({cfg.get('dataset')})")
    norm = cfg.get("normalization") or {"mean": dataset.mean, "std": dataset.std}
    batches = Batches(part, norm["mean"], norm["std"], dev)
    res = score(model, batches, Runtime(device=dev), batch_size=batch_size, ks=(1, 5), confusion=True,
                num_classes=len(classes))
    conf = res.pop("confusion")
    return {"top1": res["top1"], "top5": res["top5"], "per_class": per_class_accuracy(conf, classes),
            "n": res["n"], "confusion": conf.tolist(), "loss": res["loss"], "split": split,
            "dataset": dataset.name, "classes": classes}
