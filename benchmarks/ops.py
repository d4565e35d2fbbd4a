"""Benchmark: convscope.ops.conv2d (NumPy, im2col + BLAS) against torch.nn.functional.conv2d.

Prints JSON. Both run in this process with the same thread count (default 1:
the machines are shared), float32, interleaved, median of several repeats. The figure
that matters is the ratio ours/torch, measured side by side; absolute times
move with the machine's load.

    .venv/bin/python benchmarks/ops.py [--threads 1] [--repeats 15]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

CASES = [
    {"name": "mnist-ish", "x": (32, 16, 28, 28), "w": (32, 16, 3, 3), "padding": 1},
    {"name": "resnet-stage1", "x": (8, 64, 56, 56), "w": (64, 64, 3, 3), "padding": 1},
]


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _compare(ours, theirs, repeats: int) -> dict:
    """Time both, interleaved (ours, theirs, ours, ...) so a change in the machine's load hits both."""
    ours(), theirs()  # warm-up: first calls pay for allocation and BLAS start-up
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t_ours.append(_timed(ours))
        t_theirs.append(_timed(theirs))
    med_ours, med_theirs = statistics.median(t_ours), statistics.median(t_theirs)
    return {"ours_ms": round(med_ours * 1e3, 2), "torch_ms": round(med_theirs * 1e3, 2),
            "ratio": round(med_ours / med_theirs, 2),
            "ratio_of_best": round(min(t_ours) / min(t_theirs), 2)}


def _blas_info() -> list[dict]:
    try:
        import threadpoolctl
    except ImportError:
        return [{"note": "threadpoolctl not installed; see numpy.show_config()"}]
    return [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for d in threadpoolctl.threadpool_info()]


def _run_case(case: dict, rng, repeats: int) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from convscope.ops import conv2d

    x = rng.standard_normal(case["x"], dtype=np.float32)
    w = rng.standard_normal(case["w"], dtype=np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    ours = conv2d(x, w, padding=case["padding"])
    with torch.no_grad():
        ref = F.conv2d(xt, wt, padding=case["padding"]).numpy()
        timing = _compare(lambda: conv2d(x, w, padding=case["padding"]),
                          lambda: F.conv2d(xt, wt, padding=case["padding"]), repeats)
    return {**case, "dtype": str(ours.dtype), "max_abs_diff": float(np.abs(ours - ref).max()), **timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for both numpy's BLAS and torch")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    limiter = None
    try:
        import threadpoolctl  # not a declared dependency: without it numpy's BLAS keeps its own thread count

        limiter = threadpoolctl.threadpool_limits(args.threads)
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    results = [_run_case(case, rng, args.repeats) for case in CASES]
    print(json.dumps({
        "benchmark": "ops.conv2d vs torch.nn.functional.conv2d",
        "threads": args.threads, "repeats": args.repeats, "target_ratio": 3.0,
        "numpy": np.__version__, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "blas": _blas_info(), "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "results": results,
    }, indent=2))
    if limiter is not None:
        limiter.unregister()


if __name__ == "__main__":
    main()
