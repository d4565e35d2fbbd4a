"""convscope.capture against the oracle of calling the submodules by hand."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.capture import Capture, capture, leaf_names
from convscope.errors import UserError
from convscope.models import create_model


class Branchy(nn.Module):
    """A tree with nesting, two branches and an in-place ReLU after a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True))
        self.block = nn.ModuleDict({"left": nn.Conv2d(4, 3, 1), "right": nn.Sequential(nn.Conv2d(4, 2, 3, padding=1))})
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(5 * 8 * 8, 3)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.block["left"](x), self.block["right"](x)], 1)
        return self.fc(self.drop(x).flatten(1))


def test_nested_names_match_manual_calls():
    model = Branchy().eval()
    x = torch.randn(2, 1, 8, 8)
    out, outs = capture(model, x, ["stem.0", "stem", "block.left", "block.right.0"])
    conv = model.stem[0](x)                       # before the in-place ReLU
    stem = torch.relu(conv)
    torch.testing.assert_close(outs["stem.0"], conv)
    assert (outs["stem.0"] < 0).any()             # the in-place ReLU did not overwrite what was caught
    torch.testing.assert_close(outs["stem"], stem)
    torch.testing.assert_close(outs["block.left"], model.block["left"](stem))
    torch.testing.assert_close(outs["block.right.0"], model.block["right"][0](stem))
    torch.testing.assert_close(out, model(x))
    assert list(outs) == ["stem.0", "stem", "block.left", "block.right.0"]  # the order they ran


def test_resnet_stage_and_inner_conv():
    model = create_model("resnet18", num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64)
    logits, outs = capture(model, x, ["layer1", "layer2.0.conv1"])
    with torch.no_grad():
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        l1 = model.layer1(stem)
        inner = model.layer2[0].conv1(l1)
        want = model(x)
    torch.testing.assert_close(outs["layer1"], l1)
    torch.testing.assert_close(outs["layer2.0.conv1"], inner)
    torch.testing.assert_close(logits, want)


def test_none_takes_every_leaf_but_dropout():
    model = Branchy().eval()
    _, outs = capture(model, torch.randn(1, 1, 8, 8))
    assert set(outs) == {"stem.0", "stem.1", "block.left", "block.right.0", "fc"}
    assert "drop" not in leaf_names(model)


def test_unknown_name_is_a_user_error_with_a_suggestion():
    with pytest.raises(UserError, match="no layer named 'stem.9'.*stem.0"):
        capture(Branchy(), torch.randn(1, 1, 8, 8), ["stem.9"])


def test_context_manager_over_many_forwards_and_hooks_removed():
    model = Branchy().eval()
    with Capture(model, ["block.left"]) as cap:
        for _ in range(3):
            x = torch.randn(1, 1, 8, 8)
            with torch.no_grad():
                model(x)
                want = model.block["left"](model.stem(x))
            torch.testing.assert_close(cap.outputs["block.left"], want)
    assert all(not m._forward_hooks for m in model.modules())


def test_detach_false_keeps_the_graph():
    model = Branchy().eval()
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    _, outs = capture(model, x, ["block.left"], detach=False)
    outs["block.left"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    _, outs = capture(model, x, ["block.left"])
    assert not outs["block.left"].requires_grad
