"""Orientation tuning against hand-set kernels and the OSI formula."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convscope.units.target import from_module
from convscope.units.tuning import ORIENTATIONS, osi, stimuli, tune

STEP = 180 / ORIENTATIONS


class EdgeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(torch.relu(self.conv1(x)))


def _edge_net() -> EdgeNet:
    net = EdgeNet()
    with torch.no_grad():
        net.conv1.bias.zero_()
        # rows top to bottom; orientation = direction of the edge, anticlockwise from horizontal on screen
        net.conv1.weight[0, 0] = torch.tensor([[-1., -2, -1], [0, 0, 0], [1, 2, 1]])  # Sobel d/dy: horizontal edge, 0
        net.conv1.weight[1, 0] = torch.tensor([[-1., 0, 1], [-2, 0, 2], [-1, 0, 1]])  # Sobel d/dx: vertical edge, 90
        net.conv1.weight[2, 0] = torch.tensor([[-2., -1, 0], [-1, 0, 1], [0, 1, 2]])  # rising diagonal edge, 45
        net.conv1.weight[3, 0] = torch.ones(3, 3) / 9                                  # no orientation at all
    return net


def _circular(a: float, b: float) -> float:
    d = abs(a - b) % 180
    return min(d, 180 - d)


def test_hand_set_edge_detectors_peak_at_their_orientation():
    for size in (28, 32):
        result = tune(from_module(_edge_net(), (1, size, size)), "conv1")
        for channel, want in ((0, 0.0), (1, 90.0), (2, 45.0)):
            assert _circular(result.preferred[channel], want) <= STEP, (size, channel, result.preferred)
            assert result.osi[channel] > 0.2
        assert result.osi[3] < 0.05


def test_pool_layer_inherits_the_tuning():
    result = tune(from_module(_edge_net(), (1, 28, 28)), "pool")
    assert _circular(result.preferred[1], 90.0) <= STEP


def test_osi_formula():
    deg = np.arange(12) * 15.0
    assert osi(np.ones(12), deg) == pytest.approx(0.0, abs=1e-12)
    one = np.zeros(12)
    one[4] = 3.0
    assert osi(one, deg) == pytest.approx(1.0)
    # R = 1 + cos(2 theta): |sum R e^{2i theta}| = N/2, sum R = N
    assert osi(1 + np.cos(2 * np.deg2rad(deg)), deg) == pytest.approx(0.5)
    assert osi(np.zeros(12), deg) == 0.0


def test_stimulus_orientation_convention():
    pix, angles = stimuli((28, 28), (14.0, 14.0), 5.0)
    assert angles[0] == 0 and angles[6] == 90
    horizontal = pix[0, 0]  # grating at 0 degrees: constant along each row inside the aperture
    assert torch.allclose(horizontal[14, 12:17], horizontal[14, 12].expand(5))
    vertical = pix[6, 0]
    assert torch.allclose(vertical[12:17, 14], vertical[12, 14].expand(5))
    assert float(pix.min()) >= 0.0 and float(pix.max()) <= 1.0
    assert pix[0, 0, 0, 0] == 0.0  # outside the aperture: the background


def test_baseline_is_the_architecture_at_the_runs_seeded_init(lenet_run):
    from convscope.units.target import load_target

    trained = tune(load_target(str(lenet_run)), "conv1")
    base = tune(load_target(str(lenet_run), random_init=True), "conv1")
    # the baseline is the architecture drawn with the run's seed, as training drew it
    from convscope.models import create_model

    torch.manual_seed(3)
    fresh = create_model("lenet5", num_classes=10, in_chans=1)
    assert torch.equal(fresh.conv1.weight, load_target(str(lenet_run), random_init=True).model.conv1.weight)
    assert trained.curves.shape == base.curves.shape == (6, ORIENTATIONS)
