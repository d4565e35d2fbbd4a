"""Hubel & Wiesel (1959) in silico: orientation tuning of a layer's units.

Stimuli: sinusoidal gratings and bright bars on the dataset's background, at
`orientations` evenly spaced over [0, 180) degrees, several spatial
frequencies (periods from 0.4 to 1.5 receptive fields) and several phases
(positions of the bar / of the grating's stripes across the field), all
centred on the receptive field of the unit at the centre of the layer's map
and shown through a circular aperture that just holds that field.

Orientation is the direction of the stripes or the bar, in degrees
anticlockwise from horizontal as seen on screen: 0 is a horizontal bar
(an edge detector of horizontal edges, Sobel's d/dy, prefers it), 90 a vertical
one (Sobel's d/dx).

A unit's response to one stimulus is its activation less its activation on
the blank background, floored at 0 (a firing rate above spontaneous). Its
response to an orientation is that rate averaged over the phases (the mean
rate while a grating drifts, or a bar sweeps, across the field: the F0 of the
physiology papers), at the best spatial frequency and stimulus kind. Averaging
over phase, not taking the peak, matters at pixel scale: a sharp pattern can
saturate a 3x3 edge detector at orientations it does not prefer. Its selectivity is the vector-sum
orientation selectivity index, OSI = |sum R(t) exp(2it)| / sum R(t), which is
1 - circular variance on doubled angles (Ringach et al. 2002): 0 for a unit
that answers every orientation alike, 1 for one that answers a single one.
The preferred orientation is the peak of the sampled tuning curve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from convscope.units.patches import layer_output
from convscope.units.target import Target

PERIODS = (0.4, 0.7, 1.0, 1.5)  # grating period / bar spacing, in receptive fields
PHASES = 8
MIN_PERIOD = 3.0               # pixels: finer gratings alias on the pixel grid at oblique angles
ORIENTATIONS = 12               # a 15-degree sweep step


@dataclass
class Tuning:
    layer: str
    orientations: np.ndarray      # degrees, (T,)
    curves: np.ndarray            # (channels, T): mean response above blank over phase, best period and kind
    blank: np.ndarray             # (channels,)
    unit: tuple[int, int]         # the unit (y, x) measured in every channel

    @property
    def preferred(self) -> np.ndarray:
        return self.orientations[self.curves.argmax(1)]

    @property
    def osi(self) -> np.ndarray:
        return osi(self.curves, self.orientations)

    @property
    def median_osi(self) -> float:
        return float(np.median(self.osi))

    def units(self) -> list[dict]:
        return [{"channel": c, "preferred_orientation": float(p), "osi": float(o)}
                for c, (p, o) in enumerate(zip(self.preferred, self.osi))]


def osi(curves: np.ndarray, orientations_deg: np.ndarray) -> np.ndarray:
    """Vector-sum OSI per row of non-negative `curves` (..., T): 1 - circular variance on doubled angles."""
    curves = np.clip(np.asarray(curves, dtype=np.float64), 0, None)
    phase = np.exp(2j * np.deg2rad(np.asarray(orientations_deg, dtype=np.float64)))
    total = curves.sum(-1)
    vec = np.abs((curves * phase).sum(-1))
    return np.where(total > 1e-12, vec / np.maximum(total, 1e-12), 0.0)


def stimuli(size: tuple[int, int], centre: tuple[float, float], field: float, *, orientations: int = ORIENTATIONS,
            periods: tuple[float, ...] = PERIODS, phases: int = PHASES,
            background: float = 0.0) -> tuple[torch.Tensor, np.ndarray]:
    """(pixels (T, K, H, W) in [0, 1], orientations in degrees): K = 2 kinds x periods x phases per orientation.

    centre: (row, column) of the receptive field's centre, in pixels; field: its size in pixels.
    """
    h, w = size
    rows = torch.arange(h, dtype=torch.float64)[:, None] - centre[0]
    cols = torch.arange(w, dtype=torch.float64)[None, :] - centre[1]
    radius = field / math.sqrt(2) + 1.0  # holds the whole square field
    aperture = ((rows ** 2 + cols ** 2) <= radius ** 2).double()
    angles = np.arange(orientations) * 180.0 / orientations
    out = []
    for deg in angles:
        t = math.radians(deg)
        # distance across the stripes: along the normal of direction (cos t, -sin t) in (x, row) space
        across = cols * math.sin(t) + rows * math.cos(t)
        per = []
        for rel in periods:
            period = max(MIN_PERIOD, rel * field)
            for k in range(phases):
                shift = k / phases
                grating = 0.5 + 0.5 * torch.cos(2 * math.pi * (across / period + shift))
                per.append(grating)
                offset = ((k + 0.5) / phases - 0.5) * period  # the bar sweeps one period, symmetric about the centre
                half = max(0.5, period / 4)  # anti-aliased: the share of each pixel the bar covers
                per.append(torch.clamp(half + 0.5 - torch.abs(across - offset), 0.0, 1.0))
        stack = torch.stack(per)                                       # (K, H, W)
        out.append(background + (stack - background) * aperture)
    return torch.stack(out).float(), angles


def centre_unit(target: Target, layer: str) -> tuple[tuple[int, int], tuple[float, float], float]:
    """(unit (y, x) at the centre of the map, its field's centre (row, col) in pixels, field size)."""
    _, _, mh, mw = target.shapes[layer]
    y, x = mh // 2, mw // 2
    f = target.fields[layer]
    return (y, x), (f.s[0] + y * f.j[0], f.s[1] + x * f.j[1]), float(max(f.r))


def tune(target: Target, layer: str, *, orientations: int = ORIENTATIONS, periods: tuple[float, ...] = PERIODS,
         phases: int = PHASES, background: float = 0.0, batch: int = 512) -> Tuning:
    """Sweep the stimuli through the receptive field of `layer`'s centre unit, in every channel."""
    c, h, w = target.input_size
    unit, centre, field = centre_unit(target, layer)
    pix, angles = stimuli((h, w), centre, field, orientations=orientations, periods=periods, phases=phases,
                          background=background)
    t, k = pix.shape[:2]
    flat = pix.reshape(t * k, 1, h, w).expand(-1, c, -1, -1)
    shown = torch.cat([flat, torch.full((1, c, h, w), float(background))])  # the blank last
    responses = []
    with torch.no_grad():
        for start in range(0, shown.shape[0], batch):
            out = layer_output(target, target.normalize(shown[start:start + batch]), layer)
            responses.append(out[:, :, unit[0], unit[1]])
    r = torch.cat(responses)                                           # (T*K + 1, channels)
    base = r[-1].numpy().astype(np.float64)
    resp = r[:-1].numpy().astype(np.float64).reshape(t, len(periods), phases, 2, -1)  # (T, P, phase, kind, ch)
    rate = np.clip(resp - base, 0, None).mean(2)                       # a drifting stimulus' mean rate
    curves = rate.max(axis=(1, 2)).T                                   # (channels, T): best period and kind
    return Tuning(layer, angles, curves, base, unit)


def background_of(target: Target) -> float:
    """The blank screen: black for digit datasets (ink on black), mid-grey otherwise."""
    pre = (target.config or {}).get("preprocessing") or {}
    if pre.get("kind") == "digits" and not pre.get("invert"):
        return 0.0
    return 0.0 if target.config is None and target.input_size[0] == 1 else 0.5
