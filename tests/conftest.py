"""Shared test set-up: one torch thread per xdist worker (2 workers on 2 cores)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
    except ImportError:  # the NumPy-only tests do not need torch
        yield
        return
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _seed():
    import numpy as np

    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass
