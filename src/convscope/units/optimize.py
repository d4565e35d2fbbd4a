"""Feature visualisation by optimisation (Olah, Mordvintsev & Schubert 2017, "Feature Visualization").

Gradient ascent on the input for one channel (the mean of its map) or one unit
(its centre unit). Two things keep the result from being high-frequency noise:

- the image is parametrised in a decorrelated space: its Fourier coefficients,
  scaled by 1/frequency so every frequency starts with equal energy (the
  "Preconditioning and Parameterization" section), and, for RGB, colours
  decorrelated with the square root of ImageNet's colour covariance (Lucid's
  `color_correlation_svd_sqrt`); a sigmoid maps the result into valid pixels
  in [0, 1], so the image is one a camera or a pen could make;
- each step sees a randomly transformed copy (the "Transformation robustness"
  section): jitter (a few pixels of translation), scale and rotation, drawn
  per image, all in one `affine_grid`, sized to the image (a 28x28 digit gets
  one pixel of jitter and a few degrees, a 224x224 photo eight pixels and 10).

Channels are optimised together, one per batch element, so a layer of 16
channels costs about what one does. Written here rather than taken from
torch-lucent: that package is unmaintained (no release since 2021), pins old
torch APIs, and gives blurry results at 28-32 pixels (greentfrapp/lucent#10);
the whole method is ~100 lines.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convscope.units.patches import layer_output
from convscope.units.target import Target

# Lucid's colour decorrelation: the square root of the colour covariance of ImageNet, by SVD.
COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                           [0.27, 0.00, -0.05],
                           [0.27, -0.09, 0.03]])
COLOR_SQRT = COLOR_SQRT / COLOR_SQRT.norm(dim=0).max()
TEMP = 0.1
STRETCH = 0.01


@dataclass
class Settings:
    steps: int = 256
    lr: float = 0.1
    jitter: int | None = None        # pixels; None: sized to the image
    scale: float | None = None       # largest relative change of size
    rotate: float | None = None      # largest rotation, degrees
    objective: str = "channel"       # "channel": mean of the map; "unit": its centre unit
    decay_power: float = 1.0         # spectrum scaling 1/f^decay_power
    restarts: int = 4                # random starts per channel; the best is kept
    polish: float = 0.25             # share of the steps spent on the untransformed image's peak
    seed: int = 0

    def sized(self, side: int) -> "Settings":
        s = Settings(**self.__dict__)
        s.jitter = max(1, side // 28) if self.jitter is None else self.jitter
        s.scale = (0.05 if side < 64 else 0.1) if self.scale is None else self.scale
        s.rotate = (5.0 if side < 64 else 10.0) if self.rotate is None else self.rotate
        return s


class FourierImage(torch.nn.Module):
    """A batch of images parametrised by scaled Fourier coefficients (decorrelated space)."""

    def __init__(self, n: int, channels: int, h: int, w: int, *, decay_power: float = 1.0, init_std: float = 0.5,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        freq = torch.sqrt(fx * fx + fy * fy)                             # (h, w//2+1)
        scale = 1.0 / torch.clamp(freq, min=1.0 / max(h, w)) ** decay_power
        self.register_buffer("scale", scale)
        self.size = (h, w)
        self.channels = channels
        init = torch.randn(n, channels, h, w // 2 + 1, 2, generator=generator)
        # start from random blotches of a fixed contrast (pre-sigmoid std `init_std`) at any size:
        # a flat grey start leaves every ReLU of a digit network off, and gradient ascent stuck
        raw = torch.fft.irfft2(torch.view_as_complex(init) * scale, s=self.size, norm="ortho")
        self.spectrum = torch.nn.Parameter(init * (init_std * 4.0 / raw.std()))

    def forward(self) -> torch.Tensor:
        """Pixels in [0, 1], (N, C, H, W)."""
        spec = torch.view_as_complex(self.spectrum) * self.scale
        img = torch.fft.irfft2(spec, s=self.size, norm="ortho") / 4.0   # (N, C, H, W)
        if self.channels == 3:
            img = torch.einsum("nchw,dc->ndhw", img, COLOR_SQRT.to(img))
        # a sigmoid stretched by 2% and clipped: pixels reach exactly 0 and 1 (a sigmoid alone never
        # does, so a linear unit could never match a dataset patch that already sits at its bound);
        # the clip passes gradients straight through, so a clipped pixel can still come back
        pix = torch.sigmoid(img) * (1 + 2 * STRETCH) - STRETCH
        return pix + (pix.clamp(0.0, 1.0) - pix).detach()


def random_transform(x: torch.Tensor, s: Settings, generator: torch.Generator) -> torch.Tensor:
    """Jitter, scale and rotate each image of the batch by its own random amount (edges reflected)."""
    n, _, h, w = x.shape
    u = torch.rand(n, 4, generator=generator) * 2 - 1                 # uniform in [-1, 1)
    angle = u[:, 0] * math.radians(s.rotate)
    zoom = 1.0 + u[:, 1] * s.scale
    tx, ty = u[:, 2] * 2 * s.jitter / w, u[:, 3] * 2 * s.jitter / h  # in grid units ([-1, 1] spans the image)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _objective(act: torch.Tensor, chans: torch.Tensor, kind: str) -> torch.Tensor:
    """Per image: its own channel's mean (or centre unit); act (N, C, H, W)."""
    sel = act[torch.arange(act.shape[0]), chans]                         # (N, H, W)
    if kind == "unit":
        return sel[:, sel.shape[1] // 2, sel.shape[2] // 2]
    if kind == "peak":
        flat = sel.flatten(1)
        return flat.mean(1) + TEMP * torch.logsumexp(flat / TEMP, 1)
    return sel.flatten(1).mean(1)


def visualize(target: Target, layer: str, channels: list[int], settings: Settings | None = None, *,
              size: tuple[int, int] | None = None, batch: int = 64,
              progress=None) -> tuple[torch.Tensor, list[float], list[tuple[int, int]]]:
    """(images (K, C, H, W) in [0, 1], each channel's activation at its strongest unit on its image,
    untransformed, and that unit's (y, x)).

    size: the image size (default: the model's input size). Each channel gets
    `settings.restarts` random starts (gradient ascent through ReLUs finds local
    optima) and keeps the image whose strongest unit is strongest: the maximum of
    the channel's map on the final, untransformed image, the measure
    `top_patches` ranks dataset images by.
    """
    c, h, w = target.input_size
    h, w = size or (h, w)
    s = (settings or Settings()).sized(min(h, w))
    if s.objective not in ("channel", "unit", "peak"):
        raise ValueError(f"objective must be 'channel', 'unit' or 'peak', got {s.objective!r}")
    tries = [ch for ch in channels for _ in range(s.restarts)]
    per = max(1, batch // s.restarts) * s.restarts
    images, acts, where = [], [], []
    for start in range(0, len(tries), per):
        chunk = tries[start:start + per]
        img = _optimize_chunk(target, layer, chunk, s, c, h, w, seed=s.seed + start)
        with torch.no_grad():
            out = layer_output(target, target.normalize(img), layer)
            sel = out[torch.arange(len(chunk)), torch.tensor(chunk)]
            peak, pos = sel.flatten(1).max(1)
        best = peak.view(-1, s.restarts).argmax(1) + torch.arange(0, len(chunk), s.restarts)
        images.append(img[best])
        acts.extend(float(v) for v in peak[best])
        where.extend((int(p) // sel.shape[-1], int(p) % sel.shape[-1]) for p in pos[best])
        if progress:
            progress(len(acts), len(channels))
    return torch.cat(images), acts, where


def _optimize_chunk(target: Target, layer: str, chunk: list[int], s: Settings, c: int, h: int, w: int,
                    *, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    param = FourierImage(len(chunk), c, h, w, decay_power=s.decay_power, generator=gen)
    opt = torch.optim.Adam(param.parameters(), lr=s.lr)
    chans = torch.tensor(chunk)
    polish = int(s.steps * s.polish)
    for step in range(s.steps):
        opt.zero_grad(set_to_none=True)
        x = param()
        if step < s.steps - polish:
            x = random_transform(x, s, gen)
            act = layer_output(target, target.normalize(x), layer, detach=False)
            loss = -_objective(act, chans, s.objective).sum()
        else:  # the last steps: the untransformed image, pushing its strongest unit
            act = layer_output(target, target.normalize(x), layer, detach=False)
            loss = -_objective(act, chans, "peak").sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return param().detach()
