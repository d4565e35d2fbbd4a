"""The site's Grad-CAM graph (export/gradcam.py) against the server's /api/gradcam
(Explorer.gradcam, Captum) on the same inputs, and the reason given where a site has none."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import torch


def _explorer(name: str):
    from convscope.models import create_model
    from convscope.web.inference import Explorer

    torch.manual_seed(7)
    return Explorer(create_model(name), {"classes": [str(i) for i in range(10)]})


@pytest.mark.parametrize("name", ["lenet5", "convnet_small"])
def test_the_exported_gradient_graph_gives_the_servers_map(tmp_path, name):
    from convscope.export.gradcam import export_gradcam, run_gradcam

    ex = _explorer(name)
    info = export_gradcam(ex.model, ex.input_size, ex.num_classes, tmp_path)
    assert info.get("onnx") == "gradcam.onnx", info
    data = (tmp_path / "gradcam.onnx").read_bytes()
    rng = np.random.default_rng(1)
    real = 0
    for _ in range(3):
        img = (rng.random(ex.input_size[1:]) > 0.7).astype(np.float32)  # a speckled drawing
        x = ex.prepare(img, preprocess=False)
        ans = ex.compute(x)
        for rank in (0, 1):
            want = ex.gradcam(input_id=ans["input_id"], rank=rank)
            assert want["layer"] == info["layer"]
            heat = run_gradcam(data, x.numpy(), want["target"], ex.num_classes)
            got = np.rint(np.clip(heat, 0, 1) * 255).astype(int)
            ref = np.frombuffer(base64.b64decode(want["data"]), np.uint8).reshape(want["shape"]).astype(int)
            assert got.shape == ref.shape == tuple(ex.input_size[1:])
            assert np.abs(got - ref).max() <= 1  # one 8-bit level where float sums round apart
            real += int(ref.max() == 255 and (ref < 128).any())  # a map with a place, not all zero
    assert real >= 3


def test_a_network_too_big_for_the_site_gets_a_reason_and_no_graph(tmp_path):
    from convscope.export.gradcam import export_gradcam

    ex = _explorer("lenet5")
    info = export_gradcam(ex.model, ex.input_size, ex.num_classes, tmp_path, max_params=1000)
    assert "onnx" not in info and not (tmp_path / "gradcam.onnx").exists()
    assert "parameters" in info["unavailable"] and "convscope serve" in info["unavailable"]
