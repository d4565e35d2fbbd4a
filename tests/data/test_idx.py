"""The IDX reader against torchvision's (read_sn3_pascalvincent_tensor) on files we write."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from convscope.data._idx import read_idx


def idx_bytes(a: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}i", *a.shape) + a.tobytes()


def test_matches_torchvision_plain_and_gzip(tmp_path):
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    a = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    (tmp_path / "x-idx3-ubyte").write_bytes(idx_bytes(a))
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(a)))
    ref = read_sn3_pascalvincent_tensor(str(tmp_path / "x-idx3-ubyte"))
    for name in ("x-idx3-ubyte", "x-idx3-ubyte.gz"):
        assert torch.equal(torch.from_numpy(read_idx(tmp_path / name).copy()), ref)


def test_bad_files_say_what_is_wrong(tmp_path):
    a = np.zeros((4, 2, 2), dtype=np.uint8)
    (tmp_path / "short").write_bytes(idx_bytes(a)[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + idx_bytes(a)[2:])
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "broken.gz").write_bytes(gzip.compress(idx_bytes(a))[:-8] + b"garbage!")
    with pytest.raises(ValueError, match="damaged"):
        read_idx(tmp_path / "broken.gz")


def write_mnist_raw(folder, n_train=100, n_test=20, gz=False):
    """Four IDX files named as LeCun's (and torchvision's MNIST/raw) are."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8)}
    for stem, a in arrays.items():
        data = idx_bytes(a)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


def test_full_mnist_from_root_offline(tmp_path):
    from convscope.data import get_dataset

    arrays = write_mnist_raw(tmp_path / "MNIST" / "raw", gz=True)
    ds = get_dataset("mnist", root=str(tmp_path))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (90, 10, 20)
    assert torch.equal(ds.test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert ds.kind == "digits" and "IDX files" in ds.source


def test_download_uses_files_torchvision_already_has(tmp_path):
    """download=True goes through torchvision.datasets.MNIST, which finds its raw
    files in place and so downloads nothing."""
    from convscope.data import get_dataset

    arrays = write_mnist_raw(tmp_path / "MNIST" / "raw")
    ds = get_dataset("mnist", root=str(tmp_path), download=True)
    assert torch.equal(ds.test.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    assert "torchvision" in ds.source and len(ds.test) == 20


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    from convscope.data import get_dataset

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried ...")

    monkeypatch.setattr(tvd, "FashionMNIST", offline)
    with pytest.raises(FileNotFoundError, match=r"could not download FashionMNIST .*--data-root"):
        get_dataset("fashion-mnist", root=str(tmp_path), download=True)
