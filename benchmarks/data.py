"""Dataset load times: prints JSON.

    .venv/bin/python benchmarks/data.py

fashion-mnist (60k + 10k images, 28x28) is loaded from the Debian gzipped
IDX files; the issue asks for under 2 s. Because the machines are shared and
noisy, each time is also given as a ratio to a baseline measured in the same
process: `np.load` of the same images already decompressed into a .npy file
(what a cache would give), so the ratio says what skipping a cache costs.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from convscope.data import get_dataset  # noqa: E402
from convscope.data._idx import read_idx  # noqa: E402
from convscope.data.fashion import DEBIAN_DIR  # noqa: E402


def timed(fn, repeat: int = 3) -> float:
    """Median wall time of `repeat` calls, in seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> dict:
    torch.set_num_threads(1)
    out: dict = {"threads": 1}
    t = time.perf_counter()
    get_dataset("fashion-mnist")
    out["fashion_mnist_first_load_s"] = round(time.perf_counter() - t, 3)
    out["fashion_mnist_load_s"] = round(timed(lambda: get_dataset("fashion-mnist")), 3)
    out["fashion_mnist_read_idx_s"] = round(timed(lambda: [read_idx(DEBIAN_DIR / f"{s}-images-idx3-ubyte.gz")
                                                           for s in ("train", "t10k")]), 3)
    with tempfile.TemporaryDirectory() as tmp:
        for s in ("train", "t10k"):
            np.save(Path(tmp, f"{s}.npy"), read_idx(DEBIAN_DIR / f"{s}-images-idx3-ubyte.gz"))
        baseline = timed(lambda: [np.load(Path(tmp, f"{s}.npy")) for s in ("train", "t10k")])
    out["baseline_npy_load_s"] = round(baseline, 4)
    out["fashion_mnist_load_over_npy"] = round(out["fashion_mnist_load_s"] / baseline, 1)
    out["mnist_5k_load_s"] = round(timed(lambda: get_dataset("mnist")), 3)
    out["synthetic_load_s"] = round(timed(lambda: get_dataset("synthetic")), 3)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
