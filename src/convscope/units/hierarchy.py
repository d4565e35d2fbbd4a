"""Lee et al. (2009), Fig. 3, for your run: what the units of each layer respond to, conv1 to the last conv.

Each layer gets a row of its most strongly driven channels (ranked by their
best dataset patch): the patch, cropped to the receptive field, and beneath
it the optimised image cropped the same way around its strongest unit. Fields
grow layer by layer, so the rows go from strokes and edges to parts of digits.
"""
from __future__ import annotations

from typing import Any

import numpy as np

PER_LAYER = 8  # channels shown per layer


def hierarchy_rows(names: list[str], results: list[dict[str, Any]], pictures: list[dict[str, Any]],
                   per_layer: int = PER_LAYER) -> list[tuple[str, list[np.ndarray], list[np.ndarray]]]:
    """(layer, best patches, optimised crops) per layer, for `plots.plot_hierarchy`."""
    rows = []
    for name, result, pics in zip(names, results, pictures):
        ranked = sorted(result["channels"], key=lambda e: -(e["top"][0]["activation"] if e["top"] else -np.inf))
        chosen = [e["channel"] for e in ranked[:per_layer]]
        patches = [pics["patches"][c][0] for c in chosen]
        optimized = [pics["optimized"][c] for c in chosen] if "optimized" in pics else []
        rows.append((f"{name}\nch {' '.join(map(str, chosen))}", patches, optimized))
    return rows
