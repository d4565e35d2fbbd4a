"""Stages and heads: every parameter belongs to exactly one stage or to the head."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.models import create_model
from convscope.transfer.stages import head, stage_of, stages

EXPECTED = {
    "lenet5": (["conv1", "conv2", "fc1", "fc2"], ("output",)),
    "resnet18": (["stem", "layer1", "layer2", "layer3", "layer4"], ("fc",)),
    "vgg11_bn": (["block1", "block2", "block3", "block4", "block5", "fc6", "fc7"], ("classifier.fc8",)),
    "alexnet": (["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"], ("classifier.fc8",)),
    "mobilenet_v1": (["stem"] + [f"blocks.ds{i}" for i in range(1, 14)], ("fc",)),
}


def build(name: str) -> nn.Module:
    kw = {} if name == "lenet5" else {"small_input": True, "num_classes": 7}
    return create_model(name, **kw)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stage_names_and_head(name):
    model = build(name)
    names, head_paths = EXPECTED[name]
    assert [s.name for s in stages(model)] == names
    assert head(model).paths == head_paths


@pytest.mark.parametrize("name", sorted(EXPECTED) + ["densenet121", "googlenet"])
def test_every_parameter_in_one_stage_or_the_head(name):
    model = build(name)
    st, hd = stages(model), head(model)
    for key, _ in model.named_parameters():
        owners = [s.name for s in st if s.owns(key)] + (["head"] if hd.owns(key) else [])
        assert len(owners) == 1, (key, owners)
    # the head is exactly what reset_classifier replaces: the oracle is the state dict after it
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_classifier(3)
    changed = {k for k, v in model.state_dict().items() if k not in before or v.shape != before[k].shape
               or not torch.equal(v, before[k])}
    assert changed and all(hd.owns(k) for k in changed)
    assert {k for k in before if hd.owns(k)} == {k for k in changed if k in before}


def test_stage_order_follows_forward_order():
    model = build("resnet18")
    order: list[str] = []
    names = {m: s.name for s in stages(model) for m in s.modules}
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(names[mod])) for m in names]
    model(torch.zeros(1, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert list(dict.fromkeys(order)) == EXPECTED["resnet18"][0]


def test_a_model_may_define_its_stages():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(2, 3)

        def stages(self):
            return [("ab", [self.a, self.b])]

    model = Tiny()
    (only,) = stages(model)
    assert only.name == "ab" and only.paths == ("a", "b")
    assert stage_of("b.running_mean", [only]) == "ab" and stage_of("fc.weight", [only]) is None
    assert head(model).paths == ("fc",)  # no reset_classifier: the last Linear
