"""TrainRequest: the one request model of `convscope train`, `train()` and the Train tab.
The oracle for every range is `limits.LIMITS` itself, and for sizes a hand count of weights."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest

from convscope.cli import main
from convscope.errors import UserError
from convscope.limits import LIMITS
from convscope.train.request import SERVER_KEYS, TrainRequest


@pytest.mark.parametrize("key", ["epochs", "batch_size", "lr", "seed", "threads", "pace_ms", "image_size",
                                 "val_fraction", "test_fraction"])
def test_every_number_range_is_the_limits_table(key):
    lim = LIMITS[key]
    step = 1 if lim.kind is int else 1e-9 * max(1.0, abs(lim.high))
    inside = [v for v in (lim.low, lim.high) if v is not None]
    for edge, open_ in ((lim.low, lim.low_open), (lim.high, lim.high_open)):
        value = lim.kind(edge)
        if open_:
            with pytest.raises(UserError, match="^" + re.escape(f"{key} must be {lim.describe()}")):
                TrainRequest.parse({key: value})
        else:
            assert getattr(TrainRequest.parse({key: value}), key) == value
    below, above = lim.kind(inside[0] - step), lim.kind(inside[-1] + step)
    for value in (below, above):
        with pytest.raises(UserError) as err:
            TrainRequest.parse({key: value})
        assert str(err.value).startswith(f"{key} must be {lim.describe()}")


def test_epochs_go_as_far_as_the_limits_say_not_500():
    assert LIMITS["epochs"].high == 100_000
    assert TrainRequest.parse({"epochs": 100_000}, runs_root="/tmp/r").epochs == 100_000
    with pytest.raises(UserError, match="from 1 to 100,000, got 100,001"):
        TrainRequest.parse({"epochs": 100_001}, runs_root="/tmp/r")


@pytest.mark.parametrize("values, message", [
    ({"epochs": True}, "epochs must be a whole number from 1 to 100,000, got bool True"),
    ({"epochs": "3"}, "epochs must be a whole number from 1 to 100,000, got str '3'"),
    ({"epochs": 2.5}, "got 2.5"),
    ({"lr": float("nan")}, "not a finite number"),
    ({"lr": 10**500}, "a number of 501 digits"),
    ({"model": 3}, "model must be a model's name"),
    ({"model": "lenet_5"}, "unknown model 'lenet_5'; did you mean lenet5"),
    ({"data": ["mnist"]}, "data must be a dataset's name"),
    ({"data": "mnsit"}, "unknown dataset 'mnsit'"),
    ({"recipe": "mnist-fastest"}, "unknown recipe 'mnist-fastest'; did you mean mnist-fast"),
    ({"optimizer": "adam"}, "unknown optimizer 'adam'"),
    ({"model_kwargs": [1]}, "model_kwargs must be an object"),
    ({"model_kwargs": {"1x": 1}}, "is not a keyword name"),
    ({"model_kwargs": {"dropout": {"a": 1}}}, "model_kwargs dropout must be a number"),
    ({"model_kwargs": {"num_classes": 10**12}}, "model_kwargs num_classes must be a number"),
    ({"model_kwargs": {"nope": 1}}, "lenet5 does not take nope"),
    ({"out": 3}, "out must be a folder name"),
    ({"resume": "yes"}, "resume must be true or false"),
    ({"warmpu": 0.1}, r"unknown training setting 'warmpu' \(did you mean warmup"),
    ({"nesterov": 1}, "nesterov must be true or false"),
    ({"resume": True}, "--resume needs --out RUN"),
])
def test_bad_values_are_one_line_user_errors(values, message):
    with pytest.raises(UserError, match=message) as err:
        TrainRequest.parse(values)
    assert "\n" not in str(err.value)


def test_the_callers_text_is_quoted_short():
    for values in ({"model": "m" * 100_000}, {"recipe": "r" * 150}, {"data": "d" * 3000},
                   {"out": "../" + "o" * 500}, {"device": "cuda" + "9" * 150}, {"x" * 1000: 1}):
        with pytest.raises(UserError) as err:
            TrainRequest.parse(values, runs_root="/tmp/r")
        text = str(err.value)
        assert max(len(run) for run in text.replace("'", " ").split()) < 60, text
        assert len(text) < 400


def test_a_model_too_big_is_refused_before_anything_is_allocated():
    # vgg11's last layer is 4096 x num_classes (+ biases): with 5 million classes about 20.6 billion weights
    with pytest.raises(UserError) as err:
        TrainRequest.parse({"model": "vgg11", "model_kwargs": {"num_classes": 5_000_000}})
    convs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    body = sum(9 * i * o + o for i, o in convs) + (25088 * 4096 + 4096) + (4096 * 4096 + 4096)  # VGG-11, config A
    want = body + 4096 * 5_000_000 + 5_000_000
    assert f"{want:,} weights" in str(err.value) and LIMITS["parameters"].describe() in str(err.value)
    assert TrainRequest.parse({"model": "vgg11"}).model == "vgg11"  # 132.9 million: fine


def test_a_server_request_is_confined(tmp_path):
    root = tmp_path / "runs"
    req = TrainRequest.parse({"model": "lenet5", "data": "MNIST", "out": "a/b"}, runs_root=root)
    assert req.out == (root / "a" / "b").resolve() and req.data == "mnist"
    default = TrainRequest.parse({"recipe": "fashion-fast"}, runs_root=root)
    assert default.out == root.resolve() / "convnet_small-fashion-mnist"
    (root / "convnet_small-fashion-mnist").mkdir(parents=True)
    assert TrainRequest.parse({"recipe": "fashion-fast"}, runs_root=root).out.name == "convnet_small-fashion-mnist-2"
    for key in ("resume", "overwrite", "download", "data_root", "extra", "augment_options"):
        assert key not in SERVER_KEYS
        with pytest.raises(UserError, match=f"unknown training setting '{key}'"):
            TrainRequest.parse({key: None}, runs_root=root)
    pets = tmp_path / "pets"
    pets.mkdir()
    ok = TrainRequest.parse({"data": f"folder:{tmp_path}/./pets/"}, runs_root=root, data_allowed=[pets])
    assert ok.data == f"folder:{pets.resolve()}"
    with pytest.raises(UserError, match="not a folder this server may read"):
        TrainRequest.parse({"data": f"folder:{pets}"}, runs_root=root)  # no folders given: none allowed
    # the library and the CLI are not confined
    assert TrainRequest.parse({"out": "/anywhere/run", "data": "folder:/any"}).out.as_posix() == "/anywhere/run"


def test_json_round_trip_and_train_kwargs(tmp_path):
    req = TrainRequest.parse({"model": "resnet18", "model_kwargs": {"small_input": True}, "data": "cifar10",
                              "epochs": 3, "lr": 0.1, "momentum": 0.8, "pace_ms": 20, "out": "x"},
                             runs_root=tmp_path)
    again = TrainRequest.parse(json.loads(json.dumps(req.to_json())))
    assert again == req
    kwargs = req.train_kwargs()
    assert kwargs["momentum"] == 0.8 and kwargs["model_kwargs"] == {"small_input": True} and "pace_ms" not in kwargs
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.epochs = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        req.model_kwargs["small_input"] = False  # type: ignore[index]


def test_the_library_and_the_cli_go_through_it(tmp_path, capsys):
    from convscope.train import train

    with pytest.raises(UserError, match="batch_size must be a whole number from 1 to 65,536"):
        train(model="lenet5", data="synthetic", out=tmp_path / "lib", batch_size=0)
    with pytest.raises(UserError, match="model_kwargs must be an object"):
        train(model="lenet5", data="synthetic", out=tmp_path / "lib", model_kwargs=[("dropout", 0.1)])
    assert not (tmp_path / "lib").exists()
    assert main(["train", "--model", "vgg11", "--data", "synthetic", "--model-arg", "num_classes=5000000",
                 "--out", str(tmp_path / "cli")]) == 2
    assert "weights" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()
