"""Batched augmentation against torchvision's per-image functions."""
from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from convscope.train import augment as aug


def _batch(n=6, c=1, h=28, w=28):
    return torch.rand(n, c, h, w)


def test_digits_identity_parameters_change_nothing():
    x = _batch()
    prm = {"angle": torch.zeros(6), "scale": torch.ones(6), "tx": torch.zeros(6), "ty": torch.zeros(6)}
    y, mask = aug.apply(aug.spec_for("digits"), x, prm)
    assert mask is None
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_digits_rotation_matches_torchvision_and_never_flips():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 6:22, 13:15] = 1.0  # a vertical bar
    prm = {"angle": torch.tensor([torch.pi / 2]), "scale": torch.ones(1), "tx": torch.zeros(1),
           "ty": torch.zeros(1)}
    y, _ = aug.apply(aug.spec_for("digits"), x, prm)
    # a quarter turn of a bar about the centre: torchvision's rotate, exact for 90 degrees
    ref = TF.rotate(x, -90.0)
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=0)
    assert "flip" not in aug.sample_params(aug.spec_for("digits"), 4, 28, 28, torch.Generator())


def test_flip_and_padded_crop_match_torchvision():
    x = _batch(n=8, c=3, h=32, w=32)
    spec = aug.spec_for("natural", image_size=32)
    prm = aug.sample_params(spec, 8, 32, 32, torch.Generator().manual_seed(3))
    y, _ = aug.apply(spec, x, prm)
    for i in range(8):
        ref = TF.horizontal_flip(x[i]) if prm["flip"][i] else x[i]
        ref = TF.pad(ref, [4, 4, 4, 4])
        ref = TF.crop(ref, int(prm["oy"][i]), int(prm["ox"][i]), 32, 32)
        torch.testing.assert_close(y[i], ref)
    assert prm["flip"].any() and not prm["flip"].all()


def test_random_erasing_mask_matches_torchvision_erase():
    x = _batch(n=16)
    spec = aug.spec_for("fashion", erase_p=1.0)
    prm = aug.sample_params(spec, 16, 28, 28, torch.Generator().manual_seed(1))
    _, mask = aug.apply(spec, x, prm)
    for i in range(16):
        ref = TF.erase(x[i], int(prm["ey"][i]), int(prm["ex"][i]), int(prm["eh"][i]), int(prm["ew"][i]),
                       torch.tensor(0.0))
        torch.testing.assert_close(x[i].masked_fill(mask[i], 0.0), ref)
    area = mask.float().mean(dim=(1, 2, 3))
    assert (area >= 0.01).all() and (area <= 0.5).all()


def test_params_are_seeded_and_sliceable_for_ddp():
    spec = aug.spec_for("fashion")
    a = aug.sample_params(spec, 10, 28, 28, torch.Generator().manual_seed(0))
    b = aug.sample_params(spec, 10, 28, 28, torch.Generator().manual_seed(0))
    assert all(torch.equal(a[k], b[k]) for k in a)
    half = aug.slice_params(a, 5, 10)
    assert torch.equal(half["ox"], a["ox"][5:])


def test_augment_options_replace_the_presets_values_and_unknown_ones_are_refused():
    spec = aug.spec_for("digits", options={"elastic_p": 1.0, "scale": [0.8, 1.2]})
    assert spec.elastic_p == 1.0 and spec.scale == (0.8, 1.2) and spec.rotate_deg == aug.AugmentSpec().rotate_deg
    # every image deformed: with p = 1 no image of the batch keeps a zero displacement field
    prm = aug.sample_params(spec, 16, 28, 28, torch.Generator().manual_seed(0))
    assert (prm["flow"].abs().amax(dim=(1, 2, 3)) > 0).all()
    prm = aug.sample_params(aug.spec_for("digits", options={"elastic_p": 0.0}), 16, 28, 28, torch.Generator())
    assert "flow" not in prm
    with pytest.raises(ValueError, match="'flip' is not one of the digits preset's"):
        aug.spec_for("digits", options={"flip": True})
    with pytest.raises(ValueError, match="augmentation 'none' has none"):
        aug.spec_for("none", options={"elastic_p": 1.0})
