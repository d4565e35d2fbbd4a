"""Your own images: `folder:PATH`, with torchvision's ImageFolder semantics.

    PATH/cat/001.jpg            one subfolder per class; class names are the
    PATH/dog/xyz.png            subfolder names, sorted (index = position)

Splits: when PATH holds `train/` and `test/` (each laid out as above) they are
used, with `val/` too if present (otherwise `val_fraction` of train becomes
val). `train/` with only `val/` (the layout of the PyTorch transfer-learning
tutorial) uses `val/` as both the validation and the test split. Otherwise
20% of each class becomes the test split and `val_fraction` of the rest the
validation split, stratified and seeded.

Images are converted to grey or RGB (whichever most images are, RGB on a tie,
unless `channels` says), and resized to `image_size` x `image_size` (default
32, the size of CIFAR; the whole image is resized, not cropped), through
`preprocess.resize_pil`, the same function predict uses.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from convscope.limits import check_image_size, too_large

from ._base import Dataset, build
from .preprocess import load_image, resize_pil

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_SIZE = 32
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def scan(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image path, class index)]) of an ImageFolder-style folder.

    With `classes` given (the train folder's), every subfolder must be one of
    them, so a test split cannot invent a class.
    """
    dirs = _visible_dirs(folder)
    if not dirs:
        raise FileNotFoundError(f"{folder} has no class subfolders: put each class's images in "
                                f"its own folder, e.g. {folder}/cat/1.jpg and {folder}/dog/2.jpg")
    names = [d.name for d in dirs]
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise ValueError(f"{folder} has classes that train/ lacks: {', '.join(unknown)}")
    classes = classes or names
    items = []
    for d in dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                       and not p.name.startswith("."))
        if not files:
            raise ValueError(f"class folder {d} is empty: it holds no images "
                             f"({', '.join(EXTENSIONS)}); add some or remove the folder")
        items.extend((f, classes.index(d.name)) for f in files)
    return classes, items


def _majority_channels(paths: list[Path]) -> int:
    grey = 0
    for path in paths:
        try:
            with warnings.catch_warnings():  # the size is checked here, from the header
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:  # reads the header only
                    check_image_size(img.width, img.height, str(path))
                    grey += img.mode in _GREY_MODES or (img.mode == "P" and _grey_palette(img))
        except Image.DecompressionBombError:
            raise too_large(str(path)) from None
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"cannot read {path} as an image ({exc}): fix or remove it") from exc
    return 1 if grey > len(paths) - grey else 3


def _grey_palette(img: Image.Image) -> bool:
    palette = np.asarray(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
    return bool(len(palette)) and bool((palette == palette[:, :1]).all())


def _load(items: list[tuple[Path, int]], size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(items), channels, size, size), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        images[i] = resize_pil(load_image(path), (size, size), channels)
    return images, np.array([label for _, label in items], dtype=np.int64)


def load_folder(path: str, *, seed: int, val_fraction: float, image_size: int | None,
                channels: int | None = None, test_fraction: float | None = None) -> Dataset:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"folder:{path}: no such folder {root}")
    size = image_size or DEFAULT_SIZE
    if size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {size}")
    parts = {p: root / p for p in ("train", "val", "test") if (root / p).is_dir()}
    if "train" in parts and ("test" in parts or "val" in parts):
        classes, train_items = scan(parts["train"])
        found = {"train": train_items}
        found.update({p: scan(parts[p], classes)[1] for p in ("val", "test") if p in parts})
    else:
        classes, train_items = scan(root)
        found = {"train": train_items}
    all_paths = sorted({p for items in found.values() for p, _ in items})
    channels = channels or _majority_channels(all_paths)
    pools = {part: _load(items, size, channels) for part, items in found.items()}
    if "val" in pools and "test" not in pools:
        pools["test"] = pools["val"]  # train/ + val/ only: val is the held-out set
    return build(f"folder:{path}", classes, pools, kind="natural", source=str(root), seed=seed,
                 val_fraction=val_fraction, test_fraction=test_fraction)
