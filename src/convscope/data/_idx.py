"""IDX files (LeCun's MNIST format), read with NumPy: gzip or plain.

Layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions,
then one big-endian int32 per dimension, then the data.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

_UINT8 = 0x08
# LeCun's file names, shared by MNIST and Fashion-MNIST
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (`.gz` or not), as uint8."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = zlib.decompress(raw, 31)  # 31: gzip header; faster than the gzip module
        except zlib.error as exc:
            raise ValueError(f"{path} is a damaged gzip file ({exc}); reinstall or re-download it") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    if raw[2] != _UINT8:
        raise ValueError(f"{path}: only uint8 IDX files are supported, type code is 0x{raw[2]:02x}")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4).astype(np.int64)
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise ValueError(f"{path} is truncated: header says {tuple(dims)} = {expected} bytes, "
                         f"file holds {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(tuple(dims))


def _find(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_folder(candidates: list[Path]) -> Path | None:
    """The first folder holding all four MNIST-style IDX files (gzipped or not)."""
    for folder in candidates:
        if all(_find(folder, stem) for pair in FILES.values() for stem in pair):
            return folder
    return None


def read_idx_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 1, H, W), labels int64 (N,)) of split "train" or "test" in `folder`."""
    img_stem, lbl_stem = FILES[split]
    images = read_idx(_find(folder, img_stem))
    labels = read_idx(_find(folder, lbl_stem)).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: {split} images {images.shape} do not match labels {labels.shape}")
    return images[:, None], labels


def read_idx_folder(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images, labels), "test": (images, labels)} from the four IDX files."""
    return {split: read_idx_pair(folder, split) for split in FILES}


def torchvision_download(name: str, root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fetch torchvision's `name` ("MNIST" or "FashionMNIST") into `root` (skipped when
    already there) and return its train and test arrays."""
    import torchvision.datasets as tvd

    pools = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = getattr(tvd, name)(str(root), train=train, download=True)
        except (RuntimeError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FileNotFoundError(
                f"could not download {name} into {root} ({first}). Check the network, or copy "
                f"the four IDX files into {root / name / 'raw'} and pass --data-root {root}") from exc
        pools[split] = (ds.data.numpy()[:, None], ds.targets.numpy().astype(np.int64))
    return pools
