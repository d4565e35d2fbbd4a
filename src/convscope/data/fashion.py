"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): Zalando articles, 28x28 grey.

Offline (the default) it reads the gzipped IDX files of the Debian package
`dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist): the full 60,000
train images (of which `val_fraction`, stratified and seeded, become the
validation split) and the 10,000 test images. With `root`, IDX files in that
folder (or in torchvision's ROOT/FashionMNIST/raw layout) are used instead.
With download=True it is `torchvision.datasets.FashionMNIST(root)`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import Dataset, build, cache_dir
from ._idx import read_idx

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
APT_LINE = "sudo apt-get install dataset-fashion-mnist"
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_folder(candidates: list[Path]) -> Path | None:
    """The first folder holding all four Fashion-MNIST IDX files (gzipped or not)."""
    for folder in candidates:
        if all(_find(folder, stem) for pair in _FILES.values() for stem in pair):
            return folder
    return None


def read_idx_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 1, 28, 28), labels int64 (N,)) of one split in `folder`."""
    img_stem, lbl_stem = _FILES[split]
    images = read_idx(_find(folder, img_stem))
    labels = read_idx(_find(folder, lbl_stem)).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"{folder}: {split} images {images.shape} do not match labels {labels.shape}")
    return images[:, None], labels


def _torchvision_fashion(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from torchvision.datasets import FashionMNIST

    pools = {}
    for split, train in (("train", True), ("test", False)):
        ds = FashionMNIST(str(root), train=train, download=True)
        pools[split] = (ds.data.numpy()[:, None], ds.targets.numpy())
    return pools


def load_fashion_mnist(*, root: str | None, download: bool, seed: int, val_fraction: float,
                       image_size: int | None) -> Dataset:
    common = dict(kind="fashion", seed=seed, val_fraction=val_fraction, image_size=image_size)
    base = Path(root).expanduser() if root else cache_dir()
    if download:
        pools = _torchvision_fashion(base)
        return build("fashion-mnist", CLASSES, pools, source=f"torchvision FashionMNIST at {base}",
                     **common)
    candidates = [base, base / "FashionMNIST" / "raw"] if root else [DEBIAN_DIR]
    folder = find_idx_folder(candidates)
    if folder is None:
        where = " or ".join(str(c) for c in candidates)
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {where}: install it with `{APT_LINE}`, "
            "or pass --download / download=True to fetch it with torchvision")
    pools = {split: read_idx_pair(folder, split) for split in _FILES}
    return build("fashion-mnist", CLASSES, pools, source=f"IDX files in {folder}", **common)
