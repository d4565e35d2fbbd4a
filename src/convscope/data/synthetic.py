"""A small generated dataset for tests and first experiments: 10 shapes, 1x28x28.

Each class is a stroke shape (bars at four orientations, plus, cross, ring,
disc, square outline, equals sign) drawn white on black with an
antialiased edge, at a random position (+-3 px), size, stroke width, tilt
(+-10 degrees) and brightness, plus Gaussian noise. A small CNN learns it in
an epoch or two; a linear model does clearly worse. Fully determined by
`seed`: 220 images per class in the train pool (of which `val_fraction`
becomes val, stratified) and 50 per class in test, drawn from one generator.
"""
from __future__ import annotations

import numpy as np

from ._base import Dataset, build

CLASSES = ["horizontal", "vertical", "diagonal /", "diagonal \\", "plus", "cross", "ring",
           "disc", "square", "equals"]
SIZE = 28
POOL_PER_CLASS = 220
TEST_PER_CLASS = 50


def _segment(u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Distance to the segment from (-r, 0) to (r, 0) in (u, v) coordinates."""
    return np.sqrt(np.maximum(np.abs(u) - r, 0.0) ** 2 + v ** 2)


def _rotate(u: np.ndarray, v: np.ndarray, degrees: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.deg2rad(degrees)
    return u * np.cos(a) + v * np.sin(a), -u * np.sin(a) + v * np.cos(a)


def _distance(cls: int, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Distance from each pixel to the stroke of shape `cls` (0 on the stroke)."""
    bar = lambda deg: _segment(*_rotate(u, v, deg), r)  # noqa: E731
    rho = np.sqrt(u ** 2 + v ** 2)
    table = {
        0: lambda: bar(0), 1: lambda: bar(90), 2: lambda: bar(-45), 3: lambda: bar(45),
        4: lambda: np.minimum(bar(0), bar(90)),
        5: lambda: np.minimum(bar(45), bar(-45)),
        6: lambda: np.abs(rho - r),
        7: lambda: np.maximum(rho - 0.8 * r, 0.0),
        8: lambda: np.abs(np.maximum(np.abs(u), np.abs(v)) - 0.8 * r),
        9: lambda: np.minimum(_segment(u, v - 0.45 * r, r), _segment(u, v + 0.45 * r, r)),
    }
    return table[cls]()


def draw(cls: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n images of class `cls`: uint8 (n, 1, 28, 28)."""
    col = lambda lo, hi: rng.uniform(lo, hi, size=(n, 1, 1))  # noqa: E731  (one value per image)
    cy, cx = col(-3, 3) + (SIZE - 1) / 2, col(-3, 3) + (SIZE - 1) / 2
    r, width, tilt, gain = col(6, 9), col(1.0, 1.8), col(-10, 10), col(0.7, 1.0)
    ys, xs = np.indices((SIZE, SIZE), dtype=np.float64)
    u, v = _rotate(xs[None] - cx, ys[None] - cy, tilt)  # (n, 28, 28) each
    ink = np.clip(width - _distance(cls, u, v, r) + 0.5, 0.0, 1.0) * gain  # antialiased edge
    img = np.clip(ink + rng.normal(0.0, 0.08, size=ink.shape), 0.0, 1.0)
    return (img * 255.0).round().astype(np.uint8)[:, None]


def generate(per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Balanced, shuffled (images uint8 (N, 1, 28, 28), labels int64 (N,))."""
    images = np.concatenate([draw(c, per_class, rng) for c in range(len(CLASSES))])
    labels = np.repeat(np.arange(len(CLASSES), dtype=np.int64), per_class)
    order = rng.permutation(len(labels))
    return images[order], labels[order]


def load_synthetic(*, seed: int, val_fraction: float, image_size: int | None,
                   test_fraction: float | None = None) -> Dataset:
    rng = np.random.default_rng(seed)
    pools = {"train": generate(POOL_PER_CLASS, rng), "test": generate(TEST_PER_CLASS, rng)}
    return build("synthetic", CLASSES, pools, kind="synthetic", source=f"generated (seed {seed})",
                 seed=seed, val_fraction=val_fraction, image_size=image_size, test_fraction=test_fraction)
