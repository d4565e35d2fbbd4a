"""Benchmark: does `convscope.analysis.profile` put the time where it is spent?

The timing claims that tests/analysis/test_profile.py used to assert (they failed on a busy
machine, so they live here now; the test checks the structure with a ticking clock):

  add_up:  the rows add up to the end-to-end time within 15%: `rows_forward_ms /
           end_to_end_ms` (and the backward's) for resnet18 and mobilenet_v1 at 3x64x64,
           vgg11 at 3x32x32, resnet18 at 3x32x32 with backward. Both figures come from the
           same `profile()` call, so the ratio is measured against its own baseline.
  lands:   a layer of 300 elementwise passes (no MACs) between two convolutions takes over 80%
           of the rows' forward time, and the 3x3 convolution before it under a tenth of it.

Prints one JSON object; `holds` says whether each claim held in this run. One torch
thread, the default clock (the thread's CPU time). Options: --repeats N (default 5).

    .venv/bin/python benchmarks/layer_profile.py
"""
from __future__ import annotations

import argparse
import json
import os
import platform

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from convscope.analysis.profile import profile  # noqa: E402

CASES = [("resnet18", "3x64x64", False), ("mobilenet_v1", "3x64x64", False),
         ("vgg11", "3x32x32", False), ("resnet18", "3x32x32", True)]
TOLERANCE = 0.15


class Busy(nn.Module):
    """No MACs at all, but 300 elementwise passes: time that a MAC count cannot see."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(300):
            x = torch.sin(x)
        return x


def add_up(repeats: int) -> dict:
    out = {}
    for name, size, backward in CASES:
        p = profile(name, size, backward=backward, repeats=repeats, warmup=1)
        row = {"end_to_end_ms": round(p.end_to_end_ms, 3), "rows_forward_ms": round(p.rows_forward_ms, 3),
               "ratio": round(p.rows_forward_ms / p.end_to_end_ms, 3)}
        if backward:
            row.update(end_to_end_backward_ms=round(p.end_to_end_backward_ms, 3),
                       rows_backward_ms=round(p.rows_backward_ms, 3),
                       backward_ratio=round(p.rows_backward_ms / p.end_to_end_backward_ms, 3))
        ratios = [row["ratio"]] + ([row["backward_ratio"]] if backward else [])
        row["holds"] = all(abs(r - 1) <= TOLERANCE for r in ratios)
        out[f"{name}_{size}{'_backward' if backward else ''}"] = row
    return out


def lands(repeats: int) -> dict:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Busy(), nn.Conv2d(8, 8, 1))
    p = profile(model, (3, 64, 64), repeats=repeats, warmup=1)
    ms = {r.name: v for r, v in zip(p.summary.rows, p.forward_ms)}
    busy_share = ms["1"] / p.rows_forward_ms
    conv_over_busy = ms["0"] / ms["1"]
    return {"busy_ms": round(ms["1"], 3), "conv3x3_ms": round(ms["0"], 3), "conv1x1_ms": round(ms["2"], 3),
            "busy_share_of_rows": round(busy_share, 3), "conv3x3_over_busy": round(conv_over_busy, 4),
            "holds": busy_share > 0.8 and conv_over_busy < 0.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"machine": {"cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2),
                          "python": platform.python_version(), "torch": torch.__version__},
              "repeats": args.repeats, "tolerance": TOLERANCE,
              "add_up": add_up(args.repeats), "lands": lands(args.repeats)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
