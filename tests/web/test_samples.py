"""Samples: the run's own test split with true labels, and the ones the network gets wrong."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.xdist_group("web")


def test_samples_come_from_the_test_split_and_wrong_ones_are_wrong(tmp_path):
    from fastapi.testclient import TestClient
    from PIL import Image

    from convscope.data import get_dataset
    from convscope.models import create_model
    from convscope.train.checkpoint import save_run
    from convscope.web import create_app

    torch.manual_seed(0)
    model = create_model("lenet5")
    ds = get_dataset("mnist")
    config = {"model": {"name": "lenet5", "kwargs": {}}, "dataset": "mnist", "classes": ds.classes,
              "input_size": [1, 28, 28], "normalization": ds.normalization(), "preprocessing": ds.preprocessing()}
    run = save_run(tmp_path / "run", model, config)
    with TestClient(create_app(run), base_url="http://127.0.0.1") as c:
        page = c.get("/api/samples", params={"limit": 5}).json()
        assert page["total"] == len(ds.test)
        for s in page["samples"]:
            png = Image.open(io.BytesIO(base64.b64decode(s["png"].split(",", 1)[1])))
            np.testing.assert_array_equal(np.asarray(png), ds.test.images[s["index"], 0].numpy())
            assert s["truth"] == int(ds.test.labels[s["index"]]) and s["label"] == ds.classes[s["truth"]]
        wrong = c.get("/api/samples", params={"wrong": 1, "limit": 10}).json()
        with torch.inference_mode():
            n = wrong["evaluated"]
            pred = model.eval()(ds.normalize(ds.test.images[:n])).argmax(1)
        want = torch.nonzero(pred != ds.test.labels[:n]).flatten().tolist()
        assert wrong["total"] == len(want) and [s["index"] for s in wrong["samples"]] == want[:10]
        for s in wrong["samples"]:
            assert s["predicted"] == int(pred[s["index"]]) != s["truth"]
        body = c.post("/api/predict", json={"sample": want[0]}).json()
        assert body["sample"]["truth"] == int(ds.test.labels[want[0]])
        assert body["top"][0]["index"] == int(pred[want[0]])
        assert c.post("/api/predict", json={"sample": 10**9}).status_code == 422
        assert c.get("/api/samples", params={"limit": 0}).status_code == 422


def test_a_model_without_a_run_has_no_samples_and_says_why():
    from fastapi.testclient import TestClient

    from convscope.web import create_app

    with TestClient(create_app(model="lenet5"), base_url="http://127.0.0.1") as c:
        r = c.get("/api/samples")
        assert r.status_code == 404 and "upload" in r.json()["detail"]
        assert c.get("/api/health").json()["random_weights"] is True
