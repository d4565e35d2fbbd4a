"""convscope.limits: the table, its argparse types, and the one pixel limit."""
from __future__ import annotations

import argparse
import io
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convscope import limits
from convscope.errors import DataError, ImageTooLarge, RunError

from ._bad import png_header, small_png


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(limits.LIMITS)),
       value=st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=True, allow_infinity=True)))
def test_arg_accepts_exactly_the_values_in_range(name, value):
    limit = limits.LIMITS[name]
    parse = limits.arg(name)
    text = repr(value) if isinstance(value, float) else str(value)
    if limit.kind is int and isinstance(value, float):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
        return
    v = float(value)
    inside = math.isfinite(v) and (limit.low is None or (v > limit.low if limit.low_open else v >= limit.low)) \
        and (limit.high is None or (v < limit.high if limit.high_open else v <= limit.high))
    if inside:
        assert parse(text) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            parse(text)


def test_threads_are_capped_by_this_machine():
    import os

    top = 4 * (os.cpu_count() or 1)
    assert limits.arg("threads")(str(max(4, top))) == max(4, top)
    with pytest.raises(argparse.ArgumentTypeError, match="100,000"):
        limits.arg("threads")("100000")


def test_number_list():
    assert limits.number_list("shots")("10, 100,1000") == [10, 100, 1000]
    for bad in ("", "0", "10,-1", "a,b"):
        with pytest.raises(argparse.ArgumentTypeError):
            limits.number_list("shots")(bad)


def test_out_file_and_dir(tmp_path):
    (tmp_path / "f").write_text("x")
    assert limits.out_file(".png")(str(tmp_path / "new" / "x.png")).name == "x.png"
    for bad, words in ((tmp_path / "x", "must end in .png"), (tmp_path / "f" / "x.png", "is a file"),
                       (tmp_path, "is a folder")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            limits.out_file(".png")(str(bad))
    assert limits.out_dir(str(tmp_path / "a" / "b")) == tmp_path / "a" / "b"
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        limits.out_dir(str(tmp_path / "f"))


@pytest.mark.parametrize("text", ["banana", "cuda:x", "cpu:0", "", "gpu"])
def test_device_names(text):
    with pytest.raises(argparse.ArgumentTypeError):
        limits.device(text)


def test_pixel_limit_is_one_number():
    side = int(math.isqrt(limits.MAX_IMAGE_PIXELS))
    limits.check_image_size(side, limits.MAX_IMAGE_PIXELS // side, "ok.png")
    with pytest.raises(ImageTooLarge, match="megapixels") as info:
        limits.check_image_size(side + 1, side + 1, "big.png")
    assert isinstance(info.value, DataError) and "big.png" in str(info.value)


@pytest.mark.parametrize("side", [7000, 12000, 20000, 60000])
def test_open_image_refuses_from_the_header(tmp_path, monkeypatch, side):
    """Refused before any pixel is decoded: Pillow's decoding entry point is never called (how
    long the refusal takes is a benchmark's question: benchmarks/limits.py)."""
    from PIL import ImageFile

    from convscope.data.decode import open_image

    decoded = []
    real_load = ImageFile.ImageFile.load

    def spy(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(side, side))
    with pytest.raises(ImageTooLarge, match=str(path)):
        open_image(str(path), str(path))
    assert decoded == []  # nothing was decompressed
    small = small_png(tmp_path / "small.png")
    open_image(str(small), str(small)).close()
    assert decoded == [(28, 28)]  # the spy does see a real decode


def test_open_image_reads_a_normal_image(tmp_path):
    import numpy as np
    from PIL import Image

    from convscope.data.decode import open_image

    path = small_png(tmp_path / "d.png")
    with open_image(io.BytesIO(path.read_bytes()), "bytes") as img:
        assert np.array_equal(np.asarray(img), np.asarray(Image.open(path)))


def test_check_run_config():
    good = {"normalization": {"mean": [0.1], "std": [0.3]},
            "preprocessing": {"kind": "digits", "size": [28, 28], "channels": 1}, "input_size": [1, 28, 28]}
    limits.check_run_config(good, "config.json")
    for section, key, value in (("normalization", "std", [0]), ("normalization", "std", [float("nan")]),
                                ("normalization", "mean", [float("inf")]), ("preprocessing", "size", [0, 0]),
                                ("preprocessing", "channels", 2)):
        cfg = {**good, section: {**good[section], key: value}}
        with pytest.raises(RunError, match="config.json"):
            limits.check_run_config(cfg, "config.json")
    with pytest.raises(RunError, match="input_size"):
        limits.check_run_config({**good, "input_size": [1, 0, 28]}, "config.json")
