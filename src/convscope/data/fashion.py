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

from ._base import Dataset, build, cache_dir
from ._idx import find_idx_folder, read_idx_folder, torchvision_download

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
APT_LINE = "sudo apt-get install dataset-fashion-mnist"


def load_fashion_mnist(*, root: str | None, download: bool, seed: int, val_fraction: float,
                       image_size: int | None, test_fraction: float | None = None) -> Dataset:
    common = dict(kind="fashion", seed=seed, val_fraction=val_fraction, image_size=image_size,
                  test_fraction=test_fraction)
    base = Path(root).expanduser() if root else cache_dir()
    if download:
        pools = torchvision_download("FashionMNIST", base)
        return build("fashion-mnist", CLASSES, pools, source=f"torchvision FashionMNIST at {base}",
                     **common)
    candidates = [base, base / "FashionMNIST" / "raw"] if root else [DEBIAN_DIR]
    folder = find_idx_folder(candidates)
    if folder is None:
        where = " or ".join(str(c) for c in candidates)
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {where}: install it with `{APT_LINE}`, "
            "or pass --download / download=True to fetch it with torchvision")
    pools = read_idx_folder(folder)
    return build("fashion-mnist", CLASSES, pools, source=f"IDX files in {folder}", **common)
