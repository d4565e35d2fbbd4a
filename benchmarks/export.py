"""ONNX export of every registered model at its default size, every shown layer as an output.

    .venv/bin/python benchmarks/export.py --all           # all of `convscope models` (~40 min)
    .venv/bin/python benchmarks/export.py [NAME ...]      # default: five models, a few minutes

One JSON line per model: outputs, file size, the onnxruntime check (max absolute
difference, and the difference over the output's magnitude beyond 1, which the
1e-4 tolerance applies to), seconds. Random weights; files go to a temp folder
and are deleted.
"""
from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path


QUICK = ["lenet5", "convnet_small", "resnet18", "mobilenet_v1", "googlenet"]


def main() -> int:
    import torch

    from convscope.export import export_onnx
    from convscope.models import create_model, list_models

    torch.set_num_threads(1)
    out = Path(tempfile.mkdtemp(prefix="convscope-export-"))
    args = sys.argv[1:]
    names = list_models() if args == ["--all"] else args or QUICK
    for name in names:
        t0 = time.perf_counter()
        path = out / f"{name}.onnx"
        try:
            model = create_model(name).eval()
            r = export_onnx(model, path, model.default_input_size, all_layers=True)
            row = {"model": name, "ok": r.ok, "outputs": len(r.outputs), "mb": round(r.bytes / 1e6, 1),
                   "max_abs_diff": r.max_abs_diff, "max_diff_over_scale": r.max_scaled_diff,
                   "worst": r.worst_output}
        except Exception as exc:  # a failure is a figure too
            row = {"model": name, "ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
        path.unlink(missing_ok=True)
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
