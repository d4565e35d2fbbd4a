"""Kernels, feature maps and saliency: the pictures hold the numbers they claim to."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convscope.analysis.pictures import _unit, kernel_mosaic, layer_outputs, map_mosaic
from convscope.analysis.saliency import saliency_map
from convscope.cli import main
from convscope.models import create_model


def test_kernel_mosaic_tiles_are_the_filters():
    w = torch.randn(6, 1, 5, 5)
    mosaic = kernel_mosaic(w)
    assert mosaic.ndim == 2  # grey for 1-channel filters
    for i in range(6):  # tile i sits at (1 + 6 * col, 1): 1-pixel gaps, 6 tiles in one row
        tile = mosaic[1:6, 1 + 6 * i: 6 + 6 * i]
        f = w[i, 0].numpy()
        np.testing.assert_allclose(tile, (f - f.min()) / (f.max() - f.min()), rtol=1e-5, atol=1e-6)


def test_kernel_mosaic_is_colour_for_rgb_filters():
    w = torch.randn(4, 3, 3, 3)
    mosaic = kernel_mosaic(w)
    assert mosaic.ndim == 3 and mosaic.shape[2] == 3
    f = w[2].permute(1, 2, 0).numpy()  # (kH, kW, RGB)
    np.testing.assert_allclose(mosaic[1:4, 1 + 4 * 2: 4 + 4 * 2], (f - f.min()) / (f.max() - f.min()), rtol=1e-5,
                               atol=1e-6)


def test_kernel_mosaic_multichannel_rows():
    w = torch.randn(16, 6, 5, 5)  # lenet5 conv2: one row per filter, one tile per input channel
    mosaic = kernel_mosaic(w)
    assert mosaic.shape == (16 * 6 + 1, 6 * 6 + 1)


def test_layer_outputs_match_a_direct_forward():
    model = create_model("lenet5").eval()
    x = torch.rand(1, 1, 28, 28)
    outs, logits = layer_outputs(model, x)
    names = [n for n, _ in outs]
    assert names == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3", "fc2", "relu4", "output"]
    by_name = dict(outs)
    with torch.no_grad():
        conv1 = F.conv2d(x, model.conv1.weight, model.conv1.bias, padding=2)
        pool1 = F.max_pool2d(conv1.relu(), 2)
        torch.testing.assert_close(by_name["conv1"], conv1)
        torch.testing.assert_close(by_name["pool1"], pool1)
        torch.testing.assert_close(logits, model(x))
    assert map_mosaic(by_name["conv1"]).shape == (29 + 1, 6 * 29 + 1)


def test_gradient_saliency_is_the_input_gradient():
    model = create_model("lenet5").eval()
    x = torch.rand(1, 1, 28, 28)
    heat, target, _ = saliency_map(model, x, method="gradients")
    xr = x.clone().requires_grad_(True)
    model(xr)[0, target].backward()
    expected = xr.grad[0].abs().amax(0).numpy()
    np.testing.assert_allclose(heat, expected / expected.max(), rtol=1e-5, atol=1e-7)
    assert target == int(model(x).argmax())


def test_gradcam_matches_a_hand_computation():
    torch.manual_seed(0)
    model = create_model("lenet5").eval()
    x = torch.rand(1, 1, 28, 28)
    grabbed = {}
    h = model.pool2.register_forward_hook(lambda m, a, o: grabbed.setdefault("a", o))
    logits = model(x)
    h.remove()
    a = grabbed["a"]  # (1, 16, 5, 5)
    nonzero = 0
    for target in range(10):
        heat, got, layer = saliency_map(model, x, method="gradcam", target=target)
        assert layer == "pool2" and got == target
        (g,) = torch.autograd.grad(logits[0, target], a, retain_graph=True)
        cam = (g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True).relu()  # Selvaraju et al. 2017, eq. 1-2
        cam = F.interpolate(cam, size=(28, 28), mode="bilinear")[0, 0].detach().numpy()
        if cam.max() > 0:
            nonzero += 1
            np.testing.assert_allclose(heat, cam / cam.max(), rtol=1e-4, atol=1e-6)
        else:
            np.testing.assert_allclose(heat, cam, atol=1e-6)
    assert nonzero >= 3  # most classes' maps are not all zero, so the comparison means something


def test_unknown_method():
    with pytest.raises(ValueError, match="gradcam, gradients"):
        saliency_map(create_model("lenet5"), torch.rand(1, 1, 28, 28), method="occlusion")


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_picture_commands_write_pngs(capsys, tmp_path, lenet_run, digit_png):
    pictures = {}
    for argv in (["kernels", lenet_run], ["kernels", lenet_run, "--layer", "conv2"], ["kernels", "lenet5"],
                 ["activations", lenet_run, digit_png], ["saliency", lenet_run, digit_png],
                 ["saliency", lenet_run, digit_png, "--method", "gradients"]):
        out = tmp_path / f"{argv[0]}-{len(argv)}.png"
        code, text, err = _cli(capsys, *argv, "--out", out)
        assert code == 0, err
        assert "wrote" in text and str(out) in text
        pictures[" ".join(map(str, argv[:1] + argv[2:]))] = _decoded(out)
    _assert_distinct_pictures(pictures)


def test_activations_picture_depends_on_the_image(capsys, tmp_path, lenet_run, digit_png):
    from PIL import Image

    other = tmp_path / "bar.png"
    a = np.zeros((28, 28), np.uint8)
    a[13:16, 4:24] = 255  # a horizontal bar, not the vertical one
    Image.fromarray(a).save(other)
    shots = {}
    for img in (digit_png, other):
        out = tmp_path / f"act-{img.stem}.png"
        assert _cli(capsys, "activations", lenet_run, img, "--out", out)[0] == 0
        shots[img.stem] = _decoded(out)
    _assert_distinct_pictures(shots)


def _decoded(path) -> np.ndarray:
    """The PNG decoded: a real picture (at least 100 x 100) with something drawn on it."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        a = np.asarray(im.convert("RGB"), dtype=np.float32)
    assert a.shape[0] >= 100 and a.shape[1] >= 100, a.shape
    # not blank: many distinct colours and real contrast, not one background colour
    assert a.std() > 10 and len(np.unique(a.reshape(-1, 3), axis=0)) > 50, path
    return a


def _assert_distinct_pictures(pictures: dict[str, np.ndarray]) -> None:
    names = list(pictures)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pa, pb = pictures[a], pictures[b]
            same = pa.shape == pb.shape and np.abs(pa - pb).mean() < 1.0
            assert not same, f"`{a}` and `{b}` drew the same picture"


def test_picture_commands_bad_input(capsys, tmp_path, lenet_run, digit_png):
    code, _, err = _cli(capsys, "kernels", lenet_run, "--layer", "fc1", "--out", tmp_path / "k.png")
    assert code == 2 and "no convolution named 'fc1'" in err and "conv1, conv2" in err
    code, _, err = _cli(capsys, "saliency", lenet_run, tmp_path / "missing.png", "--out", tmp_path / "s.png")
    assert code == 2 and "no image file" in err
    code, _, err = _cli(capsys, "activations", "lenet5", digit_png)
    assert code == 2 and "not a run folder" in err
    (lenet_run / "model.safetensors").unlink()  # a run folder without a model
    code, _, err = _cli(capsys, "activations", lenet_run, digit_png, "--out", tmp_path / "a.png")
    assert code == 2 and "model.safetensors" in err


def test_gradcam_default_layer_is_a_map_not_the_global_pool():
    import torchvision

    from convscope.analysis.saliency import last_spatial_layer

    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.rand(1, 3, 64, 64)
    assert last_spatial_layer(model, x) == "layer4.1.relu"  # 2x2 maps; avgpool's 1x1 locates nothing
    heat, _, _ = saliency_map(model, x, method="gradcam")
    assert heat.shape == (64, 64) and heat.max() == 1.0 and heat.std() > 0.01
