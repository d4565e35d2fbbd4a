"""Fine-tuning from a related source beats training from scratch at small k, on the same budget.

The source: a lenet5 trained (3 epochs, plain images) on the offline MNIST training split. The
target: 1 and 3 images per digit drawn from the validation split, which the
source never trained on, scored on the test split. Both arms get the same
budget (2 epochs of 256 images: the fine-tune spends one on the new head alone,
then one on everything; scratch trains two).

Measured (LeCun's lenet5, 120-84-10; seeds 0-2, `transfer_vs_scratch(..., seed=s)`, one thread):
    k=1: fine-tune 0.807-0.939, scratch 0.101-0.235, gain 0.614-0.728
    k=3: fine-tune 0.936-0.948, scratch 0.104-0.239, gain 0.698-0.832
so the test asks for a gain of at least 0.5 and a fine-tuned top-1 of at least
0.75 at seed 0. A fine-tune that does not start from the source's weights (or
freezes the wrong thing, or trains nothing) lands near scratch and fails.
"""
from __future__ import annotations

import dataclasses

import pytest

from convscope.transfer.small_data import transfer_vs_scratch

MIN_GAIN = 0.5
MIN_FINETUNE = 0.75


@pytest.fixture(scope="module")
def mnist():
    from convscope.data import get_dataset

    return get_dataset("mnist")


@pytest.fixture(scope="module")
def digits_source(mnist, tmp_path_factory):
    from convscope.train import train

    out = tmp_path_factory.mktemp("digits") / "source"
    # plain images: 3 epochs of the digits preset's elastic moves leave the source too weak to say much
    return train(model="lenet5", data=mnist, out=out, epochs=3, batch_size=64, lr=0.05, seed=0,
                 progress=False, threads=1, augment="none")


def test_finetuning_a_related_source_beats_scratch_at_small_k(mnist, digits_source, tmp_path):
    target = dataclasses.replace(mnist, train=mnist.val)  # digits the source never trained on
    result = transfer_vs_scratch(digits_source, target, tmp_path / "tvs", shots=(1, 3), epochs=1,
                                 freeze_epochs=1, min_epoch=256, batch_size=32, seed=0, val_per_class=4,
                                 progress=False)
    for row in result["rows"]:
        assert row["per_class_used"] == row["k"]
        assert row["gain"] == pytest.approx(row["finetune_top1"] - row["scratch_top1"])
        assert row["finetune_top1"] >= MIN_FINETUNE, row
        assert row["gain"] >= MIN_GAIN, row
