"""The shared cases: what the Python engine and the page's JavaScript must answer alike.

One file, read by tests/parity/test_python_engine.py (each case against the Python
engine and an independent oracle: torch's own modules, convscope.data.preprocess) and
tests/parity/test_page_js.py (the same cases through the page's JavaScript under Node).

- DRAWINGS: grids of floats in [0, 1], white ink on black, as the page's canvas draws them
  (several sizes, the smallest and largest allowed, a blank, a tiny dot, a flat stroke, a
  huge scribble, dark ink on light paper), each with the warning it should raise;
- PHOTOS: RGB, RGBA (partly transparent) and greyscale pictures, as uploaded files;
- NETWORKS: small hand-built torch networks, random weights from a fixed seed, that
  together hold every layer kind of the zoo (conv, grouped, depthwise and dilated conv,
  TF-SAME conv and pools, max and average pools with and without the padding counted,
  ceil_mode, divisor_override, adaptive pools as modules and as functions, batch norm
  2-D and 1-D, add, concat, linear) and every activation
  the page writes out;
- REQUESTS: bodies and image sizes the server refuses, each with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SEED = 22
CANVAS = 280  # the page's drawing canvas


# ---- drawings ------------------------------------------------------------------------------
def _strokes(h: int, w: int, points: list[tuple[float, float]], width: float) -> np.ndarray:
    """A polyline of the given width (in fractions of the side) drawn at 2x and shrunk: grey edges."""
    from PIL import Image, ImageDraw

    big = Image.new("L", (w * 2, h * 2), 0)
    pts = [(x * w * 2, y * h * 2) for x, y in points]
    ImageDraw.Draw(big).line(pts, fill=255, width=max(1, int(width * min(h, w) * 2)), joint="curve")
    return np.asarray(big.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def _scribble(h: int, w: int) -> np.ndarray:
    """Back and forth across a square until it is nearly all ink (no digit fills its box)."""
    n = 14
    return _strokes(h, w, [(0.2 if i % 2 == 0 else 0.8, 0.2 + 0.6 * i / (n - 1)) for i in range(n)], 0.09)


def _dot(h: int, w: int) -> np.ndarray:
    return _strokes(h, w, [(0.52, 0.47), (0.53, 0.48)], 0.03)


SEVEN = [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]
TWO = [(0.3, 0.3), (0.5, 0.15), (0.7, 0.3), (0.3, 0.8), (0.75, 0.8)]


@dataclass(frozen=True)
class Drawing:
    name: str
    make: Callable[[], np.ndarray]
    warns: str | None = None     # a phrase one of its warnings holds on the digits network (None: no ink warning)

    def image(self) -> np.ndarray:
        return self.make().astype(np.float32)


DRAWINGS = [
    Drawing("seven-280", lambda: _strokes(CANVAS, CANVAS, SEVEN, 0.08)),
    Drawing("two-200x140", lambda: _strokes(200, 140, TWO, 0.1)),
    Drawing("seven-56", lambda: _strokes(56, 56, SEVEN, 0.1)),
    Drawing("two-smallest-8", lambda: _strokes(8, 8, TWO, 0.2)),
    Drawing("seven-largest-560", lambda: _strokes(560, 560, SEVEN, 0.06)),
    Drawing("blank-280", lambda: np.zeros((CANVAS, CANVAS), np.float32), "blank"),
    Drawing("tiny-dot-280", lambda: _dot(CANVAS, CANVAS), "tiny"),
    Drawing("flat-stroke-280", lambda: _strokes(CANVAS, CANVAS, [(0.15, 0.5), (0.85, 0.51)], 0.05), "flat stroke"),
    Drawing("huge-scribble-280", lambda: _scribble(CANVAS, CANVAS), "a lot of ink"),
    Drawing("dark-ink-on-paper-280", lambda: 1.0 - 0.85 * _strokes(CANVAS, CANVAS, TWO, 0.08)),
]


# ---- photos --------------------------------------------------------------------------------
def _photo_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    rng = np.random.default_rng(SEED)
    img = np.stack([yy, xx, 0.5 + 0.5 * np.sin(6 * xx * yy)], -1) * 200 + rng.normal(0, 20, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _photo_rgba() -> np.ndarray:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = _photo_rgb(40, 40)
    rgba[..., 3] = np.random.default_rng(SEED + 1).integers(0, 256, (40, 40))
    return rgba


def _photo_grey() -> np.ndarray:
    return (_photo_rgb(96, 96).mean(-1)).astype(np.uint8)


PHOTOS: dict[str, Callable[[], np.ndarray]] = {"rgb-48x64": _photo_rgb, "rgba-40": _photo_rgba, "grey-96": _photo_grey}


def photo(name: str):
    """A photo case as a PIL image (what the server decodes from the uploaded file)."""
    from PIL import Image

    a = PHOTOS[name]()
    return Image.fromarray(a, {2: "L", 3: "RGB"}.get(a.ndim) if a.ndim == 2 or a.shape[-1] == 3 else "RGBA")


# ---- networks ------------------------------------------------------------------------------
class Digits(nn.Module):
    """(1, 28, 28) -> 10: the pooling variants and the activations of the older networks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(1, 6, 5, padding=2), nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)                                             # 14x14
        self.conv2, self.act2 = nn.Conv2d(6, 8, 3, padding=1, groups=2), nn.LeakyReLU(0.1)
        self.avg1 = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)  # 8x8 (Inception-v4's)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, bias=False)
        self.bn3, self.act3 = nn.BatchNorm2d(8), nn.ELU()
        self.avg2 = nn.AvgPool2d(3, stride=1, padding=1)                         # padding counted
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)        # 5x5
        self.fc1 = nn.Linear(8 * 5 * 5, 32)
        self.bn4, self.act4 = nn.BatchNorm1d(32), nn.SiLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.avg1(self.act2(self.conv2(x)))
        x = self.pool2(self.avg2(self.act3(self.bn3(self.conv3(x)))))
        return self.fc2(self.act4(self.bn4(self.fc1(torch.flatten(x, 1)))))


class Photo(nn.Module):
    """(3, 32, 32) -> 5: the modern blocks (depthwise, residual add, TF-SAME branches
    concatenated, adaptive pools) and the newer activations."""

    def __init__(self) -> None:
        from convscope.models.nasnet import Conv2dSame, PoolSame

        super().__init__()
        self.stem, self.stem_bn, self.stem_act = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6()
        self.dw, self.dw_act = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardswish()      # depthwise
        self.pw, self.pw_bn, self.pw_act = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.GELU()
        self.same = Conv2dSame(8, 6, 3, stride=2)                                           # 8x8, TF-SAME
        self.same_act = nn.Mish()
        self.max_same, self.avg_same = PoolSame("max", 3, 2), PoolSame("avg", 3, 2)
        self.avg_same1 = PoolSame("avg", 3, 1)                     # NASNet's: padding not counted
        self.cat_act = nn.Tanh()
        self.div = nn.AvgPool2d(2, stride=2, divisor_override=3)   # 4x4
        self.gate = nn.Sigmoid()
        self.adapt = nn.AdaptiveAvgPool2d(3)                       # 4x4 -> 3x3: overlapping windows
        self.hsig = nn.Hardsigmoid()
        self.amax = nn.AdaptiveMaxPool2d(2)
        self.fc = nn.Linear(28, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem(x)))                 # 16x16
        x = F.relu(x + self.pw_act(self.pw_bn(self.pw(self.dw_act(self.dw(x))))))
        a = self.same_act(self.same(x))
        x = self.cat_act(torch.cat([a, self.max_same(x), self.avg_same(x), self.avg_same1(a)], 1))  # 28 x 8x8
        x = self.gate(self.div(x))
        x = self.hsig(self.adapt(x))
        x = F.adaptive_avg_pool2d(self.amax(x), 1)                  # DenseNet's functional global pool
        return self.fc(torch.flatten(x, 1))


def _randomise(model: nn.Module) -> nn.Module:
    """Fixed-seed weights, and batch-norm statistics far from (0, 1) so their arithmetic shows."""
    torch.manual_seed(SEED)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.uniform_(m.weight, -0.6, 0.6)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.3, 0.3)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.empty(n).uniform_(-0.5, 0.5))
            m.running_var.copy_(torch.empty(n).uniform_(0.3, 2.0))
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.4, 0.4)
    return model.eval()


@dataclass(frozen=True)
class Network:
    name: str
    build: Callable[[], nn.Module]
    config: dict[str, Any]

    def model(self) -> nn.Module:
        return _randomise(self.build())


DIGITS_CONFIG = {"model": {"name": "parity_digits", "kwargs": {}}, "dataset": "mnist", "input_size": [1, 28, 28],
                 "classes": [str(i) for i in range(10)], "normalization": {"mean": [0.1307], "std": [0.3081]},
                 "preprocessing": {"kind": "digits", "invert": False}}
PHOTO_CONFIG = {"model": {"name": "parity_photo", "kwargs": {}}, "dataset": "photos", "input_size": [3, 32, 32],
                "classes": ["a", "b", "c", "d", "e"],
                "normalization": {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]},
                "preprocessing": {"kind": "resize", "size": [32, 32], "channels": 3}}
FASHION_CONFIG = {**DIGITS_CONFIG, "model": {"name": "parity_fashion", "kwargs": {}}, "dataset": "fashion-mnist",
                  "normalization": {"mean": [0.286], "std": [0.353]}, "preprocessing": {"kind": "resize", "size": [28, 28]}}

NETWORKS = [Network("digits", Digits, DIGITS_CONFIG), Network("photo", Photo, PHOTO_CONFIG),
            Network("fashion", Digits, FASHION_CONFIG)]

# every layer kind and activation the cases must cover (the tests check the networks really hold them)
KINDS = {"conv", "fc", "bn", "maxpool", "avgpool", "add", "concat"}
ACTIVATIONS = {"relu", "relu6", "leakyrelu", "elu", "silu", "hardswish", "gelu", "mish", "tanh", "sigmoid", "hardsigmoid"}


def units(shape: list[int], rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """The units written out for a layer of this shape: every corner and edge middle (the
    padded borders), the centre and a few at random, on the first, last and one random map."""
    if len(shape) != 3:
        n = shape[0]
        return [(i, 0, 0) for i in sorted({0, n - 1, int(rng.integers(n))})]
    c, h, w = shape
    places = {(y, x) for y in (0, h // 2, h - 1) for x in (0, w // 2, w - 1)}
    places |= {(int(rng.integers(h)), int(rng.integers(w))) for _ in range(3)}
    maps = sorted({0, c - 1, int(rng.integers(c))})
    return [(m, y, x) for m in maps for y, x in sorted(places)]


def input_for(network: Network) -> torch.Tensor:
    """A normalised input with structure (not noise alone): a drawing or a photo, prepared."""
    c, h, w = network.config["input_size"]
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    rng = np.random.default_rng(SEED)
    img = np.stack([np.clip(np.sin(5 * xx + k) * np.cos(4 * yy - k) + rng.normal(0, 0.2, (h, w)), 0, 1)
                    for k in range(c)]).astype(np.float32)
    n = network.config["normalization"]
    mean, std = np.asarray(n["mean"], np.float32)[:, None, None], np.asarray(n["std"], np.float32)[:, None, None]
    return torch.from_numpy((img - mean) / std)[None]


# ---- requests the server refuses -------------------------------------------------------------
def _grid(h: int, w: int, v: Any = 0.0) -> list[list[Any]]:
    return [[v] * w for _ in range(h)]


BAD_BODIES: dict[str, dict[str, Any]] = {
    "side-7": {"image": _grid(7, 28)},
    "side-561": {"image": _grid(20, 561)},
    "both-sides-small": {"image": _grid(3, 2)},
    "ragged-rows": {"image": [[0.0] * 9] + _grid(9, 10)},
    "a-row-not-a-list": {"image": _grid(9, 9) + [0.5]},
    "strings": {"image": [["a"] * 9 for _ in range(9)]},
    "nulls": {"image": [[None] * 9 for _ in range(9)]},
    "three-d": {"image": [[[0.0, 0.0]] * 9 for _ in range(9)]},
    "out-of-range": {"image": [[-0.5] * 9] + _grid(8, 9, 1.2)},
    "empty": {"image": []},
    "not-a-list": {"image": "zeros"},
    "preprocess-yes": {"image": _grid(9, 9), "preprocess": "yes"},
    "preprocess-list": {"image": _grid(9, 9), "preprocess": [1, 2]},
    "two-images": {"image": _grid(9, 9), "png": "data:image/png;base64,"},
    "no-image": {"preprocess": True},
    "png-a-number": {"png": 5},
    "png-not-png": {"png": "data:image/jpeg;base64,AAAA"},
    "file-not-a-data-url": {"file": "http://example.com/x.png"},
    "png-bad-base64": {"png": "data:image/png;base64,!!!"},
    "sample-a-string": {"sample": "3"},
    "sample-and-image": {"sample": 3, "image": _grid(9, 9)},
    "good-list": {"image": _grid(9, 9, 0.5)},
}

# decoded image sizes (width, height, as a file?) against the side and pixel limits
DECODED_SIZES = [(7, 30, False), (30, 7, False), (561, 100, False), (8, 8, False), (560, 560, False),
                 (1, 1, True), (2000, 3, True), (4200, 4000, True), (4096, 4096, True)]
