"""The lecture's figures (`make docs`): each builder's numbers checked against PyTorch/torchvision."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convscope import docs_build


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_sobel_figure_is_torch_conv2d_on_a_real_image(tmp_path):
    out = tmp_path / "sobel.png"
    data = docs_build.build_sobel(out)
    assert _is_png(out)
    image = torch.from_numpy(data["image"])[None, None]
    assert image.shape == (1, 1, 28, 28) and 0 <= image.min() and image.max() == 1.0 and image.mean() > 0.1
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    ref = F.conv2d(image, torch.stack([kx, kx.T])[:, None], padding=1)[0]
    np.testing.assert_allclose(data["x"], ref[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(data["y"], ref[1].numpy(), atol=1e-5)
    np.testing.assert_allclose(data["magnitude"], ref.pow(2).sum(0).sqrt().numpy(), atol=1e-5)


def test_kernels_figure_maps_are_torch_conv2d(tmp_path):
    out = tmp_path / "kernels.png"
    data = docs_build.build_kernels(out)
    assert _is_png(out)
    ref = F.conv2d(torch.from_numpy(data["image"])[None, None], torch.from_numpy(data["weights"]), padding=1)[0]
    np.testing.assert_allclose(data["maps"], ref.numpy(), atol=1e-5)
    # four orientations: each kernel is its neighbour rotated by 45 degrees, so no two maps are alike
    flat = data["maps"].reshape(4, -1)
    assert np.linalg.matrix_rank(flat) == 4


def test_conv_figure_is_the_lectures_example(tmp_path):
    out = tmp_path / "conv.png"
    data = docs_build.build_conv(out)
    assert _is_png(out)
    ref = F.conv2d(torch.from_numpy(data["image"])[None, None], torch.from_numpy(data["kernel"])[None, None])
    assert data["output"].tolist() == ref[0, 0].tolist() == [[4, 3, 4], [2, 4, 3], [2, 3, 4]]


def test_vgg_memory_figure_matches_torchvision_shapes(tmp_path):
    import torchvision

    out = tmp_path / "vgg.png"
    data = docs_build.build_vgg_memory(out)
    assert _is_png(out)
    with torch.device("meta"):
        ref = torchvision.models.vgg16()
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel()))
             for m in ref.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.Linear))]
    ref(torch.empty(1, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    assert data["activations"] == [3 * 224 * 224, *sizes]
    assert sum(data["params"]) == sum(p.numel() for p in ref.parameters()) == 138_357_544


def test_compare_figure_counts_match_torchvision(tmp_path):
    import torchvision

    out = tmp_path / "compare.png"
    data = docs_build.build_compare(out, ["alexnet", "vgg16", "resnet50", "mobilenet_v1", "lenet5"])
    assert _is_png(out)
    entries = {e.name: e for e in data["entries"]}
    assert {"alexnet", "vgg16", "resnet50", "mobilenet_v1"} <= set(entries)
    for name in ("alexnet", "vgg16", "resnet50"):
        with torch.device("meta"):
            ref = getattr(torchvision.models, name)()
        assert entries[name].params == sum(p.numel() for p in ref.parameters())
    assert "lenet5" in data["skipped"]


def test_build_rejects_an_unknown_figure(capsys):
    with pytest.raises(SystemExit) as exc:
        docs_build.main(["sobel", "kernelz"])
    assert exc.value.code == 2
    assert "unknown figure kernelz: choose from sobel, kernels" in capsys.readouterr().err


def _web_support():
    spec = importlib.util.spec_from_file_location("web_support", Path(__file__).resolve().parents[1] / "web" / "_support.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.e2e
@pytest.mark.xdist_group("web")
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (sudo apt-get install chromium)")
def test_explorer_screenshot_shows_the_drawn_seven():
    """The code `make docs` uses for docs/img/lecture-explorer.png, run against the web tests' trained lenet5."""
    from PIL import Image

    support = _web_support()
    out = support.ARTIFACTS / "docs" / "lecture-explorer.png"
    out.unlink(missing_ok=True)
    # in a process of its own: Playwright's sync API refuses to start inside another
    # test's running browser session (the e2e tests share this xdist group)
    subprocess.run([sys.executable, "-m", "convscope.docs_build", "explorer", "--out", str(out.parent),
                    "--run", str(support.trained_run())], check=True, timeout=300)
    assert _is_png(out)
    with Image.open(out) as img:
        width, height = img.size
        pixels = np.asarray(img.convert("L"), dtype=np.float32)
    assert width == 1280 and height > 900  # the full page: every layer is drawn below the fold
    assert pixels.std() > 20  # not a blank page
