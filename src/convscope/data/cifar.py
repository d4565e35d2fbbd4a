"""CIFAR-10 (Krizhevsky, 2009): 32x32 RGB, 10 classes, 50,000 train / 10,000 test.

Read from the "python version" folder `cifar-10-batches-py` (data_batch_1..5,
test_batch, batches.meta) under `root` (default ~/.cache/convscope/cifar10)
by `torchvision.datasets.CIFAR10`; download=True fetches it there. `root`
may also name the `cifar-10-batches-py` folder itself. `val_fraction` of the
train batches (stratified, seeded) become the validation split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import Dataset, build, cache_dir

FOLDER = "cifar-10-batches-py"


def _cifar10_class():
    from torchvision.datasets import CIFAR10

    class _CIFAR10(CIFAR10):
        """torchvision's reader, but a folder whose files exist counts as intact.

        torchvision checks each file's MD5 (check_integrity skips the check when
        the MD5 is None); we only require the files, so a hand-made set in
        CIFAR's format (as the tests write) loads too. A damaged batch still
        fails when it is unpickled; a download still checks the archive's MD5.
        """

        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return _CIFAR10


def _resolve_root(root: str | None) -> Path:
    base = Path(root).expanduser() if root else cache_dir() / "cifar10"
    return base.parent if base.name == FOLDER else base


def load_cifar10(*, root: str | None, download: bool, seed: int, val_fraction: float,
                 image_size: int | None, test_fraction: float | None = None) -> Dataset:
    base = _resolve_root(root)
    reader = _cifar10_class()
    if not download and not (base / FOLDER).is_dir():
        raise FileNotFoundError(
            f"CIFAR-10 not found: no {FOLDER} folder in {base}. Pass --download / download=True "
            f"to fetch it there, or --data-root / root=FOLDER where {FOLDER} lives")
    pools, classes = {}, []
    for split, train in (("train", True), ("test", False)):
        try:
            ds = reader(str(base), train=train, download=download)
        except RuntimeError as exc:  # torchvision's "not found or corrupted": a file is missing
            raise FileNotFoundError(f"CIFAR-10 in {base / FOLDER} is incomplete ({exc}); "
                                    "pass --download / download=True to fetch it again") from exc
        except Exception as exc:  # unpickling a damaged batch: EOFError, UnpicklingError, ...
            raise ValueError(f"CIFAR-10 in {base / FOLDER} is damaged ({type(exc).__name__}: {exc}); "
                             "delete the folder and pass --download / download=True") from exc
        pools[split] = (np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)),  # NHWC -> NCHW
                        np.asarray(ds.targets, dtype=np.int64))
        classes = list(ds.classes)
    return build("cifar10", classes, pools, kind="natural", source=f"{base / FOLDER}", seed=seed,
                 val_fraction=val_fraction, image_size=image_size, test_fraction=test_fraction)
