"""The in-memory dataset types and the helpers every source shares.

A `Dataset` holds three `Split`s of uint8 images (N, C, H, W) with int64
labels, the class names, and the per-channel mean/std of the *train* images
scaled to [0, 1] (the numbers a `Normalize` layer needs). Splits are made here,
seeded and stratified, so every source splits the same way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

Kind = Literal["digits", "fashion", "natural", "synthetic"]
SPLITS = ("train", "val", "test")


def cache_dir() -> Path:
    """Where downloads and caches go: $CONVSCOPE_CACHE or ~/.cache/convscope."""
    return Path(os.environ.get("CONVSCOPE_CACHE") or Path.home() / ".cache" / "convscope")


@dataclass
class Split:
    """One split: `images` uint8 (N, C, H, W), `labels` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"Split.images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"Split.labels must be int64 of shape ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    """A dataset loaded into memory, with its splits and normalisation statistics.

    `preprocessing()` is the dict the training code stores as config.json's
    "preprocessing"; `normalization()` is config.json's "normalization". Both
    are what `convscope.data.prepare_image` reads back at predict time.
    """

    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]
    kind: Kind
    source: str
    invert: bool = False
    # how the splits were made: {"seed", "val_fraction", "test_fraction"}; a fraction is None
    # where the source brought that split itself (a test set, a val/ folder)
    split_settings: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        """The split called "train", "val" or "test" (as `--split` names it)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}")
        return getattr(self, name)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split_record(self) -> dict[str, Any]:
        """What config.json keeps as "split": how the splits were made and their sizes."""
        return dict(self.split_settings, train=len(self.train), val=len(self.val), test=len(self.test))

    def normalization(self) -> dict[str, list[float]]:
        """{"mean": [...], "std": [...]} per channel, of train images in [0, 1]."""
        return {"mean": list(self.mean), "std": list(self.std)}

    def preprocessing(self) -> dict[str, Any]:
        """How a new image must be prepared to look like this dataset's images.

        digits:  {"kind": "digits", "invert": False, "size": [H, W], "channels": 1, ...}
        others:  {"kind": "resize", "size": [H, W], "channels": C, ...}
        Both carry "mean" and "std" (the same numbers as `normalization()`), so
        the dict alone is enough for `prepare_image`.
        """
        c, h, w = self.input_size
        out: dict[str, Any] = {"kind": "digits" if self.kind == "digits" else "resize",
                               "size": [h, w], "channels": c}
        if self.kind == "digits":
            out["invert"] = self.invert
        out.update(self.normalization())
        return out

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float32 (x / 255 - mean) / std."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std

    def __repr__(self) -> str:
        c, h, w = self.input_size
        return (f"Dataset({self.name!r}, {len(self.classes)} classes, {c}x{h}x{w}, "
                f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, "
                f"kind={self.kind!r}, source={self.source!r})")


def channel_stats(images: np.ndarray | torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of uint8 (N, C, H, W) images scaled to [0, 1].

    A 256-bin histogram per channel keeps this exact and cheap: no float copy
    of a 60k-image set (torch.bincount reads uint8 directly; np.bincount would
    first widen every pixel to int64, 4x slower here).
    """
    images = torch.as_tensor(images)
    if images.shape[0] == 0:
        raise ValueError("cannot compute normalisation statistics of an empty train split")
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).numpy()
        n = counts.sum()
        mean = float((counts * values).sum() / n)
        var = float((counts * (values - mean) ** 2).sum() / n)
        means.append(round(mean, 6))
        stds.append(round(max(var, 1e-12) ** 0.5, 6))
    return tuple(means), tuple(stds)


def _take(count: int, fraction: float) -> int:
    """How many of a class's `count` items go to a held-out split of `fraction`.

    Rounded, but at least one when the class has 3 or more items (so a small
    folder still gets a non-empty validation split) and never all of them.
    """
    if fraction <= 0 or count == 0:
        return 0
    k = int(round(count * fraction))
    if k == 0 and count >= 3:
        k = 1
    return min(k, count - 1)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): `fraction` of every class held out, seeded.

    Both index arrays are sorted, so the result depends only on `seed` and the
    labels, never on dict or set ordering.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"a split fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        held.append(rng.permutation(idx)[: _take(len(idx), fraction)])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def to_split(images: np.ndarray, labels: np.ndarray, index: np.ndarray | None = None) -> Split:
    """numpy uint8 (N, C, H, W) + labels -> Split (copying only the rows in `index`)."""
    if index is not None:
        images, labels = images[index], labels[index]
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    # torch shares memory with the array, so it must be writable (np.frombuffer's is not)
    images = images if images.flags.writeable else images.copy()
    labels = labels if labels.flags.writeable else labels.copy()
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


MAX_BYTES = 4 << 30  # refuse to build an in-memory set above 4 GiB


def resize_uint8(images: np.ndarray, size: int, chunk: int = 1024) -> np.ndarray:
    """Resize uint8 (N, C, H, W) to (N, C, size, size), antialiased bilinear.

    Done `chunk` images at a time, so the float copy stays small.
    """
    if images.shape[-2:] == (size, size):
        return images
    n, c = images.shape[:2]
    if n * c * size * size > MAX_BYTES:
        raise ValueError(f"{n} images at {c}x{size}x{size} would take "
                         f"{n * c * size * size / 2**30:.1f} GiB of memory; choose a smaller "
                         "image_size (or resize each batch on the fly)")
    out = np.empty((n, c, size, size), dtype=np.uint8)
    for i in range(0, n, chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + chunk])).float()
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            align_corners=False, antialias=True)
        out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def build(name: str, classes: list[str], pools: dict[str, tuple[np.ndarray, np.ndarray]], *,
          kind: Kind, source: str, seed: int, val_fraction: float, test_fraction: float | None = None,
          image_size: int | None = None, invert: bool = False) -> Dataset:
    """Make a Dataset from the splits a source has, carving out the missing ones.

    `pools` has "train" and optionally "val" and "test" (numpy uint8 NCHW,
    labels). Without "test", `test_fraction` (default 0.2) of the train pool
    becomes the test split; without "val", `val_fraction` of what remains
    becomes val. Both carve-outs are stratified and seeded (test with `seed`,
    val with `seed + 1`, so changing val_fraction never moves a test image).
    A fraction of 0 carves nothing: that split is empty and every image trains.
    Asking for a test_fraction where the source has its own test split is an error.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if test_fraction is not None and not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if len(classes) < 2:  # one class "trains" to 100% and learns nothing
        from convscope.errors import DataError

        raise DataError(f"{name} has {len(classes)} class{'' if len(classes) == 1 else 'es'}"
                        f"{' (' + ', '.join(map(str, classes)) + ')' if classes else ''}: a classifier needs at "
                        "least 2; give each class its own subfolder")
    x, y = pools["train"]
    if image_size is not None:
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
        pools = {k: (resize_uint8(px, image_size), py) for k, (px, py) in pools.items()}
        x, y = pools["train"]
    out: dict[str, Split] = {}
    settings: dict[str, Any] = {"seed": seed, "val_fraction": None, "test_fraction": None}
    if "test" in pools:
        if test_fraction is not None:
            from convscope.errors import DataError

            raise DataError(f"{name} has its own test split ({len(pools['test'][1])} images); a test fraction "
                            "is only for data without one (the offline mnist digits, folder:PATH)")
        out["test"] = to_split(*pools["test"])
    else:
        settings["test_fraction"] = test_fraction = 0.2 if test_fraction is None else float(test_fraction)
        keep, held = stratified_split(y, test_fraction, seed)
        out["test"] = to_split(x, y, held)
        x, y = x[keep], y[keep]
    if "val" in pools:
        out["val"] = to_split(*pools["val"])
    else:
        settings["val_fraction"] = float(val_fraction)
        keep, held = stratified_split(y, val_fraction, seed + 1)
        out["val"] = to_split(x, y, held)
        x, y = x[keep], y[keep]
    out["train"] = to_split(x, y)
    mean, std = channel_stats(out["train"].images)
    _, c, h, w = out["train"].images.shape
    return Dataset(name=name, classes=list(classes), train=out["train"], val=out["val"],
                   test=out["test"], mean=mean, std=std, input_size=(c, h, w), kind=kind,
                   source=source, invert=invert, split_settings=settings)
