"""Fixtures for the explorer's API tests: a random-weight lenet5 for the contract,
a trained one (cached) for "does a drawn 1 read as 1"."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("web_support", Path(__file__).with_name("_support.py"))
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

MNIST_CONFIG = {
    "model": {"name": "lenet5", "kwargs": {}}, "dataset": "mnist",
    "classes": [str(i) for i in range(10)], "input_size": [1, 28, 28],
    "normalization": {"mean": [0.1307], "std": [0.3081]},
    "preprocessing": {"kind": "digits", "invert": False},
}


@pytest.fixture(scope="session")
def web_support():
    return support


@pytest.fixture(scope="session")
def random_explorer():
    import torch

    from convscope.models import create_model
    from convscope.web import Explorer

    torch.manual_seed(1234)
    return Explorer(create_model("lenet5"), dict(MNIST_CONFIG))


@pytest.fixture(scope="session")
def client(random_explorer):
    from fastapi.testclient import TestClient

    from convscope.web import create_app

    with TestClient(create_app(explorer=random_explorer), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="session")
def trained_dir() -> Path:
    return support.trained_run()


@pytest.fixture(scope="session")
def trained_client(trained_dir):
    from fastapi.testclient import TestClient

    from convscope.web import create_app

    with TestClient(create_app(trained_dir), base_url="http://127.0.0.1") as c:
        yield c
