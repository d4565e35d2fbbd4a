"""Every rank of the top-k answer, in /api/predict and `convscope predict`, against softmax by hand.

The network's last linear layer is set to weights 0 and a bias of chosen logits, so
the answer is known before it is asked: the order of the classes, their
probabilities (written out with math.exp), and their labels, which come from a
permuted class list so that a label looked up by the wrong index shows.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

pytestmark = pytest.mark.xdist_group("web")

LOGITS = [0.3, 2.0, -1.0, 1.55, 1.2, 0.0, 2.6, -0.5, 0.9, 0.6]  # every gap >= 0.1
CLASSES = ["seven", "two", "zero", "nine", "four", "one", "eight", "three", "six", "five"]
# by hand: classes sorted by logit, highest first
ORDER = [6, 1, 3, 4, 8, 9, 0, 5, 7, 2]


def softmax_by_hand(z: list[float]) -> list[float]:
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


PROBS = softmax_by_hand(LOGITS)


def fixed_logits_lenet() -> nn.Module:
    from convscope.models import create_model

    torch.manual_seed(0)
    model = create_model("lenet5").eval()
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(LOGITS))
    return model


def config() -> dict:
    return {"convscope_version": "0.1.0", "model": {"name": "lenet5", "kwargs": {}}, "dataset": "mnist",
            "classes": list(CLASSES), "input_size": [1, 28, 28],
            "normalization": {"mean": [0.1307], "std": [0.3081]},
            "preprocessing": {"kind": "digits", "size": [28, 28], "channels": 1, "invert": False},
            "recipe": {}, "seed": 0, "versions": {}}


def test_the_hand_computation_itself():
    assert sorted(range(10), key=lambda i: -LOGITS[i]) == ORDER
    assert PROBS[6] == pytest.approx(math.exp(2.6) / sum(math.exp(v) for v in LOGITS))


def check_ranks(top: list[dict], k: int, *, with_index: bool = True) -> None:
    assert len(top) == k, top
    for rank, t in enumerate(top):
        want = ORDER[rank]
        assert t["label"] == CLASSES[want], (rank, top)
        assert t["probability"] == pytest.approx(PROBS[want], rel=1e-6, abs=1e-9), (rank, top)
        if with_index or "index" in t:
            assert t["index"] == want, (rank, top)


@pytest.fixture(scope="module")
def fixed_client():
    from fastapi.testclient import TestClient

    from convscope.web import Explorer, create_app

    with TestClient(create_app(explorer=Explorer(fixed_logits_lenet(), config())), base_url="http://127.0.0.1") as c:
        yield c


@pytest.mark.parametrize("preprocess", [True, False])
def test_api_every_rank_and_every_probability(fixed_client, preprocess):
    img = np.zeros((56, 56))
    img[10:46, 25:31] = 1.0
    r = fixed_client.post("/api/predict", json={"image": img.tolist(), "preprocess": preprocess})
    assert r.status_code == 200, r.text
    body = r.json()
    np.testing.assert_allclose(body["probabilities"], PROBS, rtol=1e-6)  # class i's probability at i
    assert len(body["top"]) >= 5
    check_ranks(body["top"], len(body["top"]), with_index=False)


def test_api_lists_the_classes_in_the_runs_order(fixed_client):
    assert fixed_client.get("/api/model").json()["classes"] == CLASSES


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
    from PIL import Image

    from convscope.train.checkpoint import save_run

    root = tmp_path_factory.mktemp("fixed")
    run = save_run(root / "run", fixed_logits_lenet(), config())
    a = np.zeros((28, 28), np.uint8)
    a[5:23, 13:16] = 255
    Image.fromarray(a).save(root / "one.png")
    Image.fromarray(255 - a).save(root / "inverted.png")
    return run, [str(root / "one.png"), str(root / "inverted.png")]


@pytest.mark.parametrize("k", [10, 3])
def test_predict_command_every_rank(fixed_run, capsys, k):
    from convscope.cli import main

    run, images = fixed_run
    assert main(["predict", str(run), *images, "--top", str(k), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == images  # in the order given
    for r in results:
        check_ranks(r["top"], k)


def test_predict_command_text_names_the_ranks_in_order(fixed_run, capsys):
    from convscope.cli import main

    run, images = fixed_run
    assert main(["predict", str(run), images[0], "--top", "4"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(images[0])
    words = [w for w in line[len(images[0]):].replace(",", " ").split() if w in CLASSES]
    assert words == [CLASSES[i] for i in ORDER[:4]], line
    for i in ORDER[:4]:
        assert f"{100 * PROBS[i]:.1f}%" in line, line
