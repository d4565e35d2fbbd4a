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
