"""Top dataset patches against a plain forward: the reported values, positions and order."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from convscope.units.patches import crop, parse_channels, top_patches
from convscope.units.target import load_target


def _plain_conv2(model, x):
    """lenet5's conv2 output by hand, from its weights (no hooks, no module calls)."""
    h = F.max_pool2d(F.relu(F.conv2d(x, model.conv1.weight, model.conv1.bias, padding=2)), 2)
    return F.conv2d(h, model.conv2.weight, model.conv2.bias)


def test_reported_values_positions_and_order_match_a_plain_forward(lenet_run, mnist):
    target = load_target(str(lenet_run))
    images = mnist.test.images[:400]
    hits = top_patches(target, images, "conv2", k=5, batch_size=64)
    with torch.no_grad():
        maps = _plain_conv2(target.model, target.normalize(images.float() / 255))  # (N, 16, 10, 10)
    per_image = maps.flatten(2).max(2).values                                       # (N, 16)
    for c, hs in hits.items():
        assert len(hs) == 5 and len({h.index for h in hs}) == 5
        for h in hs:
            assert abs(maps[h.index, c, h.y, h.x].item() - h.activation) < 1e-4
            assert abs(per_image[h.index, c].item() - h.activation) < 1e-4  # the unit is that image's peak
        want = torch.sort(per_image[:, c], descending=True).values[:5]
        assert torch.allclose(torch.tensor([h.activation for h in hs]), want, atol=1e-4)
        assert all(a.activation >= b.activation for a, b in zip(hs, hs[1:]))


def test_batching_does_not_change_the_answer(lenet_run, mnist):
    target = load_target(str(lenet_run))
    images = mnist.test.images[:300]
    one = top_patches(target, images, "pool1", k=4, batch_size=300)
    many = top_patches(target, images, "pool1", k=4, batch_size=37)
    assert {c: [(h.index, h.y, h.x) for h in hs] for c, hs in one.items()} == \
        {c: [(h.index, h.y, h.x) for h in hs] for c, hs in many.items()}


def test_the_crop_alone_reproduces_the_activation(lenet_run, mnist):
    """Running conv1 -> pool -> conv2 without padding on the receptive-field crop alone gives the unit's value:
    the crop holds exactly the pixels the unit saw (its padding shown as the mean pixel, normalised to 0)."""
    target = load_target(str(lenet_run))
    m = target.model
    images = mnist.test.images[:300]
    for layer in ("conv1", "conv2"):
        hits = top_patches(target, images, layer, k=3)
        for c, hs in list(hits.items())[:6]:
            for h in hs:
                patch = torch.from_numpy(crop(target, images[h.index], layer, h.y, h.x))[None]
                x = target.normalize(patch)
                with torch.no_grad():
                    out = F.conv2d(x, m.conv1.weight, m.conv1.bias)
                    if layer == "conv2":
                        out = F.conv2d(F.max_pool2d(F.relu(out), 2), m.conv2.weight, m.conv2.bias)
                assert out.shape[-2:] == (1, 1)
                assert abs(out[0, c, 0, 0].item() - h.activation) < 1e-4


def test_crop_overhanging_the_border_is_padded_with_the_mean(lenet_run):
    target = load_target(str(lenet_run))
    img = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    patch = crop(target, img, "conv1", 0, 0)  # rows/cols -2..2
    assert patch.shape == (1, 5, 5)
    assert abs(patch[0, 0, 0] - target.mean[0]) < 1e-6 and patch[0, 2, 2] == 1.0


def test_channel_lists():
    assert parse_channels("0-2,5", 8) == [0, 1, 2, 5]
    assert parse_channels(None, 8) is None
    import pytest

    from convscope.errors import UserError

    with pytest.raises(UserError):
        parse_channels("7-9", 8)


def test_a_run_trained_on_every_digit_has_no_test_split_to_rank(lenet_run, tmp_path):
    """The run's own dataset is split as config.json says the run was trained: a run trained on
    all 5,000 digits has no test images (never a default split of digits it trained on)."""
    import json
    import shutil

    import pytest

    from convscope.errors import UserError
    from convscope.units.report import dataset_images
    from convscope.units.target import load_target

    default_test = dataset_images(load_target(str(lenet_run)), None, "test")
    everything = tmp_path / "everything"
    shutil.copytree(lenet_run, everything)
    cfg = json.loads((everything / "config.json").read_text())
    cfg["split"] = {"seed": 0, "val_fraction": 0.0, "test_fraction": 0.0, "train": 5000, "val": 0, "test": 0}
    (everything / "config.json").write_text(json.dumps(cfg))
    target = load_target(str(everything))
    with pytest.raises(UserError, match="without a test split"):
        dataset_images(target, None, "test")
    assert len(dataset_images(target, None, "train")) == 5000
    assert len(default_test) == 1000 and len(dataset_images(target, None, "all")) == 5000
