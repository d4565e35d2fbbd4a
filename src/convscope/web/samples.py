"""Samples for the explorer: the run's own test split, with true labels, optionally only
the ones the network gets wrong (evaluated once, on the first `MAX_EVALUATED` images)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from convscope.web.decode import InputError

MAX_EVALUATED = 1000
MAX_PAGE = 96
THUMB = 64  # thumbnails at most 64 px a side


class Samples:
    """The samples of one snapshot (web/snapshot.py); `guesses(snap, xs)` gives its first guess for
    each of a batch of prepared inputs (the engine computes it under its lock)."""

    def __init__(self, snap: Any, guesses: Callable[[Any, torch.Tensor], np.ndarray]) -> None:
        from convscope.train.api import run_dataset

        self.snap, self.guesses = snap, guesses
        cfg = snap.config
        name = cfg.get("dataset")
        if not name or snap.run_dir is None:
            raise InputError("this network was not trained by convscope, so it has no test split to sample; "
                             "upload or drop an image instead", 404)
        try:  # split as the run was: a run trained on every image has no test split to pass off as one
            ds = run_dataset(cfg)
        except Exception as exc:  # missing files, a moved folder: say which, keep serving
            raise InputError(f"the run's dataset {name!r} cannot be loaded here ({str(exc)[:160]}); "
                             "upload an image instead", 404) from None
        self.split_name = next((s for s in ("test", "val") if len(ds.split(s))), "train")
        split = ds.split(self.split_name)
        self.images, self.labels = split.images, split.labels  # uint8 (N, C, H, W), int64 (N,)
        self.classes = list(ds.classes)
        self._predicted: np.ndarray | None = None

    def image(self, index: int) -> tuple[np.ndarray, int]:
        if not 0 <= index < len(self.labels):
            raise InputError(f"sample must be 0..{len(self.labels) - 1}, got {index}", 422)
        a = self.images[index].numpy()
        return (a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)), int(self.labels[index])

    def _predictions(self) -> np.ndarray:
        if self._predicted is None:
            n = min(len(self.labels), MAX_EVALUATED)
            out = []
            for start in range(0, n, 64):
                xs = torch.cat([self.snap.prepare(self.image(i)[0], preprocess=False)[0]
                                for i in range(start, min(n, start + 64))])
                out.append(self.guesses(self.snap, xs))
            self._predicted = np.concatenate(out) if out else np.zeros(0, np.int64)
        return self._predicted

    def page(self, *, offset: int = 0, limit: int = 24, wrong: bool = False) -> dict[str, Any]:
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise InputError(f"offset must be >= 0 and limit 1..{MAX_PAGE}", 422)
        if wrong:
            pred = self._predictions()
            indices = np.flatnonzero(pred != self.labels[:len(pred)].numpy())
        else:  # a fixed shuffle, so a page mixes the classes (test splits are often sorted by class)
            indices = np.random.default_rng(0).permutation(len(self.labels))
        chosen = indices[offset:offset + limit].tolist()
        pred = self._predictions() if wrong else None
        items = []
        for i in chosen:
            img, truth = self.image(i)
            item = {"index": i, "truth": truth, "label": self.classes[truth], "png": _thumb(img)}
            if pred is not None:
                item["predicted"] = int(pred[i])
                item["predicted_label"] = self.snap.classes[int(pred[i])]
            items.append(item)
        return {"split": self.split_name, "total": int(len(indices)), "offset": offset, "wrong": wrong,
                "evaluated": int(len(self._predicted)) if self._predicted is not None else None, "samples": items}


def _thumb(img: np.ndarray) -> str:
    from PIL import Image

    from convscope.web.encoding import png_url

    im = Image.fromarray(img)
    if max(im.size) > THUMB:
        im.thumbnail((THUMB, THUMB))
    return png_url(im)
