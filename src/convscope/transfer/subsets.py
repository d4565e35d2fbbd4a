"""Smaller datasets cut from a convscope.data Dataset: k images per class, a subset of the classes.

Every cut is seeded and stratified, and the mean/std are recomputed from the
new train split, as `get_dataset` would have done.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch

from convscope.data import Split, channel_stats


def _pick(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Sorted indices of up to `per_class` items of every class, seeded (all when None)."""
    if per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(idx)) if idx else np.zeros(0, dtype=np.int64)


def _take(split: Split, index: np.ndarray, relabel: dict[int, int] | None = None) -> Split:
    labels = split.labels[torch.from_numpy(index)]
    if relabel is not None:
        labels = torch.tensor([relabel[int(v)] for v in labels.tolist()], dtype=torch.int64)
    return Split(split.images[torch.from_numpy(index)].contiguous(), labels.contiguous())


def _restat(ds: Any, **changes: Any) -> Any:
    out = dataclasses.replace(ds, **changes)
    mean, std = channel_stats(out.train.images.numpy())
    return dataclasses.replace(out, mean=mean, std=std)


def per_class_counts(split: Split) -> dict[int, int]:
    values, counts = np.unique(split.labels.numpy(), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def few_shot(dataset: Any, k: int, *, seed: int = 0, val_per_class: int | None = None,
             test_per_class: int | None = None) -> Any:
    """`dataset` with k training images per class (fewer where a class has fewer).

    val/test: all of them, or at most `val_per_class` / `test_per_class` of each class.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"shots must be whole numbers of at least 1 image per class, got {k!r}")
    train = _take(dataset.train, _pick(dataset.train.labels.numpy(), k, seed))
    val = _take(dataset.val, _pick(dataset.val.labels.numpy(), val_per_class, seed + 1))
    test = _take(dataset.test, _pick(dataset.test.labels.numpy(), test_per_class, seed + 2))
    return _restat(dataset, train=train, val=val, test=test)


def class_subset(dataset: Any, classes: Sequence[int], *, name: str | None = None,
                 per_class: int | None = None, seed: int = 0) -> Any:
    """Only `classes` (indices into dataset.classes), relabelled 0..len-1 in the order given.

    per_class caps the training images of each class (seeded); val and test are kept whole.
    """
    keep = [int(c) for c in classes]
    relabel = {c: i for i, c in enumerate(keep)}

    def cut(split: Split, cap: int | None, s: int) -> Split:
        labels = split.labels.numpy()
        inside = np.flatnonzero(np.isin(labels, keep))
        chosen = inside[_pick(labels[inside], cap, s)]
        return _take(split, chosen, relabel)

    return _restat(dataset, name=name or dataset.name, classes=[dataset.classes[c] for c in keep],
                   train=cut(dataset.train, per_class, seed), val=cut(dataset.val, None, seed),
                   test=cut(dataset.test, None, seed))


def repeat_train(dataset: Any, times: int) -> Any:
    """The train split repeated `times` times (so a tiny split still makes several steps per epoch)."""
    if times <= 1:
        return dataset
    t = dataset.train
    return dataclasses.replace(dataset, train=Split(t.images.repeat(times, 1, 1, 1), t.labels.repeat(times)))
