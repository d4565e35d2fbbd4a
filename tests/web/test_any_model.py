"""The explorer serves any zoo network: every layer is there, computed as the network computes it."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch

from convscope.web.encoding import decode_maps

pytestmark = pytest.mark.xdist_group("web")


@pytest.fixture(scope="module")
def explorers():
    from convscope.models import create_model
    from convscope.web import Explorer

    cache = {}

    def get(name, **kw):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = Explorer(create_model(name, **kw), None, random_weights=True)
        return cache[name]
    return get


def _ran_leaves(model, x):
    """Leaf modules that actually run in a forward, found with forward hooks (the oracle)."""
    from convscope.capture import capture

    _, outs = capture(model, x)
    return set(outs)


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "inception_v4", "nasnet_a_mobile", "mobilenet_v1",
                                  "convnet_small"])
def test_every_layer_that_runs_is_shown_or_folded_into_a_shown_one(explorers, name):
    e = explorers(name)
    assert e.graph.gm is not None, e.graph.note
    named = {layer.get("module") for layer in e.layers}
    folded = {f.split(" (")[0] for layer in e.layers for f in layer["folded"]}
    missing = _ran_leaves(e.model, torch.zeros(1, *e.input_size)) - named - folded
    assert not missing, f"{name}: layers dropped from the graph: {sorted(missing)[:5]}"
    names = [layer["name"] for layer in e.layers]
    assert len(names) == len(set(names))
    seen = set()
    for layer in e.layers:  # forward order: every input is described before its reader
        assert set(layer["inputs"]) <= seen, layer["name"]
        seen.add(layer["name"])


@pytest.mark.parametrize("name, kind", [("resnet18", "add"), ("densenet121", "concat"),
                                        ("inception_v4", "concat"), ("nasnet_a_mobile", "concat")])
def test_joins_are_nodes_of_their_own_with_several_inputs(explorers, name, kind):
    joins = [layer for layer in explorers(name).layers if layer["kind"] == kind]
    assert joins and max(len(j["inputs"]) for j in joins) >= 2


def test_resnet_add_node_holds_the_sum_and_the_relu_after_it(explorers):
    """layer1.0's addition: bn2's output plus the block input, then the block's ReLU (torch by hand)."""
    from convscope.capture import capture

    e = explorers("resnet18")
    x = torch.randn(1, 3, 224, 224)
    _, outs = capture(e.model, x, ["layer1.0.bn2", "maxpool"])
    want = torch.relu(outs["layer1.0.bn2"] + outs["maxpool"])[0]
    _, values = e.snapshot.forward(x)
    add = next(layer for layer in e.layers if layer["name"] == "layer1.0.add")
    assert add["inputs"] == ["layer1.0.bn2", "maxpool"] and add["activation"] == "relu"
    torch.testing.assert_close(e.value(values, "layer1.0.add"), want)


@pytest.mark.parametrize("name", ["resnet18", "inception_v4", "nasnet_a_mobile"])
def test_receptive_fields_match_the_summary_through_every_branch(explorers, name):
    from convscope.analysis import summary

    e = explorers(name)
    rows = {r.name: r for r in summary(e.model).rows}
    compared = 0
    for layer in e.layers:
        row = rows.get(layer["name"])
        if row is None or layer["whole_input"] or row.receptive_field_hw is None:
            continue
        assert tuple(int(v) for v in layer["rf"]) == tuple(row.receptive_field_hw), layer["name"]
        compared += 1
    assert compared > 20


def test_params_and_macs_come_from_the_summary(explorers):
    from convscope.analysis import summary

    e = explorers("resnet18")
    rows = {r.name: r for r in summary(e.model).rows}
    conv1 = next(layer for layer in e.layers if layer["name"] == "conv1")
    assert conv1["params"] == rows["conv1"].params == 3 * 64 * 7 * 7
    assert conv1["macs"] == 64 * 112 * 112 * 3 * 7 * 7


def test_a_big_network_answers_with_a_first_screen_under_1mb(explorers):
    import json

    from fastapi.testclient import TestClient

    from convscope.web import create_app

    e = explorers("resnet18")
    with TestClient(create_app(explorer=e), base_url="http://127.0.0.1") as c:
        health = c.get("/api/health").json()
        assert health["random_weights"] is True
        info = c.get("/api/model").json()
        assert info["input_size"] == [3, 224, 224]
        img = np.random.default_rng(0).integers(0, 255, (180, 240, 3), dtype=np.uint8)
        assert c.post("/api/predict", json={"file": _data_url(img, "JPEG")}).status_code == 200
        r = c.post("/api/predict", json={"file": _data_url(img, "PNG")})
        assert r.status_code == 200, r.text
        assert len(r.content) < 1_000_000
        body = r.json()
        assert any("random weights" in w for w in body["warnings"])
        shown = {layer["name"] for layer in body["layers"]}
        assert "input" in shown and len(shown) < len(info["layers"])
        # every layer can be fetched later, paged, for the same input
        name = "layer4.1.add"
        page = c.get("/api/layer", params={"name": name, "input": body["input_id"], "offset": 8,
                                             "limit": 16, "sort": "strength"}).json()
        assert page["total_maps"] == 512 and len(page["maps"]) == 16
        _, values = e.snapshot.forward(e.snapshot.prepare(_pil(img))[0])
        full = e.value(values, name).numpy()
        strength = full.reshape(512, -1).mean(1)
        assert page["maps"] == np.argsort(-strength, kind="stable")[8:24].tolist()
        got = decode_maps(page)
        want = full[page["maps"]]
        span = (want.reshape(16, -1).max(1) - want.reshape(16, -1).min(1)).max()
        np.testing.assert_allclose(got, want, atol=span / 510 + 1e-5)
        assert json.loads(c.get("/api/layer", params={"name": "nope"}).text)["detail"].startswith("no layer")


def test_weights_of_one_unit(explorers):
    from fastapi.testclient import TestClient

    from convscope.web import create_app

    e = explorers("resnet18")
    m = e.model
    with TestClient(create_app(explorer=e), base_url="http://127.0.0.1") as c:
        w = c.get("/api/weights", params={"name": "layer1.0.conv1", "unit": 5}).json()
        np.testing.assert_allclose(w["weight"], m.layer1[0].conv1.weight[5].detach().numpy(), rtol=1e-6)
        fc = c.get("/api/weights", params={"name": "fc", "unit": 7}).json()
        np.testing.assert_allclose(fc["weight"], m.fc.weight[7].detach().numpy(), rtol=1e-6)
        assert fc["bias"] == pytest.approx(float(m.fc.bias[7]))
        bn = c.get("/api/weights", params={"name": "bn1", "unit": 3}).json()
        x = torch.randn(1, 64, 4, 4)
        want = m.bn1.eval()(x)[0, 3]
        torch.testing.assert_close(x[0, 3] * bn["scale"] + bn["shift"], want, rtol=1e-5, atol=1e-5)
        assert c.get("/api/weights", params={"name": "fc", "unit": 5000}).status_code == 422
        assert c.get("/api/weights", params={"name": "maxpool", "unit": 0}).status_code == 404


def _data_url(arr: np.ndarray, fmt: str, **save) -> str:
    buf = io.BytesIO()
    _pil(arr).save(buf, format=fmt, **save)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def _pil(arr):
    from PIL import Image

    return Image.fromarray(arr)


def test_gradcam_for_the_first_and_second_guess_is_the_saliency_modules(explorers):
    """The route's heat map is analysis.saliency's Grad-CAM for the guess asked for."""
    from fastapi.testclient import TestClient

    from convscope.analysis.saliency import saliency_map
    from convscope.web import create_app

    e = explorers("convnet_small")
    with TestClient(create_app(explorer=e), base_url="http://127.0.0.1") as c:
        img = np.random.default_rng(2).random((32, 32)).astype(np.float32)
        body = c.post("/api/predict", json={"image": img.tolist(), "preprocess": False}).json()
        for rank in (0, 1):
            cam = c.get("/api/gradcam", params={"input": body["input_id"], "rank": rank}).json()
            assert cam["target"] == body["top"][rank]["index"] and cam["label"] == body["top"][rank]["label"]
            x = e.snapshot.prepare(img, preprocess=False)[0]
            want, _, layer = saliency_map(e.model, x, method="gradcam", target=cam["target"])
            got = np.frombuffer(base64.b64decode(cam["data"]), np.uint8).reshape(cam["shape"]) / 255
            assert cam["layer"] == layer
            np.testing.assert_allclose(got, want, atol=1 / 255)
        assert c.get("/api/gradcam", params={"rank": 2}).status_code == 422
        assert c.get("/api/gradcam", params={"input": 10**6}).status_code == 410


def test_capture_graph_keeps_what_a_node_computed_before_an_in_place_relu():
    """conv -> ReLU(inplace=True), conv's output also read by an addition: the value kept for
    the conv is its own (negative values included), checked against torch by hand."""
    import torch.nn as nn

    from convscope.capture import capture_graph
    from convscope.web.graph import trace

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.conv(x)
            z = y * 2
            return self.act(y) + z

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(1, 1, 6, 6)
    out, values = capture_graph(trace(net), x)
    want = F_conv(net, x)
    torch.testing.assert_close(values["conv"], want)
    assert (values["conv"] < 0).any()
    torch.testing.assert_close(out, torch.relu(want) + 2 * want)


def F_conv(net, x):
    return torch.nn.functional.conv2d(x, net.conv.weight, net.conv.bias, padding=1).detach()


def test_a_model_fx_cannot_trace_is_shown_as_its_chain_and_says_so():
    """Control flow on a tensor's value defeats torch.fx: the layers come in the order they
    ran (none dropped), their values are the hooks' own, and the description says why."""
    import torch.nn as nn
    from fastapi.testclient import TestClient

    from convscope.web import Explorer, create_app

    class Moody(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(4 * 13 * 13, 3)

        def forward(self, x):
            x = self.pool(torch.relu(self.conv(x)))
            if x.mean() > 0:  # data-dependent: fx cannot trace this
                x = x * 1.0
            return self.fc(x.flatten(1))

    torch.manual_seed(0)
    model = Moody().eval()
    e = Explorer(model, {"classes": ["a", "b", "c"], "input_size": [1, 28, 28],
                         "preprocessing": {"kind": "resize", "size": [28, 28], "channels": 1}})
    info = e.describe()
    assert info["graph"] == "chain" and "torch.fx could not trace" in info["graph_note"]
    assert [layer["name"] for layer in info["layers"]] == ["input", "conv", "pool", "fc"]
    with TestClient(create_app(explorer=e), base_url="http://127.0.0.1") as c:
        img = np.random.default_rng(0).random((28, 28))
        body = c.post("/api/predict", json={"image": img.tolist()}).json()
    x = e.snapshot.prepare(img.astype(np.float32))[0]
    with torch.no_grad():
        want = torch.softmax(model(x).double(), 1)[0].numpy()
    np.testing.assert_allclose(body["probabilities"], want, rtol=1e-6)
    pool = next(layer for layer in body["layers"] if layer["name"] == "pool")
    with torch.no_grad():
        ref = model.pool(torch.relu(model.conv(x)))[0].numpy()
    span = (ref.reshape(4, -1).max(1) - ref.reshape(4, -1).min(1)).max()
    np.testing.assert_allclose(decode_maps(pool), ref, atol=span / 510 + 1e-6)


def test_same_padding_is_given_as_the_rows_and_columns_before_the_input(explorers):
    """NASNet's TF-"same" strided convs: pad_before is what the layer pads, so a dot product
    written out from it is the network's (checked with F.pad + F.conv2d by hand)."""
    import torch.nn.functional as F

    from convscope.capture import capture

    e = explorers("nasnet_a_mobile")
    same = [layer for layer in e.layers if layer["kind"] == "conv" and layer.get("padding_mode") == "same_tf"
            and layer["stride"][0] == 2]
    assert same
    layer = same[0]
    mod = e.model.get_submodule(layer["module"])
    src = layer["inputs"][0]
    x = torch.randn(1, *e.input_size)
    _, values = e.snapshot.forward(x)
    inp = e.value(values, src)[None] if src != "input" else x
    n = inp.shape[-1]
    k, s = layer["kernel"][0], layer["stride"][0]
    total = max((-(-n // s) - 1) * s + k - n, 0)
    pt, pl = layer["pad_before"]
    assert pt == pl == total // 2
    assert layer["padding"] == [pt, total - pt, pl, total - pl]  # [top, bottom, left, right]
    want = F.conv2d(F.pad(inp, (pl, total - pl, pt, total - pt)), mod.weight, mod.bias, stride=s, groups=mod.groups)
    torch.testing.assert_close(e.value(values, layer["name"]), want[0], rtol=1e-4, atol=1e-4)
