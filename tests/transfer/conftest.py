"""Tiny data and a tiny trained source run, shared by the transfer tests."""
from __future__ import annotations

import pytest

from convscope.transfer.subsets import few_shot


@pytest.fixture(scope="session")
def synthetic():
    from convscope.data import get_dataset

    return get_dataset("synthetic")


@pytest.fixture(scope="session")
def tiny(synthetic):
    """10 shapes x 8 training images, 4 val and 5 test images per class (1x28x28)."""
    return few_shot(synthetic, 8, val_per_class=4, test_per_class=5)


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory, tiny):
    """A real lenet5 run (2 epochs on the tiny set), written by convscope.train."""
    from convscope.train import train

    out = tmp_path_factory.mktemp("src") / "lenet"
    return train(model="lenet5", data=tiny, out=out, epochs=2, batch_size=16, lr=0.05, seed=1,
                 progress=False, threads=1)
