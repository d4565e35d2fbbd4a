"""Shared fixtures: the synthetic set (small, learnable, 1x28x28, 10 classes)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synthetic():
    from convscope.data import get_dataset

    return get_dataset("synthetic")

