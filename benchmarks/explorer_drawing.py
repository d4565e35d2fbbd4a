"""CPU per explorer answer to one 280x280 drawing (lenet5), in process: JSON on stdout.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/explorer_drawing.py

The whole /api/predict path minus HTTP: the PNG data URL decoded, prepared by the predictor
(MNIST centring and the plain resize shown beside it), one forward of the traced graph keeping
every node, every layer encoded, JSON. Process time (CPU), so a busy machine inflates it least.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from serve import drawing_png  # noqa: E402  (the same drawing the server benchmark posts)

from convscope.web.encoding import image_from_request  # noqa: E402
from convscope.web.inference import Explorer  # noqa: E402


def main(n: int = 300) -> dict:
    torch.set_num_threads(1)
    explorer = Explorer.from_name("lenet5")
    body = {"png": drawing_png()}
    for _ in range(30):  # warm up
        image, preprocess = image_from_request(body)
        explorer.predict_json(image, preprocess=preprocess)
    t = time.process_time()
    for _ in range(n):
        image, preprocess = image_from_request(body)
        explorer.predict_json(image, preprocess=preprocess)
    return {"model": "lenet5", "answers": n, "answer_cpu_ms": round(1000 * (time.process_time() - t) / n, 3)}


if __name__ == "__main__":
    print(json.dumps(main()))
