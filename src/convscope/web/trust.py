"""When not to trust an answer: what the page lists under "Do not trust this answer too much"."""
from __future__ import annotations

from typing import Any

import numpy as np


def warnings(shown: np.ndarray, probs: list[float], order: list[int], *, raw: np.ndarray | None,
             random_weights: bool, digits: bool, preprocessing: dict[str, Any]) -> list[str]:
    """Reasons not to trust this answer (empty when none is seen): random weights, a blank,
    a dot or a flat stroke (seen in the raw drawing, before centring blows it up), a
    scribble covering the field, two guesses close together."""
    out = []
    p1 = probs[order[0]]
    p2 = probs[order[1]] if len(order) > 1 else 0.0
    if random_weights:
        out.append("the network has random weights: its answers mean nothing")
    if digits:  # convscope.predictor.is_digits
        ink = float((shown > 0.3).mean()) if preprocessing.get("invert") is not True else float((shown < 0.7).mean())
        odd = tiny_or_flat(raw) if raw is not None else None
        if ink == 0.0:
            out.append("the image is blank: there is nothing to recognise")
        elif ink < 0.04:
            out.append(f"very little ink ({ink:.0%} of the pixels; MNIST digits cover 10-25%): "
                       "a dot or a thin stroke is not a digit, whatever the network says")
        elif odd:
            out.append(odd)
        elif ink > 0.45:
            out.append(f"a lot of ink ({ink:.0%} of the pixels; MNIST digits cover 10-25%): "
                       "this does not look like one digit")
    if len(order) > 1 and p1 - p2 < 0.2:
        out.append(f"the first two guesses are close ({p1:.0%} and {p2:.0%})")
    return out


def tiny_or_flat(raw: np.ndarray) -> str | None:
    """A drawing whose ink box is a dot (at most 12% of the side) or flat (height <= 15% of width)."""
    g = np.asarray(raw, dtype=np.float32)
    if g.max() <= 0:
        return None
    ink = g > 0.3 * g.max()
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    if max(h, w) <= 0.12 * max(g.shape):
        return (f"the drawing is tiny ({h}x{w} of {g.shape[0]}x{g.shape[1]} pixels): centring blows a dot up "
                "into a blob, and the network's answer to a blob means little")
    if h <= 0.15 * w:
        return "a flat stroke is not a digit MNIST has (its widest digits are still taller than this)"
    return None
