"""The model contract, checked on every registered network (timm's test_models, in small).

For each name in `list_models()`, built with num_classes=10 and small_input=True:
a 1x28x28 (MNIST) and a 3x32x32 (CIFAR) batch give finite (2, 10) logits; the
loss reaches every parameter (auxiliary heads included, in train mode); the
forward pass is forward_head(forward_features(x)) in eval mode; reset_classifier
changes the head only; num_features and default_input_size are set.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.models import create_model, list_models

OLD, NEW = 10, 5  # classes before and after reset_classifier
# default_input_size with small_input=True: (C, 32, 32), except LeNet-5 and the explorer's variant,
# whose fc1 reads a 16x5x5 map: it is built for 28x28 digits only
SMALL_SIDE = {"lenet5": 28, "lenet5_harley": 28}


def split_output(out: torch.Tensor | tuple) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(logits, auxiliary logits): a model in train mode may return a tuple whose first
    element is the logits and whose others are auxiliary heads' logits (or None)."""
    if isinstance(out, torch.Tensor):
        return out, []
    assert isinstance(out, tuple) and isinstance(out[0], torch.Tensor), f"unexpected output type {type(out)}"
    return out[0], [a for a in out[1:] if a is not None]


def check_train_step(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    logits, aux = split_output(model(x))
    assert logits.shape == (2, OLD)
    assert torch.isfinite(logits).all()
    target = torch.tensor([1, 7])
    loss = F.cross_entropy(logits, target)
    for a in aux:  # e.g. GoogLeNet's heads, weighted as its paper does
        assert a.shape == (2, OLD) and torch.isfinite(a).all()
        loss = loss + 0.3 * F.cross_entropy(a, target)
    loss.backward()
    missed = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missed, f"no gradient reaches {len(missed)} parameter(s), first {missed[0]!r}"


def check_eval_contract(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert isinstance(out, torch.Tensor), "eval mode returns the logits alone"
        feats = model.forward_features(x)
        assert torch.allclose(model.forward_head(feats), out, atol=1e-5, rtol=1e-4)
        pre = model.forward_head(feats, pre_logits=True)
    assert torch.isfinite(out).all() and out.shape == (2, OLD)
    return pre


def check_reset_classifier(model: nn.Module, x: torch.Tensor, pre_before: torch.Tensor) -> None:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.reset_classifier(NEW)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert model.forward_head(feats).shape == (2, NEW)
        pre_after = model.forward_head(feats, pre_logits=True)
    after = dict(model.named_parameters())
    changed = [n for n, t in before.items() if n not in after or after[n].shape != t.shape
               or not torch.equal(after[n], t)]
    added = [n for n in after if n not in before]
    assert changed, "reset_classifier changed no parameter"
    # the head's last layer(s) map to the classes: the only tensors allowed to change
    for n in changed:
        assert before[n].shape[0] == OLD, f"reset_classifier changed {n!r} {tuple(before[n].shape)}, not a head"
    for n in changed + added:
        if n in after:
            assert after[n].shape[0] == NEW, f"{n!r} {tuple(after[n].shape)} does not map to {NEW} classes"
    assert torch.equal(pre_after, pre_before), "the layers before the classifier changed"


@pytest.mark.parametrize("in_chans,side", [(1, 28), (3, 32)], ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("name", list_models())
def test_model_contract(name, in_chans, side):
    model = create_model(name, num_classes=OLD, in_chans=in_chans, small_input=True)
    assert isinstance(model.num_features, int) and model.num_features > 0
    small = SMALL_SIDE.get(name, 32)
    assert tuple(model.default_input_size) == (in_chans, small, small)
    side = min(side, small)
    x = torch.randn(2, in_chans, side, side)
    check_train_step(model, x)
    pre = check_eval_contract(model, x)
    check_reset_classifier(model, x, pre)
    with pytest.raises(ValueError, match=rf"expects {in_chans} input channel\(s\) but the input has {in_chans + 1}"):
        model(torch.randn(1, in_chans + 1, side, side))


def test_unknown_name_lists_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'vgg61'.*did you mean.*vgg16"):
        create_model("vgg61")
    with pytest.raises(ValueError, match=r"unknown model 'lenet'.*lenet5"):
        create_model("lenet")


@pytest.mark.parametrize("key", ["num_classes", "in_chans"])
@pytest.mark.parametrize("value", [0, -3])
def test_counts_below_one_are_rejected(key, value):
    with pytest.raises(ValueError, match=rf"{key} must be a whole number of at least 1, got {value}"):
        create_model("lenet5", **{key: value})


def test_channel_mismatch_names_both_numbers():
    model = create_model("alexnet", in_chans=1, num_classes=10, small_input=True)
    with pytest.raises(ValueError, match=r"expects 1 input channel\(s\) but the input has 3.*in_chans=3"):
        model(torch.randn(1, 3, 32, 32))


def test_every_family_is_registered():
    names = set(list_models())
    classic = {"lenet5", "alexnet", "alexnet_paper", "zfnet", "googlenet", "googlenet_paper"}
    classic |= {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
    assert classic <= names


# --- the checks above can fail: each catches a model that breaks the contract -------------------


class _Tiny(nn.Module):
    """A minimal contract-following model, broken on purpose by the tests below."""

    def __init__(self, reset_body: bool = False, unused: bool = False, head_skips: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, OLD)
        self.spare = nn.Linear(4, 4) if unused else None
        self.reset_body, self.head_skips = reset_body, head_skips

    def forward_features(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))

    def forward_head(self, x, pre_logits=False):
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        feats = self.forward_features(x)
        return self.fc(feats * 2) if self.head_skips else self.forward_head(feats)

    def reset_classifier(self, num_classes):
        self.fc = nn.Linear(4, num_classes)
        if self.reset_body:
            self.conv = nn.Conv2d(1, 4, 3, padding=1)


def test_checks_pass_on_a_correct_model():
    model, x = _Tiny(), torch.randn(2, 1, 8, 8)
    check_train_step(model, x)
    check_reset_classifier(model, x, check_eval_contract(model, x))


def test_check_catches_a_parameter_without_gradient():
    with pytest.raises(AssertionError, match="no gradient reaches 2 parameter"):
        check_train_step(_Tiny(unused=True), torch.randn(2, 1, 8, 8))


def test_check_catches_forward_not_being_head_of_features():
    with pytest.raises(AssertionError):
        check_eval_contract(_Tiny(head_skips=True), torch.randn(2, 1, 8, 8))


def test_check_catches_reset_classifier_touching_the_body():
    model, x = _Tiny(reset_body=True), torch.randn(2, 1, 8, 8)
    with pytest.raises(AssertionError, match="changed 'conv.weight'"):
        check_reset_classifier(model, x, check_eval_contract(model, x))
