"""Bad inputs, generated: damaged weights, odd config.json shapes, images that lie."""
from __future__ import annotations

import json
import random
import struct
import zlib
from pathlib import Path


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grey pixels but holds almost no data:
    what a decompression bomb looks like before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def small_png(path: Path, size: int = 28) -> Path:
    import numpy as np
    from PIL import Image

    a = np.zeros((size, size), dtype=np.uint8)
    a[size // 4: 3 * size // 4, size // 2 - 2: size // 2 + 2] = 255
    Image.fromarray(a).save(path)
    return path


# model.safetensors damaged in the ways a disk, a copy or a person damages it
def weights_damage(good: bytes) -> dict[str, bytes]:
    rnd = random.Random(0)
    header_len = struct.unpack("<Q", good[:8])[0]
    return {
        "zero-byte": b"",
        "truncated": good[: len(good) // 2],
        "random": bytes(rnd.getrandbits(8) for _ in range(4096)),
        "header-only": good[: 8 + header_len],
        "bad-length": struct.pack("<Q", 10**12) + good[8:],
        "json-garbage": struct.pack("<Q", 5) + b"nope!" + good[13:],
    }


def config_damage(good: dict) -> dict[str, str]:
    """config.json texts that are wrong in shape, not just in syntax."""
    def changed(**kv) -> str:
        cfg = json.loads(json.dumps(good))
        for key, value in kv.items():
            if value is _DROP:
                cfg.pop(key, None)
            else:
                cfg[key] = value
        return json.dumps(cfg)

    norm = good.get("normalization", {})
    pre = dict(good.get("preprocessing") or {})
    return {
        "empty": "",
        "not-json": "{model: lenet5",
        "a-list": "[1, 2, 3]",
        "a-string": '"lenet5"',
        "null": "null",
        "no-model": changed(model=_DROP),
        "model-not-a-dict": changed(model=[1]),
        "unknown-model": changed(model={"name": "no_such_net", "kwargs": {}}),
        "kwargs-rejected": changed(model={"name": "lenet5", "kwargs": {"bogus": 1}}),
        "kwargs-a-list": changed(model={"name": "lenet5", "kwargs": [1]}),
        "num-classes-disagree": changed(model={"name": "lenet5", "kwargs": {**good["model"].get("kwargs", {}),
                                                                           "num_classes": 7}}),
        "three-classes": changed(classes=["a", "b", "c"]),
        "classes-a-string": changed(classes="abc"),
        "std-zero": changed(normalization={**norm, "std": [0]}),
        "std-nan": changed(normalization={**norm, "std": [float("nan")]}),
        "mean-a-string": changed(normalization={**norm, "mean": "x"}),
        "preprocessing-size-0": changed(preprocessing={**pre, "size": [0, 0]}),
        "preprocessing-a-list": changed(preprocessing=[1]),
        "input-size-bad": changed(input_size=[1, -28, 28]),
    }


class _Drop:
    pass


_DROP = _Drop()
