"""Top-k and confusion matrix against timm and scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from timm.utils import accuracy as timm_accuracy

from convscope.train.metrics import confusion_matrix, per_class_accuracy, topk_accuracy


def test_the_lecture_example_top1_wrong_top2_right():
    probs = torch.tensor([[0.1, 0.5, 0.3, 0.1]])
    assert topk_accuracy(probs, torch.tensor([2]), ks=(1, 2)) == {1: 0.0, 2: 1.0}
    assert topk_accuracy(probs, torch.tensor([2]), ks=1) == 0.0


def test_k_at_or_above_the_number_of_classes_is_always_right():
    logits = torch.randn(50, 4)
    targets = torch.randint(0, 4, (50,))
    assert topk_accuracy(logits, targets, ks=(4, 5, 100)) == {4: 1.0, 5: 1.0, 100: 1.0}


@pytest.mark.parametrize("num_classes", [10, 37])
def test_topk_matches_timm(num_classes):
    logits = torch.randn(300, num_classes)
    targets = torch.randint(0, num_classes, (300,))
    ours = topk_accuracy(logits, targets, ks=(1, 5))
    ref = timm_accuracy(logits, targets, topk=(1, 5))  # percentages
    assert ours[1] == pytest.approx(ref[0].item() / 100)
    assert ours[5] == pytest.approx(ref[1].item() / 100)
    # probabilities give the same answer as logits
    assert topk_accuracy(logits.softmax(1), targets, ks=(1, 5)) == ours


def test_confusion_and_per_class_match_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 400), rng.integers(0, 5, 400)
    ours = confusion_matrix(torch.from_numpy(p), torch.from_numpy(y), 5)
    ref = sk_confusion(y, p, labels=range(5))
    np.testing.assert_array_equal(ours.numpy(), ref)
    pc = per_class_accuracy(ours, list("abcde"))
    assert pc["c"] == pytest.approx(ref[2, 2] / ref[2].sum())


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="at least 1"):
        topk_accuracy(torch.randn(3, 4), torch.tensor([0, 1, 2]), ks=(0,))
    with pytest.raises(ValueError, match="targets must be"):
        topk_accuracy(torch.randn(3, 4), torch.tensor([0, 1]), ks=(1,))
