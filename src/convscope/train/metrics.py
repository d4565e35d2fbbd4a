"""Top-k accuracy, per-class accuracy and the confusion matrix.

Top-k (Krizhevsky et al. 2012, sec. 6: "top-1 and top-5 error rates"): a
prediction counts as right when the true class is among the k highest scores.
With k at or above the number of classes every prediction is right (1.0).
The counting helpers return tensors, so a training loop can add them up
without a host sync per batch.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch


def _check(scores: torch.Tensor, targets: torch.Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be (N, num_classes), got shape {tuple(scores.shape)}")
    if targets.dim() != 1 or targets.shape[0] != scores.shape[0]:
        raise ValueError(f"targets must be (N,) with N={scores.shape[0]}, got shape {tuple(targets.shape)}")


def topk_correct(scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> torch.Tensor:
    """How many of the N rows have their target among the top k, for each k: a (len(ks),) tensor."""
    _check(scores, targets)
    num_classes = scores.shape[1]
    kmax = min(max(ks), num_classes)
    top = scores.topk(kmax, dim=1).indices            # (N, kmax), best first
    hit = top.eq(targets.view(-1, 1))                  # (N, kmax), at most one True per row
    cum = hit.cumsum(dim=1).sum(dim=0)                 # (kmax,): correct within top-1..top-kmax
    return torch.stack([cum[min(k, num_classes) - 1] for k in ks])


def topk_accuracy(logits_or_probs: torch.Tensor, targets: torch.Tensor,
                  ks: int | Iterable[int] = (1, 5)) -> dict[int, float] | float:
    """Fraction of rows whose target is among the k highest scores.

    Returns {k: fraction} for a sequence of ks, or one float when `ks` is an int.
    Logits or probabilities give the same answer (softmax keeps the order).

    >>> topk_accuracy(torch.tensor([[0.1, 0.5, 0.3, 0.1]]), torch.tensor([2]), ks=(1, 2))
    {1: 0.0, 2: 1.0}
    """
    single = isinstance(ks, int)
    ks = [ks] if single else list(ks)
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be whole numbers of at least 1, got {ks!r}")
    scores = torch.as_tensor(logits_or_probs)
    targets = torch.as_tensor(targets)
    n = scores.shape[0] if scores.dim() else 0
    if n == 0:
        raise ValueError("topk_accuracy needs at least one prediction")
    counts = topk_correct(scores, targets.long(), ks).tolist()
    result = {k: c / n for k, c in zip(ks, counts)}
    return result[ks[0]] if single else result


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    idx = targets.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor, classes: Sequence[str]) -> dict[str, float | None]:
    """Recall of each class from a confusion matrix (None for a class with no samples)."""
    totals = confusion.sum(dim=1).tolist()
    right = confusion.diagonal().tolist()
    return {str(c): (r / t if t else None) for c, r, t in zip(classes, right, totals)}
