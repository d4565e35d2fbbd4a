"""The digits preset's elastic deformation (Simard et al. 2003, section 2) against torchvision."""
from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF

from convscope.train import augment as aug


def _identity(n: int) -> dict:
    return {"angle": torch.zeros(n), "scale": torch.ones(n), "tx": torch.zeros(n), "ty": torch.zeros(n)}


def test_field_is_uniform_noise_smoothed_by_torchvisions_gaussian():
    gen = torch.Generator().manual_seed(5)
    field = aug.elastic_field(3, 28, 28, alpha=34.0, sigma=4.0, gen=gen)
    noise = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(5)) * 2 - 1
    r = aug.gaussian_kernel(4.0).numel() // 2
    ref = 34.0 * TF.gaussian_blur(noise, kernel_size=[2 * r + 1, 2 * r + 1], sigma=[4.0, 4.0])
    torch.testing.assert_close(field, ref.view(3, 2, 28, 28), atol=1e-5, rtol=1e-4)


def test_a_one_pixel_flow_moves_the_image_by_one_pixel():
    x = torch.rand(2, 1, 28, 28)
    prm = _identity(2)
    prm["flow"] = torch.zeros(2, 2, 28, 28)
    prm["flow"][:, 0] = 1.0  # dx = +1: output column j reads input column j + 1
    y, _ = aug.apply(aug.spec_for("digits"), x, prm)
    torch.testing.assert_close(y[..., :-1], x[..., 1:], atol=1e-5, rtol=0)
    prm["flow"] = torch.zeros(2, 2, 28, 28)
    prm["flow"][:, 1] = -2.0  # dy = -2: output row i reads input row i - 2
    y, _ = aug.apply(aug.spec_for("digits"), x, prm)
    torch.testing.assert_close(y[:, :, 2:], x[:, :, :-2], atol=1e-5, rtol=0)


def test_sampled_flows_are_seeded_partial_and_a_few_pixels_large():
    spec = aug.spec_for("digits")
    a = aug.sample_params(spec, 200, 28, 28, torch.Generator().manual_seed(0))
    b = aug.sample_params(spec, 200, 28, 28, torch.Generator().manual_seed(0))
    assert torch.equal(a["flow"], b["flow"])
    moved = a["flow"].abs().amax(dim=(1, 2, 3)) > 0
    assert 0.3 < moved.float().mean() < 0.7  # elastic_p = 0.5
    rms = a["flow"][moved].pow(2).mean().sqrt()
    assert 0.5 < rms < 3.0  # alpha 34, sigma 4: about a pixel and a half, as in the paper's figures
    assert torch.equal(aug.slice_params(a, 10, 20)["flow"], a["flow"][10:20])


def test_no_elastic_when_switched_off():
    spec = aug.AugmentSpec("digits", elastic_alpha=0.0)
    assert "flow" not in aug.sample_params(spec, 4, 28, 28, torch.Generator())
