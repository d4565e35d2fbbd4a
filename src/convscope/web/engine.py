"""The explorer's engine: one model slot, one lock, one way to answer an image.

    engine = Explorer.from_run("runs/demo")
    [a] = engine.answer([{"png": "data:image/png;base64,..."}])   # an Answer or an InputError per item
    engine.layer("conv1", input_id=a.input_id)                       # more of one layer, later
    engine.open_run("runs/new")                                      # another network, swapped in whole

The slot holds one immutable `Snapshot` (web/snapshot.py). Every request reads the slot
once and uses that snapshot to the end, so a swap never mixes two networks in one
answer; every forward and backward pass through a snapshot's model (batches, lone
answers, layers, Grad-CAM, the samples' guesses) holds `lock`, which is also the lock torch.fx
tracing holds (`analysis.graph.FX_LOCK`): a network traced while answers run (a run opened
by the Train tab) would otherwise send their forward passes through the tracer. The answer
processes (web/pool.py) hold copies of the network and answer with this same class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from convscope.analysis.graph import FX_LOCK
from convscope.web import snapshot as snapshots
from convscope.web.answer import Answer, Prepared, Row, answer_rows, encode_layer
from convscope.web.decode import InputError, Request, read_request
from convscope.web.kept import Kept

MAX_PAGE_MAPS = 256
# read-only facts of the current snapshot, for scripts and tests (`engine.layers`, ...);
# the engine's own code takes `self.snapshot` once per request instead
FACTS = frozenset({"model", "config", "predictor", "graph", "layers", "classes", "num_classes", "input_size",
                   "macs", "name", "run_dir", "run_name", "origin", "origin_name", "random_weights",
                   "version", "digits", "batched", "min_rows", "value"})


class Explorer:
    """A network ready to answer: `answer(items)` is /api/predict, `describe()` is /api/model."""

    def __init__(self, model: nn.Module | None = None, config: dict[str, Any] | None = None, *,
                 run_dir: str | Path | None = None, random_weights: bool = False, origin: str | None = None,
                 version: int = 1, snapshot: snapshots.Snapshot | None = None) -> None:
        if snapshot is None:
            if model is None:
                raise ValueError("Explorer needs a model or a snapshot")
            snapshot = snapshots.build(model, config, run_dir=run_dir, random_weights=random_weights,
                                       origin=origin, version=version)
        self._snapshot = snapshot
        self.lock = FX_LOCK  # the process's one lock for forward passes and fx tracing (analysis/graph.py)
        self._kept = Kept()
        self._samples: Any = None  # (version, web.samples.Samples) of the current snapshot

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "Explorer":
        return cls(snapshot=snapshots.from_run(run_dir))

    @classmethod
    def from_name(cls, name: str) -> "Explorer":
        """A zoo network with random weights, or "torchvision:NAME" with torchvision's weights."""
        return cls(snapshot=snapshots.from_name(name))

    @property
    def snapshot(self) -> snapshots.Snapshot:
        return self._snapshot

    def __getattr__(self, key: str) -> Any:
        if key in FACTS:
            return getattr(self._snapshot, key)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    # ---- the slot ------------------------------------------------------------------------
    def swap(self, snapshot: snapshots.Snapshot) -> snapshots.Snapshot:
        """Put `snapshot` in the slot (with the next version); requests under way finish with
        the one they started with."""
        with self.lock:
            self._snapshot = snapshot.with_version(self._snapshot.version + 1)
            self._samples = None
            return self._snapshot

    def open_run(self, run_dir: str | Path) -> snapshots.Snapshot:
        """Load a run aside (no lock: nobody else has it yet), then swap it in."""
        return self.swap(snapshots.from_run(run_dir))

    def describe(self) -> dict[str, Any]:
        return self._snapshot.description()

    # ---- answering -----------------------------------------------------------------------
    def answer(self, items: Sequence[Request | dict[str, Any]], ids: list[int] | None = None) -> list[Answer | InputError]:
        """/api/predict for several images with one forward pass: an Answer, or the InputError of
        that item alone, for each. `ids`: the input ids to answer with (an answer process gets
        them from the server, which keeps the inputs); default: new ids, and the inputs are kept."""
        snap = self._snapshot
        prepared: list[Prepared | InputError] = []
        for item in items:
            try:
                prepared.append(self._prepare(snap, item if isinstance(item, Request) else read_request(item)))
            except InputError as exc:
                prepared.append(exc)
        good = [i for i, p in enumerate(prepared) if isinstance(p, Prepared)]
        out: list[Any] = list(prepared)
        if not good:
            return out
        with self.lock:
            given = ids is not None
            use = [ids[i] for i in good] if ids is not None else self._kept.new_ids(len(good))
            rows = answer_rows(snap, [prepared[i] for i in good], use)  # type: ignore[misc]
            for i, row in zip(good, rows):
                out[i] = row.answer if isinstance(row, Row) else row
                if isinstance(row, Row) and not given:
                    self._kept.keep(row.answer.input_id, snap, row.answer.x, row.values)
        return out

    def predict(self, image: Any, *, preprocess: bool = True) -> dict[str, Any]:
        """One image (an (H, W) array in [0, 1], white ink on black, a PIL image or a body dict)
        answered as /api/predict's JSON would be; InputError when it cannot be."""
        item = image if isinstance(image, dict) else Request(image=image, preprocess=preprocess)
        [out] = self.answer([item])
        if isinstance(out, InputError):
            raise out
        return out.to_dict()

    def _prepare(self, snap: snapshots.Snapshot, req: Request) -> Prepared:
        if req.sample is None:
            x, raw = snap.prepare(req.image, preprocess=req.preprocess)
            return Prepared(x, raw)
        image, truth = self._samples_of(snap).image(req.sample)
        x, _ = snap.prepare(image, preprocess=False)
        return Prepared(x, None, {"sample": {"index": req.sample, "truth": truth, "label": snap.classes[truth]}})

    def new_ids(self, n: int) -> list[int]:
        """n fresh input ids (for answers computed in an answer process: web/pool.py)."""
        with self.lock:
            return self._kept.new_ids(n)

    def remember(self, input_id: int, snap: snapshots.Snapshot, x: torch.Tensor) -> None:
        """Keep an input answered elsewhere by `snap`, so /api/layer and Grad-CAM can come back to it."""
        with self.lock:
            self._kept.keep(input_id, snap, x)

    # ---- more of an answer ---------------------------------------------------------------
    def layer(self, name: str, *, input_id: int | None = None, offset: int = 0, limit: int = 64,
              sort: str = "index") -> dict[str, Any]:
        """Maps `offset`.. of layer `name` for a kept input (default: the last answered)."""
        if sort not in ("index", "strength"):
            raise InputError('sort must be "index" or "strength"', 422)
        if offset < 0 or not 1 <= limit <= MAX_PAGE_MAPS:
            raise InputError(f"offset must be >= 0 and limit 1..{MAX_PAGE_MAPS}", 422)
        with self.lock:
            input_id, entry = self._kept.get(input_id)
            snap = entry.snapshot
            snap.layer(name)  # 404 before any work
            values = entry.values
            if values is None:
                _, values = snap.forward(entry.x)
                self._kept.set_values(input_id, values)
            v = snap.value(values, name)
        enc = encode_layer(name, v, offset=offset, limit=limit, sort=sort)
        enc.update(input_id=input_id, version=snap.version)
        return enc

    def weights(self, name: str, unit: int) -> dict[str, Any]:
        """The weights one unit of layer `name` applies (web/snapshot.py `unit_weights`)."""
        snap = self._snapshot
        return dict(snapshots.unit_weights(snap, name, unit), version=snap.version)

    def gradcam(self, *, input_id: int | None = None, rank: int = 0) -> dict[str, Any]:
        """Grad-CAM (analysis.saliency) for the first (rank 0) or second (rank 1) guess of a kept
        input: the heat map over the input, uint8 base64 (H, W), 255 = strongest evidence."""
        import base64

        from convscope.analysis.saliency import saliency_map

        if rank not in (0, 1):
            raise InputError("rank must be 0 (the first guess) or 1 (the second)", 422)
        with self.lock:
            input_id, entry = self._kept.get(input_id)
            snap, x = entry.snapshot, entry.x
            target = int(torch.argsort(snap.logits(x)[0], descending=True)[rank])
            try:
                heat, target, layer = saliency_map(snap.model, x.clone(), method="gradcam", target=target)
            except ValueError as exc:  # a model without a spatial layer
                raise InputError(str(exc)[:300], 422) from None
        q = np.rint(np.clip(heat, 0, 1) * 255).astype(np.uint8)
        return {"version": snap.version, "input_id": input_id, "rank": rank, "target": target,
                "label": snap.classes[target], "layer": layer, "shape": list(q.shape),
                "data": base64.b64encode(q.tobytes()).decode("ascii")}

    # ---- samples from the run's own test split -----------------------------------------
    def samples(self, *, offset: int = 0, limit: int = 24, wrong: bool = False) -> dict[str, Any]:
        snap = self._snapshot
        return dict(self._samples_of(snap).page(offset=offset, limit=limit, wrong=wrong), version=snap.version)

    def sample_image(self, index: int) -> tuple[np.ndarray, int]:
        """Sample `index` as stored ((H, W) or (H, W, C) uint8) and its true class."""
        return self._samples_of(self._snapshot).image(index)

    def _samples_of(self, snap: snapshots.Snapshot) -> Any:
        from convscope.web.samples import Samples

        held = self._samples
        if held is not None and held[0] is snap:
            return held[1]
        samples = Samples(snap, self._guesses)
        if snap is self._snapshot:
            self._samples = (snap, samples)
        return samples

    def _guesses(self, snap: snapshots.Snapshot, xs: torch.Tensor) -> np.ndarray:
        """The first guess of `snap` for each of a batch of prepared inputs."""
        with self.lock:
            return snap.logits(xs).argmax(1).numpy()
