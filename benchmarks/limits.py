"""Benchmark: an image over the pixel limit is refused from its header, in no time.

tests/fuzz/test_limits.py used to assert that refusing a decompression bomb (a PNG whose header
claims 7000x7000 to 60000x60000 pixels) took under 0.5 s; the test now checks that no pixel is
decoded (Pillow's `load` is never called), and the time is measured here, against a baseline
from the same process: `convscope.data.decode.open_image` on an honest 1024x1024 PNG.

Prints one JSON object: the median milliseconds over --repeats (default 20) of each refusal,
the baseline's, each refusal over the baseline, and `holds` (every refusal under 0.5 s).

    .venv/bin/python benchmarks/limits.py
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from convscope.data.decode import open_image
from convscope.errors import ImageTooLarge

SIDES = (7000, 12000, 20000, 60000)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height grey pixels but holds almost no data (as tests/fuzz/_bad.py)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def refuse(path: Path) -> None:
    try:
        open_image(str(path), str(path))
    except ImageTooLarge:
        return
    raise AssertionError(f"{path} was not refused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        honest = Path(tmp) / "honest.png"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (1024, 1024), dtype=np.uint8)).save(honest)
        baseline = median_ms(lambda: open_image(str(honest), "honest").close(), args.repeats)
        refusals = {}
        for side in SIDES:
            bomb = Path(tmp) / f"bomb{side}.png"
            bomb.write_bytes(png_header(side, side))
            ms = median_ms(lambda: refuse(bomb), args.repeats)
            refusals[f"{side}x{side}"] = {"ms": round(ms, 3), "over_baseline": round(ms / baseline, 4)}
    print(json.dumps({"load_1min": round(os.getloadavg()[0], 2), "repeats": args.repeats,
                      "baseline_decode_1024x1024_ms": round(baseline, 3), "refusals": refusals,
                      "holds": all(r["ms"] < 500 for r in refusals.values())}, indent=1))


if __name__ == "__main__":
    main()
