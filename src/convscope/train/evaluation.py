"""`evaluate()`: top-1, top-5, per-class accuracy, the confusion matrix and the errors of a run or model.

Error analysis in the manner of fastai's `ClassificationInterpretation`:
`most_confused` lists the (truth, predicted) pairs off the diagonal of the
confusion matrix, commonest first; `misclassified` lists every wrong
prediction, the one with the highest loss (the most confident mistake)
first, which is also the order of the top-losses gallery."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import torch.nn.functional as F

from convscope.train.batches import Batches, main_logits
from convscope.train.metrics import confusion_matrix, per_class_accuracy, topk_correct
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
             data_root: str | None = None, download: bool = False,
             gallery: str | Path | Callable[[str], str | Path] | None = None,
             gallery_count: int = 16) -> dict[str, Any]:
    """Score a run folder (or a model) on a split of `data` (a name or a Dataset; default: the run's).

    Returns {"top1", "top5", "per_class": {class: accuracy}, "n", "confusion": [[...]],
    "loss", "split", "dataset", "classes", "most_confused": [{"truth", "predicted", "count"}],
    "misclassified": [{"index", "truth", "predicted", "probability", "truth_probability", "loss"}]}
    (index: the image's position in the split; probability: of the predicted class).
    With `gallery` (a PNG path, or a function of the dataset's name giving one) the
    `gallery_count` top losses are drawn there (its path is "gallery_png").
    The images are normalised with the run's own mean/std (config["normalization"]),
    falling back to the dataset's.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, cfg = _model_and_config(run_or_model, config, dev)
    if data is None:
        if "dataset" not in cfg:
            raise ValueError("which data? pass data= (the model has no run config naming its dataset)")
        data = cfg["dataset"]
    from convscope.train.api import run_dataset

    dataset = run_dataset(cfg, data, root=data_root, download=download)  # split as the run was
    part = getattr(dataset, split, None)
    if part is None or len(part.labels) == 0:
        raise _no_split(run_or_model, dataset, split, cfg)
    classes = [str(c) for c in dataset.classes]
    if cfg.get("classes") and len(cfg["classes"]) != len(classes):
        raise ValueError(f"the run knows {len(cfg['classes'])} classes but {dataset.name} has {len(classes)}; "
                         f"evaluate it on the data it was trained for ({cfg.get('dataset')})")
    norm = cfg.get("normalization") or {"mean": dataset.mean, "std": dataset.std}
    res = dict(_score(model, Batches(part, norm["mean"], norm["std"], dev), classes, batch_size),
               split=split, dataset=dataset.name, classes=classes)
    if gallery is not None:
        from convscope.train.gallery import plot_top_losses

        gallery = gallery(dataset.name) if callable(gallery) else gallery
        try:
            plot_top_losses(part.images, res["misclassified"], gallery, count=gallery_count,
                            title=f"top losses on {dataset.name} {split}: truth, guess (probability)")
        except OSError as exc:
            raise ValueError(f"cannot write {gallery}: {exc.strerror or exc}; pass --gallery a file "
                             f"in a folder you can write") from None
        res["gallery_png"] = str(gallery)
    return res


def _no_split(run: Any, dataset: Any, split: str, cfg: dict) -> Exception:
    """The one-line error for an empty split: why it is empty, and what to score instead."""
    from convscope.errors import DataError

    held = [s for s in ("test", "val") if s != split and len(getattr(dataset, s).labels)]
    hint = (f"use --split {held[0]}" if held else
            "score it on images it never saw with --data (e.g. --data mnist --download: MNIST's 10,000 test digits)")
    if (cfg.get("split") or {}).get(f"{split}_fraction") == 0 and dataset.name == cfg.get("dataset"):
        where = run if isinstance(run, (str, Path)) else "the run"
        return DataError(f"{where} was trained with --{split}-fraction 0: its {split} share went into training, "
                         f"so {dataset.name} has no {split} split here; {hint}")
    return DataError(f"{dataset.name} has no {split} split; {hint}")


def _score(model: nn.Module, batches: Batches, classes: list[str], batch_size: int) -> dict[str, Any]:
    logits = predict_logits(model, batches, Runtime(device=batches.labels.device), batch_size=batch_size)
    labels = batches.labels.cpu()
    n = len(labels)
    hits = topk_correct(logits, labels, (1, 5)).tolist()
    conf = confusion_matrix(logits.argmax(1), labels, len(classes))
    return {"top1": hits[0] / max(n, 1), "top5": hits[1] / max(n, 1),
            "per_class": per_class_accuracy(conf, classes), "n": n, "confusion": conf.tolist(),
            "loss": F.cross_entropy(logits, labels).item() if n else 0.0,
            "most_confused": most_confused(conf, classes), "misclassified": misclassified(logits, labels, classes)}


@torch.inference_mode()
def predict_logits(model: nn.Module, batches: Batches, rt: Runtime, *, batch_size: int = 1000) -> torch.Tensor:
    """(N, K) float32 logits of a whole split, on the CPU, in the split's order (BN in eval mode)."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(batches), batch_size):
        x, _ = batches.get(torch.arange(i, min(i + batch_size, len(batches)), device=batches.labels.device))
        with torch.autocast(rt.device.type, dtype=torch.bfloat16, enabled=rt.amp):
            out.append(main_logits(model(x)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def most_confused(confusion: torch.Tensor | list, classes: list[str], min_count: int = 1) -> list[dict[str, Any]]:
    """Off-diagonal cells of the confusion matrix (row = truth) with at least `min_count`
    images, commonest first; ties in the order of (truth, predicted) class index."""
    m = torch.as_tensor(confusion)
    pairs = [(int(m[t, p]), t, p) for t in range(m.shape[0]) for p in range(m.shape[1])
             if t != p and int(m[t, p]) >= min_count]
    pairs.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"truth": classes[t], "predicted": classes[p], "count": c} for c, t, p in pairs]


def misclassified(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> list[dict[str, Any]]:
    """Every wrong top-1 prediction, highest cross-entropy loss first (the top losses)."""
    if len(labels) == 0:
        return []
    probs = logits.softmax(1)
    pred = logits.argmax(1)
    loss = F.cross_entropy(logits, labels, reduction="none")
    wrong = (pred != labels).nonzero().flatten()
    order = wrong[torch.argsort(loss[wrong], descending=True, stable=True)]
    return [{"index": int(i), "truth": classes[int(labels[i])], "predicted": classes[int(pred[i])],
             "probability": float(probs[i, pred[i]]), "truth_probability": float(probs[i, labels[i]]),
             "loss": float(loss[i])} for i in order]
