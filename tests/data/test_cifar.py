"""cifar10: a tiny set written in CIFAR-10's own python format, read back.

The format (Krizhevsky's page): each batch is a pickled dict with "data", a
uint8 array (N, 3072) holding the 1024 red, then 1024 green, then 1024 blue
values of each 32x32 image in row-major order, and "labels"; batches.meta
holds "label_names". Writing it with pickle here is the oracle.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from convscope.data import get_dataset

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(root: Path, per_batch: int = 20, n_test: int = 30, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {"train": [], "train_labels": []}
    for i in range(1, 6):
        images = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
        labels = [int(v) for v in np.arange(per_batch) % 10]
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump({"data": images.reshape(per_batch, 3072), "labels": labels}, fh)
        written["train"].append(images)
        written["train_labels"] += labels
    test = rng.integers(0, 256, size=(n_test, 3, 32, 32), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, 10, size=n_test)]
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": test.reshape(n_test, 3072), "labels": test_labels}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": NAMES, "num_vis": 3072}, fh)
    written["train"] = np.concatenate(written["train"])
    written.update(test=test, test_labels=test_labels)
    return written


def test_cifar_round_trip(tmp_path):
    written = write_cifar(tmp_path)
    ds = get_dataset("cifar10", root=str(tmp_path))
    assert ds.classes == NAMES and ds.input_size == (3, 32, 32) and ds.kind == "natural"
    # test split: exactly the test batch, in order, channels first (R plane = first 1024 bytes)
    assert torch.equal(ds.test.images, torch.from_numpy(written["test"]))
    assert ds.test.labels.tolist() == written["test_labels"]
    # train + val: the five batches, every image once; val stratified (10 per class -> 1)
    assert (len(ds.train), len(ds.val)) == (90, 10)
    assert np.bincount(ds.val.labels.numpy()).tolist() == [1] * 10
    ours = torch.cat([ds.train.images, ds.val.images]).reshape(100, -1).numpy()
    ref = written["train"].reshape(100, -1)
    assert sorted(map(bytes, ours)) == sorted(map(bytes, ref))
    # per-channel statistics of the train split
    x = ds.train.images.double() / 255
    assert list(ds.mean) == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-5)
    assert list(ds.std) == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-5)
    assert ds.preprocessing()["channels"] == 3 and len(ds.preprocessing()["mean"]) == 3


def test_cifar_root_may_name_the_batches_folder(tmp_path):
    write_cifar(tmp_path)
    ds = get_dataset("cifar10", root=str(tmp_path / "cifar-10-batches-py"), image_size=16)
    assert ds.input_size == (3, 16, 16) and len(ds.test) == 30


def test_cifar_missing_says_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download"):
        get_dataset("cifar10", root=str(tmp_path))


def test_cifar_incomplete_folder_names_it(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        get_dataset("cifar10", root=str(tmp_path))


def test_cifar_damaged_batch_is_a_clear_error(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="damaged"):
        get_dataset("cifar10", root=str(tmp_path))
