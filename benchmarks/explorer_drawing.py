"""CPU per explorer answer to one 280x280 drawing (lenet5), in process: JSON on stdout.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/explorer_drawing.py

The whole /api/predict path minus HTTP, through the engine's one entry point
(`Explorer.answer`): the body read, the PNG decoded, prepared by the predictor (MNIST
centring and the plain resize shown beside it), one forward of the traced graph keeping every
node, every layer encoded, JSON; alone (`answer_cpu_ms`) and in batches of 16
(`batch16_cpu_ms_per_answer`). Process time (CPU), so a busy machine inflates it least.
"""
from __future__ import annotations

import json
import sys
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


if __name__ == "__main__":
    print(json.dumps(main()))
