"""Top dataset patches (Zeiler & Fergus 2013, Fig. 2): the inputs that drive a channel hardest.

One pass over the images, batched, without gradients. For each image and
channel the strongest unit (the maximum over positions of the channel's map)
is kept; a running top-k over images keeps the k images with the largest
maxima, one entry per image, ties broken by the lower image index. Each entry
is cropped to the receptive field of the unit that peaked, so the picture
shows exactly the pixels the unit saw (padding drawn as the pixel value that
normalises to 0, which is what the zero padding of the network means).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

from convscope.units.target import Target


@dataclass
class Hit:
    index: int        # image index in the images given
    y: int            # the unit's row in the layer's map
    x: int            # the unit's column
    activation: float

    def to_dict(self) -> dict:
        return {"index": self.index, "y": self.y, "x": self.x, "activation": self.activation}


def layer_output(target: Target, x: torch.Tensor, layer: str, *, detach: bool = True) -> torch.Tensor:
    """The output of `layer` for input `x`, through convscope.capture (one forward)."""
    from convscope.capture import capture

    _, maps = capture(target.model, x, [layer], detach=detach)
    return maps[layer]


def top_patches(target: Target, images: torch.Tensor, layer: str, *, k: int = 9, batch_size: int = 500,
                channels: list[int] | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict[int, list[Hit]]:
    """{channel: [Hit, ...] highest first} over `images` (uint8 or float pixels in [0, 1], (N, C, H, W))."""
    n = images.shape[0]
    chans = list(range(target.channels(layer))) if channels is None else list(channels)
    idx_ch = torch.tensor(chans, dtype=torch.long)
    best_v = torch.empty(len(chans), 0)
    best_i = torch.empty(len(chans), 0, dtype=torch.long)
    best_p = torch.empty(len(chans), 0, dtype=torch.long)
    width = None
    with torch.no_grad():
        for start in range(0, n, batch_size):
            pix = _pixels(images[start:start + batch_size])
            out = layer_output(target, target.normalize(pix), layer)[:, idx_ch]  # (B, K, H, W)
            width = out.shape[-1]
            v, pos = out.flatten(2).max(2)                                     # (B, K)
            ids = torch.arange(start, start + out.shape[0]).expand(len(chans), -1)
            vals = torch.cat([best_v, v.T], 1)
            inds = torch.cat([best_i, ids], 1)
            poss = torch.cat([best_p, pos.T], 1)
            order = torch.sort(vals, dim=1, descending=True, stable=True).indices[:, :k]
            best_v, best_i, best_p = vals.gather(1, order), inds.gather(1, order), poss.gather(1, order)
            if progress:
                progress(min(start + batch_size, n), n)
    result = {}
    for row, c in enumerate(chans):
        result[c] = [Hit(int(i), int(p) // width, int(p) % width, float(v))
                     for v, i, p in zip(best_v[row], best_i[row], best_p[row])]
    return result


def _pixels(batch: torch.Tensor) -> torch.Tensor:
    return batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()


def unit_window(target: Target, layer: str, y: int, x: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the input window unit (y, x) of `layer` sees (may overhang the image)."""
    f = target.fields[layer]
    top = int(round(f.s[0] + y * f.j[0] - (f.r[0] - 1) / 2))
    left = int(round(f.s[1] + x * f.j[1] - (f.r[1] - 1) / 2))
    return top, left, int(f.r[0]), int(f.r[1])


def crop(target: Target, pixels: torch.Tensor, layer: str, y: int, x: int) -> np.ndarray:
    """The receptive-field crop (C, h, w) in [0, 1] of one image's pixels (C, H, W) around unit (y, x).

    Outside the image the crop shows the padding the network saw: zero after
    normalisation, i.e. the pixel value `mean`.
    """
    top, left, h, w = unit_window(target, layer, y, x)
    c, H, W = pixels.shape
    fill = torch.tensor(target.mean, dtype=torch.float32).view(-1, 1, 1).expand(c, h, w)
    out = fill.clone()
    y0, y1 = max(top, 0), min(top + h, H)
    x0, x1 = max(left, 0), min(left + w, W)
    if y1 > y0 and x1 > x0:
        out[:, y0 - top:y1 - top, x0 - left:x1 - left] = _pixels(pixels)[:, y0:y1, x0:x1]
    return out.clamp(0, 1).numpy()


def patch_crops(target: Target, images: torch.Tensor, layer: str,
                hits: dict[int, list[Hit]]) -> dict[int, list[np.ndarray]]:
    return {c: [crop(target, images[h.index], layer, h.y, h.x) for h in hs] for c, hs in hits.items()}


def parse_channels(text: str | None, total: int) -> list[int] | None:
    """"0-7,12" -> [0, ..., 7, 12]; None -> None (all); a UserError for anything out of range."""
    from convscope.errors import UserError

    if text is None or text.strip().lower() in ("", "all"):
        return None
    chans: list[int] = []
    try:
        for part in text.split(","):
            a, _, b = part.strip().partition("-")
            lo, hi = int(a), int(b) if b else int(a)
            chans.extend(range(lo, hi + 1))
    except ValueError:
        raise UserError(f"--channels {text!r} is not like 0-7,12") from None
    bad = [c for c in chans if not 0 <= c < total]
    if bad or not chans:
        raise UserError(f"--channels {text!r}: this layer has channels 0-{total - 1}")
    return sorted(dict.fromkeys(chans))


def iter_chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
