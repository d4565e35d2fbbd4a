"""Augmentation of whole batches of tensors, one preset per kind of data.

Everything runs on a (N, C, H, W) float batch at once (no per-sample Python),
with its randomness drawn from one `torch.Generator`, so a run is repeatable
and every DDP rank can draw the parameters of the *global* batch and keep its
own slice (the 2-process run then sees the same images as the 1-process run).

    digits   small rotations, shifts and scaling, then an elastic deformation
             (Simard, Steinkraus & Platt 2003, section 2: a random displacement
             field, uniform in [-1, 1] per pixel, smoothed by a Gaussian of
             sigma pixels and scaled by alpha pixels), in one grid_sample;
             never flips: a mirrored 2 is not a 2
    fashion  horizontal flips, padded random crops, random erasing
    natural  the same as fashion (CIFAR's standard recipe, He et al. 2016, sec. 4.2)
    none     nothing
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

PRESETS = ("none", "digits", "fashion", "natural")


@dataclass(frozen=True)
class AugmentSpec:
    kind: str = "none"
    rotate_deg: float = 10.0        # digits
    shift: float = 0.1              # digits: fraction of the side
    scale: tuple[float, float] = (0.9, 1.1)
    elastic_alpha: float = 34.0     # digits: the displacement scale in pixels (Simard et al.: 34)
    elastic_sigma: float = 4.0      # digits: the Gaussian's sigma in pixels (Simard et al.: 4)
    elastic_p: float = 0.5          # digits: share of the images that are deformed elastically
    crop_pad: int = 2               # fashion/natural: pixels of zero padding before the crop
    flip: bool = True
    erase_p: float = 0.5            # random erasing (Zhong et al. 2017): probability per image
    erase_area: tuple[float, float] = (0.02, 0.25)


# what a recipe may tune per preset (`augment_options`); the rest of AugmentSpec is fixed by the preset
OPTIONS = {"digits": ("rotate_deg", "shift", "scale", "elastic_alpha", "elastic_sigma", "elastic_p"),
           "fashion": ("crop_pad", "flip", "erase_p", "erase_area"),
           "natural": ("crop_pad", "flip", "erase_p", "erase_area"),
           "none": ()}


def spec_for(kind: str, *, image_size: int = 28, erase_p: float | None = None,
             options: dict[str, Any] | None = None) -> AugmentSpec:
    """The preset for a Dataset.kind ("synthetic" gets none: it is for tests), with `options`
    (AugmentSpec fields the preset has, e.g. {"elastic_p": 1.0}) replacing its values."""
    if kind in ("none", "synthetic"):
        if options:
            raise ValueError(f"augment options {sorted(options)} given, but augmentation {kind!r} has none")
        return AugmentSpec("none")
    if kind not in PRESETS:
        raise ValueError(f"unknown augmentation {kind!r}; choose one of {', '.join(PRESETS)}")
    pad = 4 if image_size >= 32 else 2
    spec = AugmentSpec(kind, crop_pad=pad)
    if erase_p is not None:
        spec = AugmentSpec(kind, crop_pad=pad, erase_p=erase_p)
    options = dict(options or {})
    bad = [k for k in options if k not in OPTIONS[kind]]
    if bad:
        raise ValueError(f"augment option {bad[0]!r} is not one of the {kind} preset's: {', '.join(OPTIONS[kind])}")
    for key in ("scale", "erase_area"):
        if key in options:
            options[key] = tuple(float(v) for v in options[key])
    return dataclasses.replace(spec, **options)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (hi - lo) + lo


def sample_params(spec: AugmentSpec, n: int, height: int, width: int, gen: torch.Generator) -> dict:
    """Random parameters for n images (drawn on the CPU so every device agrees)."""
    if spec.kind == "digits":
        prm = {
            "angle": _uniform(n, -spec.rotate_deg, spec.rotate_deg, gen) * math.pi / 180,
            "scale": _uniform(n, *spec.scale, gen),
            "tx": _uniform(n, -2 * spec.shift, 2 * spec.shift, gen),  # grid units: the side is 2
            "ty": _uniform(n, -2 * spec.shift, 2 * spec.shift, gen),
        }
        if spec.elastic_alpha > 0 and spec.elastic_p > 0:
            on = (torch.rand(n, generator=gen) < spec.elastic_p).view(n, 1, 1, 1)
            flow = elastic_field(n, height, width, spec.elastic_alpha, spec.elastic_sigma, gen)
            prm["flow"] = flow * on
        return prm
    if spec.kind in ("fashion", "natural"):
        p = spec.crop_pad
        area = _uniform(n, *spec.erase_area, gen) * height * width
        log_ratio = _uniform(n, math.log(0.3), math.log(1 / 0.3), gen)
        eh = (area * log_ratio.exp()).sqrt().round().clamp(1, height).long()
        ew = (area / log_ratio.exp()).sqrt().round().clamp(1, width).long()
        return {
            "flip": torch.rand(n, generator=gen) < (0.5 if spec.flip else 0.0),
            "oy": torch.randint(0, 2 * p + 1, (n,), generator=gen),
            "ox": torch.randint(0, 2 * p + 1, (n,), generator=gen),
            "erase": torch.rand(n, generator=gen) < spec.erase_p,
            "eh": eh, "ew": ew,
            "ey": (torch.rand(n, generator=gen) * (height - eh + 1)).long(),
            "ex": (torch.rand(n, generator=gen) * (width - ew + 1)).long(),
        }
    return {}


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The normalised 1-D Gaussian, truncated at 3 sigma (at least radius 1)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def elastic_field(n: int, height: int, width: int, alpha: float, sigma: float,
                  gen: torch.Generator) -> torch.Tensor:
    """Simard et al.'s displacement field in pixels, (N, 2, H, W): dx then dy.

    Uniform [-1, 1] noise per pixel and direction, smoothed by a Gaussian of
    `sigma` pixels (separable, reflected at the borders), times `alpha`.
    """
    noise = torch.rand(n * 2, 1, height, width, generator=gen) * 2 - 1     # (2N, 1, H, W)
    g = gaussian_kernel(sigma)
    r = g.numel() // 2
    # reflection needs a pad smaller than the side: repeat it for large sigmas
    pad_y, pad_x = min(r, height - 1), min(r, width - 1)
    x = F.pad(noise, (pad_x, pad_x, 0, 0), mode="reflect")
    x = F.conv2d(F.pad(x, (r - pad_x, r - pad_x, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, pad_y, pad_y), mode="reflect")
    x = F.conv2d(F.pad(x, (0, 0, r - pad_y, r - pad_y), mode="replicate"), g.view(1, 1, -1, 1))
    return alpha * x.view(n, 2, height, width)


def _affine(x: torch.Tensor, prm: dict) -> torch.Tensor:
    cos, sin, s = prm["angle"].cos(), prm["angle"].sin(), prm["scale"]
    theta = torch.stack([
        torch.stack([cos / s, -sin / s, prm["tx"]], dim=1),
        torch.stack([sin / s, cos / s, prm["ty"]], dim=1),
    ], dim=1).to(x)                                                 # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, H, W, 2)
    if "flow" in prm:  # pixels -> grid units (a pixel is 2/W wide); output (i, j) reads from grid + flow
        h, w = x.shape[2], x.shape[3]
        scale = torch.tensor([2.0 / w, 2.0 / h], dtype=grid.dtype, device=grid.device)
        grid = grid + prm["flow"].to(grid).permute(0, 2, 3, 1) * scale
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _flip_crop(x: torch.Tensor, prm: dict, pad: int) -> torch.Tensor:
    n, c, h, w = x.shape
    x = torch.where(prm["flip"].to(x.device).view(n, 1, 1, 1), x.flip(3), x)
    xp = F.pad(x, (pad, pad, pad, pad))                            # (N, C, H+2p, W+2p)
    rows = prm["oy"].to(x.device).view(n, 1) + torch.arange(h, device=x.device)  # (N, H)
    cols = prm["ox"].to(x.device).view(n, 1) + torch.arange(w, device=x.device)  # (N, W)
    xp = xp.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad))
    return xp.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def _erase_mask(prm: dict, h: int, w: int, device: torch.device) -> torch.Tensor:
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    ey, ex = prm["ey"].to(device).view(-1, 1, 1), prm["ex"].to(device).view(-1, 1, 1)
    eh, ew = prm["eh"].to(device).view(-1, 1, 1), prm["ew"].to(device).view(-1, 1, 1)
    inside = (ys >= ey) & (ys < ey + eh) & (xs >= ex) & (xs < ex + ew)   # (N, H, W)
    return (inside & prm["erase"].to(device).view(-1, 1, 1)).unsqueeze(1)  # (N, 1, H, W)


def apply(spec: AugmentSpec, x: torch.Tensor, prm: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Geometric part on a [0, 1] batch; returns (x, erase_mask) - the mask is applied
    after normalisation so an erased patch holds the dataset mean (timm's 'const' mode)."""
    if spec.kind == "digits":
        return _affine(x, prm), None
    if spec.kind in ("fashion", "natural"):
        mask = _erase_mask(prm, x.shape[2], x.shape[3], x.device) if spec.erase_p > 0 else None
        return _flip_crop(x, prm, spec.crop_pad), mask
    return x, None


def slice_params(prm: dict, start: int, stop: int) -> dict:
    return {k: v[start:stop] for k, v in prm.items()}
