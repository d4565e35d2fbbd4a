"""Benchmark: `convscope.analysis.summary` over the whole zoo, and VGG16 against torchinfo.

Prints one JSON object:
  zoo:    every registered model summarised at its native resolution in this one
          process: total seconds and peak resident memory (goals: < 30 s, < 600 MB).
          `import torch` alone is ~690 MB resident with this (CUDA) wheel, and the first
          meta-device operation loads torch's Python meta kernels (~190 MB), so the
          memory the summaries themselves add is reported apart (`peak_rss_over_warmup_mb`)
  vgg16:  three fresh subprocesses, each reporting its own time and peak RSS:
          `baseline` (imports only), `convscope` (summary on the meta device) and
          `torchinfo` (torchinfo.summary, which allocates the weights and runs a real
          forward). The machine is shared and noisy: compare the ratios.

    .venv/bin/python benchmarks/summary.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from convscope.models import create_model
what = sys.argv[1]
t0 = time.perf_counter()
if what == "convscope":
    from convscope.analysis import summary
    s = summary("vgg16")
    result = {"total_params": s.total_params, "total_macs": s.total_macs}
elif what == "torchinfo":
    import torchinfo
    model = create_model("vgg16").eval()
    s = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)
    result = {"total_params": s.total_params, "total_macs": s.total_mult_adds}
else:
    result = {}
seconds = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
result.update(seconds=round(seconds, 3), peak_rss_mb=round(int(hwm.split()[1]) / 1024, 1))
print(json.dumps(result))
"""


def rss_mb() -> float:
    """Peak resident memory of this process so far (Linux VmHWM; unlike ru_maxrss it is not
    inherited from the parent process across fork + exec)."""
    with open("/proc/self/status") as fh:
        hwm = next(line for line in fh if line.startswith("VmHWM"))
    return round(int(hwm.split()[1]) / 1024, 1)


def zoo() -> dict:
    import torch

    torch.set_num_threads(1)
    from convscope.analysis import summary
    from convscope.models import list_models

    names = list_models()
    after_import = rss_mb()
    t0 = time.perf_counter()
    summary("lenet5")  # the first meta operation loads torch's Python meta kernels (sympy, torch._dynamo)
    warmup = time.perf_counter() - t0
    after_warmup = rss_mb()
    per_model = {}
    t0 = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        s = summary(name)
        per_model[name] = {"seconds": round(time.perf_counter() - t, 3), "params": s.total_params,
                           "macs": s.total_macs, "input": list(s.input_size)}
    total = time.perf_counter() - t0
    peak = rss_mb()
    slowest = sorted(per_model.items(), key=lambda kv: -kv[1]["seconds"])[:5]
    return {"models": len(names), "total_seconds": round(total + warmup, 2), "warmup_seconds": round(warmup, 2),
            "peak_rss_mb": peak, "rss_after_imports_mb": after_import, "rss_after_warmup_mb": after_warmup,
            "peak_rss_over_warmup_mb": round(peak - after_warmup, 1),
            "goal": "total < 30 s, peak RSS < 600 MB",
            "slowest": {name: info["seconds"] for name, info in slowest}}


def child(what: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, what], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    result = {"zoo": zoo()}
    vgg = {what: child(what) for what in ("baseline", "convscope", "torchinfo")}
    vgg["ratio_time_torchinfo_over_convscope"] = round(vgg["torchinfo"]["seconds"] / vgg["convscope"]["seconds"], 1)
    base = vgg["baseline"]["peak_rss_mb"]
    vgg["extra_rss_mb_over_baseline"] = {k: round(vgg[k]["peak_rss_mb"] - base, 1) for k in ("convscope", "torchinfo")}
    result["vgg16"] = vgg
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
