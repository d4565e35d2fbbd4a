"""CPU per explorer answer to one 280x280 drawing (lenet5), in process: JSON on stdout.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/explorer_drawing.py [--baseline-ref f784cf7]

The whole /api/predict path minus HTTP, through the engine's one entry point
(`Explorer.answer`): the body read, the PNG decoded, prepared by the predictor (MNIST
centring and the plain resize shown beside it), one forward of the traced graph keeping every
node, every layer encoded, JSON; alone (`answer_cpu_ms`) and in batches of 16
(`batch16_cpu_ms_per_answer`). Process time (CPU), so a busy machine inflates it least.
With --baseline-ref the same figures are measured, in the same session and alternating with
this tree's, for the tree of that commit (its own engine API), and the ratios printed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from serve import drawing_png  # noqa: E402  (the same drawing the server benchmark posts)

from convscope.web.engine import Explorer  # noqa: E402


def cpu_ms(fn, n: int) -> float:
    t = time.process_time()
    for _ in range(n):
        fn()
    return 1000 * (time.process_time() - t) / n


def main(n: int = 300) -> dict:
    torch.set_num_threads(1)
    explorer = Explorer.from_name("lenet5")
    body = {"png": drawing_png()}
    for _ in range(30):  # warm up
        explorer.answer([body])
    lone = cpu_ms(lambda: explorer.answer([body]), n)
    batch = cpu_ms(lambda: explorer.answer([body] * 16), max(1, n // 16)) / 16
    return {"model": "lenet5", "answers": n, "answer_cpu_ms": round(lone, 3),
            "batch16_cpu_ms_per_answer": round(batch, 3)}


# the same figures measured by an older tree, through the engine API that tree has
BASELINE = """
import json, sys, time, torch
sys.path.insert(0, sys.argv[1] + "/benchmarks")
from serve import drawing_png
torch.set_num_threads(1)
body = {"png": drawing_png()}
try:
    from convscope.web.engine import Explorer
    e = Explorer.from_name("lenet5"); one = served = lambda: e.answer([body]); many = lambda: e.answer([body] * 16)
except ImportError:
    from convscope.web.encoding import image_from_request
    from convscope.web.inference import MIN_ROWS, Explorer
    e, b = Explorer.from_name("lenet5"), Explorer.from_name("lenet5")
    b.min_rows = MIN_ROWS
    def one(engine=e):
        image, preprocess = image_from_request(body)
        return engine.predict_json(image, preprocess=preprocess)
    served = lambda: one(b)  # the batching server (serve's default) ran every pass with MIN_ROWS rows
    many = lambda: b.predict_json_many([image_from_request(body) for _ in range(16)])
for _ in range(30):
    one(), many(), served()
n = int(sys.argv[2])
t = time.process_time()
for _ in range(n):
    one()
lone = 1000 * (time.process_time() - t) / n
t = time.process_time()
for _ in range(n):
    served()
lone_served = 1000 * (time.process_time() - t) / n
t = time.process_time()
for _ in range(max(1, n // 16)):
    many()
print(json.dumps({"answer_cpu_ms": round(lone, 3), "served_lone_cpu_ms": round(lone_served, 3),
                  "batch16_cpu_ms_per_answer": round(1000 * (time.process_time() - t) / max(1, n // 16) / 16, 3)}))
"""


def measure_tree(src: Path, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src / "src"), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", BASELINE, str(src), str(n)], env=env, capture_output=True,
                         text=True)
    if out.returncode:
        raise SystemExit(f"measuring {src} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(ref: str, n: int, rounds: int) -> dict:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "-q", "--detach", str(base), ref], check=True)
        try:
            pairs = [(measure_tree(root, n), measure_tree(base, n)) for _ in range(rounds)]  # alternating
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(base)], check=True)
    best = {k: min(p[0][k] for p in pairs) for k in pairs[0][0]}
    best_base = {k: min(p[1][k] for p in pairs) for k in pairs[0][1]}
    return {"model": "lenet5", "answers": n, "rounds": rounds, "this_tree": best, "baseline": {"ref": ref, **best_base},
            "ratio_vs_baseline": {k: round(best[k] / best_base[k], 3) for k in best}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-ref", default=None, help="also measure this commit's tree (e.g. f784cf7)")
    ap.add_argument("--answers", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(json.dumps(main(args.answers) if args.baseline_ref is None else compare(args.baseline_ref, args.answers,
                                                                                  args.rounds)))
