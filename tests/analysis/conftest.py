"""A tiny trained-looking run (random LeNet-5 weights) for the commands that need RUN."""
from __future__ import annotations

import pytest


def minimal_config(name: str = "lenet5", **kwargs) -> dict:
    return {
        "convscope_version": "0.1.0",
        "model": {"name": name, "kwargs": kwargs},
        "dataset": "mnist",
        "classes": [str(i) for i in range(10)],
        "input_size": [1, 28, 28],
        "normalization": {"mean": [0.1307], "std": [0.3081]},
        "preprocessing": {"kind": "digits", "size": [28, 28], "channels": 1, "invert": False},
        "recipe": {},
        "seed": 0,
        "versions": {},
    }


@pytest.fixture
def lenet_run(tmp_path):
    from convscope.models import create_model
    from convscope.train.checkpoint import save_run

    return save_run(tmp_path / "run", create_model("lenet5"), minimal_config())


@pytest.fixture
def digit_png(tmp_path):
    """A hand-made '1': a white bar on black, as a PNG file."""
    import numpy as np
    from PIL import Image

    a = np.zeros((28, 28), dtype=np.uint8)
    a[5:23, 13:16] = 255
    path = tmp_path / "one.png"
    Image.fromarray(a).save(path)
    return path
