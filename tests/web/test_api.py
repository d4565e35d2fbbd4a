"""The explorer API's contract, checked against torch computing the same network by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convscope.data.preprocess import mnist_style, raw_downsample
from convscope.web.encoding import decode_maps

pytestmark = pytest.mark.xdist_group("web")
NAMES = ["input", "conv1", "pool1", "conv2", "pool2", "fc1", "fc2", "output"]


def by_hand(model, fed: np.ndarray, mean=0.1307, std=0.3081) -> dict[str, torch.Tensor]:
    """LeNet-5 written out with torch.nn.functional: the oracle for every layer."""
    m = model
    x = (torch.from_numpy(fed).float().view(1, 1, 28, 28) - mean) / std
    out = {"input": torch.from_numpy(fed).float().view(1, 1, 28, 28)}
    out["conv1"] = F.relu(F.conv2d(x, m.conv1.weight, m.conv1.bias, padding=2))
    out["pool1"] = F.max_pool2d(out["conv1"], 2)
    out["conv2"] = F.relu(F.conv2d(out["pool1"], m.conv2.weight, m.conv2.bias))
    out["pool2"] = F.max_pool2d(out["conv2"], 2)
    out["fc1"] = F.relu(F.linear(out["pool2"].flatten(1), m.fc1.weight, m.fc1.bias))
    out["fc2"] = F.relu(F.linear(out["fc1"], m.fc2.weight, m.fc2.bias))
    out["output"] = F.linear(out["fc2"], m.output.weight, m.output.bias)
    return {k: v.detach()[0] for k, v in out.items()}


def test_health(client):
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["model"] == "lenet5"


def test_model_layers_in_order_with_torch_shapes(client, random_explorer):
    info = client.get("/api/model").json()
    assert [l["name"] for l in info["layers"]] == NAMES
    ref = by_hand(random_explorer.model, np.zeros((28, 28), np.float32))
    for layer in info["layers"]:
        assert layer["shape"] == list(ref[layer["name"]].shape), layer["name"]
    conv1 = info["layers"][1]
    assert (conv1["kernel"], conv1["stride"], conv1["padding"]) == ([5, 5], [1, 1], [2, 2])
    assert info["classes"] == [str(i) for i in range(10)]


def test_model_sends_the_kernels(client, random_explorer):
    k = client.get("/api/model").json()["kernels"]
    m = random_explorer.model
    for name in ("conv1", "conv2"):
        conv = getattr(m, name)
        assert k[name]["shape"] == list(conv.weight.shape)
        np.testing.assert_allclose(k[name]["weight"], conv.weight.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(k[name]["bias"], conv.bias.detach().numpy(), rtol=1e-6)


def _window_by_gradient(layers, upto: int, y: int, x: int) -> tuple[int, int, int, int]:
    """Input pixels that unit (y, x) of layer `upto` depends on, found by torch's autograd
    through all-ones convolutions with each layer's own kernel, stride and padding."""
    inp = torch.ones(1, 1, 28, 28, requires_grad=True)
    h = inp
    for layer in layers[1:upto + 1]:
        k, s, p = layer["kernel"], layer["stride"], layer["padding"]
        h = F.conv2d(h.sum(1, keepdim=True), torch.ones(1, 1, *k), stride=s, padding=p)
    h[0, 0, y, x].backward()
    ys, xs = np.nonzero(inp.grad[0, 0].numpy())
    return ys.min(), xs.min(), ys.max(), xs.max()


@pytest.mark.parametrize("index", [1, 2, 3, 4])  # conv1, pool1, conv2, pool2
def test_receptive_field_matches_autograd(client, index):
    layers = client.get("/api/model").json()["layers"]
    layer = layers[index]
    _, h, w = layer["shape"]
    for y, x in [(0, 0), (h // 2, w // 3), (h - 1, w - 1)]:
        cy = layer["start"][0] + y * layer["jump"][0]
        cx = layer["start"][1] + x * layer["jump"][1]
        half = (layer["rf"][0] - 1) / 2
        want = (max(0, cy - half), max(0, cx - half), min(27, cy + half), min(27, cx + half))
        assert _window_by_gradient(layers, index, y, x) == want, (layer["name"], y, x)


def test_fc_layers_see_the_whole_input(client):
    for layer in client.get("/api/model").json()["layers"][5:]:
        assert layer["rf"] == [28, 28]


def _digit(size=140, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    img[30:110, 60:75] = 1.0
    img[30:45, 40:100] = rng.uniform(0.3, 1.0, (15, 60))
    return img


def test_predict_matches_torch_layer_by_layer(client, random_explorer):
    img = _digit()
    r = client.post("/api/predict", json={"image": img.tolist()})
    assert r.status_code == 200
    body = r.json()
    fed = mnist_style(img)
    np.testing.assert_allclose(body["input"], fed, atol=6e-5)  # sent rounded to 4 decimals
    np.testing.assert_allclose(body["raw"], raw_downsample(img), atol=6e-5)
    ref = by_hand(random_explorer.model, fed)
    probs = torch.softmax(ref["output"].double(), 0).numpy()
    np.testing.assert_allclose(body["probabilities"], probs, rtol=1e-5, atol=1e-7)
    assert abs(sum(body["probabilities"]) - 1) < 1e-9
    assert [l["name"] for l in body["layers"]] == NAMES
    for layer in body["layers"]:
        want = ref[layer["name"]].numpy()
        spans = np.asarray(layer["map_max"]) - np.asarray(layer["map_min"])
        tol = spans.max() / 255 / 2 + 1e-5  # 8 bits per map
        np.testing.assert_allclose(decode_maps(layer), want, atol=tol, err_msg=layer["name"])
        assert layer["shape"] == list(want.shape)
        assert layer["min"] == pytest.approx(float(want.min()), abs=1e-5)
        assert layer["max"] == pytest.approx(float(want.max()), abs=1e-5)


def test_top_is_sorted_and_labelled(client):
    body = client.post("/api/predict", json={"image": _digit().tolist()}).json()
    probs = body["probabilities"]
    assert len(probs) == 10
    top = body["top"]
    assert [t["probability"] for t in top] == sorted(probs, reverse=True)[:len(top)]
    assert top[0]["label"] == str(int(np.argmax(probs)))
    assert {"label", "probability"} <= set(top[0])


def test_png_and_list_give_the_same_answer(client, web_support):
    img = (np.round(_digit() * 255) / 255).astype(np.float32)  # exactly representable in 8 bits
    a = client.post("/api/predict", json={"image": img.tolist()}).json()
    b = client.post("/api/predict", json={"png": web_support.png_data_url(img)}).json()
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], rtol=1e-5)
    assert a["input"] == b["input"]


def test_transparent_png_counts_as_black(client, web_support):
    img = (np.round(_digit() * 255) / 255).astype(np.float32)
    a = client.post("/api/predict", json={"png": web_support.png_data_url(img)}).json()
    b = client.post("/api/predict", json={"png": web_support.png_data_url(img, "RGBA")}).json()
    assert a["input"] == b["input"]


def test_preprocess_false_feeds_the_raw_downsample(client):
    img = _digit()
    body = client.post("/api/predict", json={"image": img.tolist(), "preprocess": False}).json()
    np.testing.assert_allclose(body["input"], raw_downsample(img), atol=6e-5)
    assert body["input"] == body["raw"]


def test_blank_drawing_is_answered(client):
    body = client.post("/api/predict", json={"image": np.zeros((28, 28)).tolist()}).json()
    assert np.allclose(body["input"], 0) and len(body["probabilities"]) == 10


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'data-testid="draw-canvas"' in page.text
    for src in ("app.js", "network.js", "inspect.js", "arith.js", "colors.js", "engine.js", "graph.js", "style.css"):
        assert client.get(f"/static/{src}").status_code == 200, src
    assert "http://" not in page.text and "https://" not in page.text  # nothing from outside


def test_labels_come_from_the_run_config():
    """A fashion-mnist run: its class names label the answer, and "resize" preprocessing is reported."""
    from fastapi.testclient import TestClient

    from convscope.models import create_model
    from convscope.web import Explorer, create_app

    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    cfg = {"model": {"name": "lenet5"}, "dataset": "fashion-mnist", "classes": names, "input_size": [1, 28, 28],
           "normalization": {"mean": [0.286], "std": [0.353]}, "preprocessing": {"kind": "resize"}}
    with TestClient(create_app(explorer=Explorer(create_model("lenet5"), cfg)), base_url="http://127.0.0.1") as c:
        assert c.get("/api/model").json()["preprocessing"]["kind"] == "resize"
        body = c.post("/api/predict", json={"image": _digit().tolist(), "preprocess": False}).json()
    assert body["top"][0]["label"] == names[int(np.argmax(body["probabilities"]))]


def test_each_answer_names_its_own_input_and_network(random_explorer):
    """Two answers of one image: the same numbers, their own input ids, the network's version."""
    img = _digit()
    first, second = random_explorer.predict(img), random_explorer.predict(img)
    assert second.pop("input_id") == first.pop("input_id") + 1
    assert first == second and first["version"] == random_explorer.snapshot.version


def test_activation_encoding_round_trips_within_8_bits():
    from convscope.web.encoding import encode_maps

    rng = np.random.default_rng(0)
    maps = rng.normal(size=(4, 7, 5)).astype(np.float32) * np.array([1, 10, 0.01, 0])[:, None, None]
    enc = encode_maps("x", maps)
    assert enc["map_min"] == pytest.approx(maps.reshape(4, -1).min(1).tolist())
    back = decode_maps(enc)
    for c in range(4):
        span = maps[c].max() - maps[c].min()
        assert np.abs(back[c] - maps[c]).max() <= span / 510 + 1e-6
    assert len(enc["data"]) == 4 * ((4 * 35 + 2) // 3)  # base64 of 140 bytes


@pytest.mark.parametrize("shape", [(3, 4, 7, 5), (5, 12), (2, 3, 1, 1)])
def test_a_batch_is_encoded_row_by_row_as_one_map_set_would_be(shape):
    """encode_maps_rows (one array operation for all rows) gives, row for row, what
    encode_maps gives (and decodes within 8 bits of the row itself)."""
    from convscope.web.encoding import encode_maps, encode_maps_rows

    rng = np.random.default_rng(1)
    acts = rng.normal(size=shape).astype(np.float32) * 3
    acts[0, 0] = 2.5  # a constant map: span 0
    rows = encode_maps_rows("x", acts)
    assert len(rows) == shape[0]
    for r, enc in enumerate(rows):
        one = acts[r] if acts.ndim == 4 else acts[r].reshape(-1)
        assert enc == encode_maps("x", one)
        back = decode_maps(enc).reshape(one.shape[0] if acts.ndim == 4 else 1, -1)
        flat = one.reshape(back.shape)
        span = flat.max(axis=1) - flat.min(axis=1)
        assert (np.abs(back - flat).max(axis=1) <= span / 510 + 1e-6).all()
    assert rows[0]["map_min"][0] == rows[0]["map_max"][0] == pytest.approx(2.5) if acts.ndim == 4 else True


def test_a_config_whose_classes_do_not_fit_is_refused():
    from convscope.models import create_model
    from convscope.web import Explorer

    with pytest.raises(ValueError, match="names 3 classes but its model has 10 outputs"):
        Explorer(create_model("lenet5"), {"classes": ["a", "b", "c"], "input_size": [1, 28, 28]})


def test_only_engine_js_talks_to_the_network():
    """Every request of the page goes through engine.js (an in-browser engine can replace it)."""
    import re
    from pathlib import Path

    static = Path(__file__).resolve().parents[2] / "src" / "convscope" / "web" / "static"
    for js in static.glob("*.js"):
        text = js.read_text()
        calls = re.findall(r"\bfetch\s*\(|XMLHttpRequest|EventSource\s*\(|[\"'`]/api/", text)  # a call or a URL
        if js.name == "engine.js":
            assert calls, "engine.js makes the requests"
        elif js.name == "engine_ort.js":  # the in-browser engine reads the static site's own files
            assert "/api/" not in text, "the in-browser engine must not call the server's API"
        else:
            assert not calls, f"{js.name} talks to the server directly: {calls}"


def test_optional_parts_are_mounted_when_present(tmp_path, monkeypatch, random_explorer):
    """A units/training router module exposing `router` is included; its script is loaded."""
    import sys
    import types

    from fastapi import APIRouter
    from fastapi.testclient import TestClient

    from convscope.web import app as web_app

    router = APIRouter()

    @router.get("/api/units/ping")
    def ping(request: __import__("fastapi").Request):
        return {"model": request.app.state.explorer.name}

    monkeypatch.setitem(sys.modules, "convscope.web.units_routes", types.SimpleNamespace(router=router))
    (tmp_path / "units.js").write_text("// units")
    (tmp_path / "index.html").write_text((web_app.STATIC / "index.html").read_text())
    monkeypatch.setattr(web_app, "STATIC", tmp_path)
    with TestClient(web_app.create_app(explorer=random_explorer), base_url="http://127.0.0.1") as c:
        assert c.get("/api/units/ping").json() == {"model": "lenet5"}
        assert '<script src="/static/units.js"></script>' in c.get("/").text
        assert "train.js" not in c.get("/").text


@pytest.mark.parametrize("shape, words", [("dot", "tiny"), ("flat", "flat"), ("digit", None)])
def test_answers_not_to_trust_are_flagged(client, shape, words):
    img = np.zeros((280, 280), np.float32)
    if shape == "dot":
        img[130:150, 130:150] = 1
    elif shape == "flat":
        img[135:150, 40:240] = 1
    else:
        img[40:240, 130:150] = 1
        img[40:60, 90:150] = 1
    warnings = client.post("/api/predict", json={"image": img.tolist()}).json()["warnings"]
    if words:
        assert any(words in w for w in warnings), warnings
    else:
        assert not any("tiny" in w or "flat" in w or "ink" in w for w in warnings), warnings


def test_a_swap_replaces_the_network_whole_and_old_inputs_keep_theirs():
    """The Train tab opens a finished run by swapping the engine's snapshot: /api/model and every
    new answer describe the new network (with a new version), while an input answered before the
    swap is still explained by the network that answered it (its layers, its Grad-CAM)."""
    from fastapi.testclient import TestClient

    from convscope.web import Explorer, create_app
    from convscope.web import snapshot as snapshots

    explorer = Explorer.from_name("lenet5")
    client = TestClient(create_app(explorer=explorer), base_url="http://127.0.0.1")
    before = client.get("/api/model").json()
    old = client.post("/api/predict", json={"image": _digit().tolist()}).json()
    explorer.swap(snapshots.from_name("convnet_small"))
    after = client.get("/api/model").json()
    assert (before["model"], after["model"]) == ("lenet5", "convnet_small")
    assert after["version"] == before["version"] + 1 == old["version"] + 1
    assert [l["name"] for l in after["layers"]] != [l["name"] for l in before["layers"]]
    new = client.post("/api/predict", json={"image": _digit().tolist()}).json()
    assert new["version"] == after["version"] and [l["name"] for l in new["layers"]][:2] == \
        [l["name"] for l in after["layers"]][:2]
    kept = client.get("/api/layer", params={"name": "conv1", "input": old["input_id"]}).json()
    assert kept["version"] == before["version"] and kept["shape"] == old["layers"][1]["shape"]
    assert kept["data"] == old["layers"][1]["data"]  # the old network's own values, not the new one's
