"""IDX files (LeCun's MNIST format), read with NumPy: gzip or plain.

Layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions,
then one big-endian int32 per dimension, then the data.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

_UINT8 = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (`.gz` or not), as uint8."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = zlib.decompress(raw, 31)  # 31: gzip header; faster than the gzip module
        except zlib.error as exc:
            raise ValueError(f"{path} is a damaged gzip file ({exc}); reinstall or re-download it") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    if raw[2] != _UINT8:
        raise ValueError(f"{path}: only uint8 IDX files are supported, type code is 0x{raw[2]:02x}")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4).astype(np.int64)
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise ValueError(f"{path} is truncated: header says {tuple(dims)} = {expected} bytes, "
                         f"file holds {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(tuple(dims))
