"""Helpers shared by the API tests (tests/web) and the browser tests (tests/e2e).

Loaded by file path from both conftests (pytest runs with --import-mode=importlib,
so test folders are not packages).
"""
from __future__ import annotations

import base64
import fcntl
import io
from pathlib import Path

import numpy as np

from convscope.web.live import free_port, live_server  # noqa: F401  (re-exported for the tests)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
EPOCHS = 10  # ~97-98% on the offline validation split, ~10-20 s on one core


def trained_run() -> Path:
    """A lenet5 trained on the offline MNIST digits, trained once and cached under test-artifacts/.

    A file lock keeps two pytest-xdist workers from training it twice.
    """
    from convscope import __version__
    from convscope.train import train

    cache = ARTIFACTS / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    run = cache / f"web-lenet5-mnist-e{EPOCHS}-v{__version__}"
    with open(cache / ".web-train.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run / "model.safetensors").is_file():
            train(model="lenet5", data="mnist", recipe="mnist-fast", epochs=EPOCHS, out=run,
                  threads=1, progress=False, overwrite=True, seed=0)
    return run


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
