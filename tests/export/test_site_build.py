"""What the site computes at build time, against the server on the same run: the Grad-CAM
graph (export/gradcam.py) against /api/gradcam (Explorer.gradcam, Captum), the reason given
where a site has none, and the misclassified samples against /api/samples?wrong=1."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import torch


def _explorer(name: str):
    from convscope.models import create_model
    from convscope.web.engine import Explorer

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
        x = ex.snapshot.prepare(img, preprocess=False)[0]
        ans = ex.predict(img, preprocess=False)
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


def test_the_site_keeps_the_servers_misclassified_samples_and_whole_large_images(tmp_path):
    """samples_wrong.json is /api/samples?wrong=1 of the same run (the first 1,000 test images
    evaluated); a sample larger than the 64 px thumbnail travels whole beside it."""
    import io
    import json

    from PIL import Image

    from convscope.data import get_dataset
    from convscope.errors import UserError
    from convscope.export.site import WRONG_KEPT, build_site, find_ort_web
    from convscope.models import create_model
    from convscope.runs import save_run
    from convscope.web.engine import Explorer

    try:
        find_ort_web()
    except UserError as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(0)
    root = tmp_path / "pictures"
    for cls, channel in (("red", 0), ("blue", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(20):
            a = rng.integers(0, 255, (90, 90, 3), dtype=np.uint8)
            a[..., channel] = rng.integers(100, 255, (90, 90))
            Image.fromarray(a).save(root / cls / f"{i}.png")
    ds = get_dataset(f"folder:{root}", image_size=80)
    torch.manual_seed(3)
    run = save_run(tmp_path / "run", create_model("convnet_small", in_chans=3, num_classes=2),
                   {"model": {"name": "convnet_small", "kwargs": {"in_chans": 3, "num_classes": 2}},
                    "dataset": f"folder:{root}", "image_size": 80, "classes": ds.classes,
                    "input_size": [3, 80, 80], "normalization": ds.normalization(),
                    "preprocessing": ds.preprocessing()})
    site = tmp_path / "site"
    build_site(run, site)
    wrong = json.loads((site / "samples_wrong.json").read_text())
    first = json.loads((site / "samples.json").read_text())
    ex = Explorer.from_run(run)
    want = ex.samples(offset=0, limit=WRONG_KEPT, wrong=True)
    assert want["total"] > 0  # random weights: some are wrong
    key = lambda items: [(s["index"], s["truth"], s["predicted"], s["png"]) for s in items]  # noqa: E731
    assert key(wrong["samples"]) == key(want["samples"])
    assert (wrong["total"], wrong["evaluated"], wrong["kept"]) == (want["total"], want["evaluated"], len(want["samples"]))
    for item in first["samples"] + wrong["samples"]:
        whole = np.asarray(Image.open(io.BytesIO(base64.b64decode(item["image"].split(",", 1)[1]))))
        thumb = Image.open(io.BytesIO(base64.b64decode(item["png"].split(",", 1)[1])))
        assert max(thumb.size) == 64 and whole.shape == (80, 80, 3)
        # what the server feeds for this sample is what the whole image gives
        np.testing.assert_array_equal(ex.snapshot.prepare(whole, preprocess=False)[0].numpy(),
                                      ex.snapshot.prepare(ex.sample_image(item["index"])[0], preprocess=False)[0].numpy())
