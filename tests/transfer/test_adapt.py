"""Input adaptation against torch's own convolution on grey images (the oracle)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from convscope.models import create_model
from convscope.transfer.adapt import adapt_input_channels, adapt_weight


def test_summed_filters_on_grey_equal_rgb_filters_on_grey_rgb():
    w = torch.randn(8, 3, 5, 5)
    grey = torch.rand(2, 1, 12, 12)
    want = F.conv2d(grey.expand(-1, 3, -1, -1), w, padding=2)
    got = F.conv2d(grey, adapt_weight(w, 1), padding=2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_repeated_filters_on_grey_rgb_equal_the_grey_filter():
    w = torch.randn(6, 1, 3, 3)
    grey = torch.rand(2, 1, 9, 9)
    got = F.conv2d(grey.expand(-1, 3, -1, -1), adapt_weight(w, 3))
    torch.testing.assert_close(got, F.conv2d(grey, w), rtol=1e-5, atol=1e-5)


def test_a_whole_resnet_gives_the_same_logits_on_grey_data():
    rgb = create_model("resnet18", small_input=True, num_classes=5).eval()
    grey_model = adapt_input_channels(create_model("resnet18", small_input=True, num_classes=5).eval(), 1)
    grey_model.load_state_dict({k: (adapt_weight(v, 1) if k == "conv1.weight" else v)
                                for k, v in rgb.state_dict().items()})
    x = torch.rand(2, 1, 16, 16)
    assert grey_model.in_chans == 1 and grey_model.default_input_size[0] == 1
    assert grey_model.conv1.weight.shape == (64, 1, 3, 3)
    torch.testing.assert_close(grey_model(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_lenet_one_to_three_channels_keeps_bias_and_response():
    model = create_model("lenet5").eval()
    x = torch.rand(1, 1, 28, 28)
    want = model(x)
    adapt_input_channels(model, 3)
    assert model.conv1.in_channels == 3
    torch.testing.assert_close(model(x.expand(-1, 3, -1, -1)), want, rtol=1e-5, atol=1e-5)
