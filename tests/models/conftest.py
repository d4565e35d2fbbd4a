"""Shared helpers of the zoo tests, as fixtures (test folders are not packages here)."""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn


def _calibrate_batch_norm(model: nn.Module, images: torch.Tensor) -> None:
    """Set every BN's running statistics to those of `images` and give it a random affine.

    With random weights and fresh statistics (mean 0, variance 1) the signal fades
    layer by layer, so that two deep networks agree whatever their wiring; with the
    statistics of real activations every layer is normalised, the output depends on
    the input, and a misplaced tensor or a miswired branch shows."""
    g = torch.Generator().manual_seed(1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch sets the statistics
        m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    model.train()
    with torch.no_grad():
        model(images)
    for m in bns:
        m.momentum = 0.1
    model.eval()


@pytest.fixture
def calibrate_batch_norm() -> Callable[[nn.Module, torch.Tensor], None]:
    return _calibrate_batch_norm
