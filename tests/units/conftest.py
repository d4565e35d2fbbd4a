"""Shared fixtures: a seeded lenet5 run folder over the MNIST digits shipped offline."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def mnist():
    from convscope.data import get_dataset

    return get_dataset("mnist")


@pytest.fixture(scope="session")
def lenet_run(tmp_path_factory, mnist):
    """A run folder holding lenet5 at a seeded random initialisation (seed 3), trained for a few
    hundred steps on 2,000 digits so its units have something to prefer."""
    from convscope.models import create_model
    from convscope.runs import RunDir
    from convscope.train.api import run_config_for

    torch.manual_seed(3)
    model = create_model("lenet5", num_classes=10, in_chans=1)
    perm = torch.randperm(len(mnist.train))[:2000]  # the split is sorted by class
    x = mnist.normalize(mnist.train.images[perm])
    y = mnist.train.labels[perm]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):
        for i in range(0, 2000, 50):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i:i + 50]), y[i:i + 50]).backward()
            opt.step()
    run = tmp_path_factory.mktemp("run") / "lenet"
    config = run_config_for("lenet5", {"num_classes": 10, "in_chans": 1}, mnist, data_name="mnist")
    config["seed"] = 3
    RunDir(run).save(model.eval(), config)
    return run
