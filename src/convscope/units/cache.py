"""Units of a run, computed once and kept beside it: RUN/units-cache/<layer>.json.

One file per layer holds, for every channel, its top patches (positions,
activations, each crop as a PNG data URL) and its optimised image (cropped to
the field of its strongest unit, and whole). The file records the size and
modification time of the run's weights: retrain the run and the cache is
recomputed. Writes are atomic, so a reader never sees half a file, and a
folder that cannot be written (a read-only run) still works, from memory.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from convscope.units.target import Target

FOLDER = "units-cache"
VERSION = 1


def png_data_url(tile: np.ndarray, scale: int = 1) -> str:
    """(C, h, w) in [0, 1] -> "data:image/png;base64,..." (grey for 1 channel, RGB for 3)."""
    from PIL import Image

    t = np.clip(np.asarray(tile, dtype=np.float32), 0, 1)
    arr = (t[0] if t.shape[0] == 1 else t.transpose(1, 2, 0)) * 255
    img = Image.fromarray(arr.round().astype(np.uint8))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    from convscope.web.encoding import png_url

    return png_url(img)


def stamp(run_dir: Path) -> dict[str, Any]:
    from convscope.runs import WEIGHTS

    st = (run_dir / WEIGHTS).stat()
    return {"version": VERSION, "weights_size": st.st_size, "weights_mtime_ns": st.st_mtime_ns}


def path_for(run_dir: Path, layer: str) -> Path:
    return run_dir / FOLDER / f"{layer.replace('/', '_')}.json"


def read(run_dir: Path, layer: str) -> dict[str, Any] | None:
    """The cached layer, or None when absent, unreadable or made from other weights."""
    path = path_for(run_dir, layer)
    try:
        data = json.loads(path.read_text())
        return data if data.get("stamp") == stamp(run_dir) else None
    except (OSError, ValueError, AttributeError):
        return None


def compute(target: Target, layer: str, *, k: int = 9, steps: int = 256,
            progress: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """Every channel of `layer`: top-k patches and the optimised image, as JSON with PNG data URLs."""
    from convscope.units.optimize import Settings, visualize
    from convscope.units.patches import crop, patch_crops, top_patches
    from convscope.units.report import dataset_images

    say = progress or (lambda what, frac: None)
    say("loading the dataset", 0.0)
    images = dataset_images(target, None)
    hits = top_patches(target, images, layer, k=k, progress=lambda i, n: say("ranking the dataset", 0.3 * i / n))
    crops = patch_crops(target, images, layer, hits)
    chans = list(hits)
    imgs, acts, where = visualize(target, layer, chans, Settings(steps=steps), batch=16,
                                  progress=lambda i, n: say("optimising images", 0.3 + 0.7 * i / n))
    scale = max(1, 64 // max(target.fields[layer].r))
    channels = []
    for i, c in enumerate(chans):
        best = hits[c][0].activation
        channels.append({
            "channel": c,
            "top": [{**h.to_dict(), "png": png_data_url(t, scale)} for h, t in zip(hits[c], crops[c])],
            "optimized_activation": acts[i], "best_patch_activation": best,
            "ratio": acts[i] / best if best > 0 else None,
            "optimized_png": png_data_url(crop(target, imgs[i], layer, *where[i]), scale),
            "optimized_full_png": png_data_url(imgs[i].numpy(), max(1, 128 // target.input_size[-1])),
        })
    say("done", 1.0)
    return {"layer": layer, "receptive_field": int(max(target.fields[layer].r)), "channels": channels}


def write(run_dir: Path, layer: str, data: dict[str, Any]) -> bool:
    """Keep `data` beside the run; False (and nothing written) when the folder is read-only."""
    from convscope.runs import atomic_write_json

    try:
        (run_dir / FOLDER).mkdir(exist_ok=True)
        atomic_write_json(path_for(run_dir, layer), {**data, "stamp": stamp(run_dir)})
        return True
    except OSError:
        return False


class Jobs:
    """Layers being computed in background threads, their progress, and the finished results."""

    def __init__(self, target_factory: Callable[[], Target], run_dir: Path | None, *, steps: int = 256) -> None:
        self._target_factory = target_factory
        self.steps = steps
        self._target: Target | None = None
        self.run_dir = run_dir
        self._lock = threading.Lock()
        # one layer at a time: every job runs forward and backward passes through the one target
        # model (two at once fail in autograd: "Trying to backward through the graph a second time")
        self._computing = threading.Lock()
        self.progress: dict[str, dict[str, Any]] = {}
        self.done: dict[str, dict[str, Any]] = {}

    def target(self) -> Target:
        with self._lock:
            if self._target is None:
                self._target = self._target_factory()
            return self._target

    def get(self, layer: str) -> dict[str, Any] | None:
        if layer in self.done:
            return self.done[layer]
        if self.run_dir is not None:
            data = read(self.run_dir, layer)
            if data is not None:
                self.done[layer] = data
                return data
        return None

    def start(self, layer: str) -> dict[str, Any]:
        """Start computing `layer` unless it is under way; its progress."""
        with self._lock:
            now = self.progress.get(layer)
            if now is None or now.get("status") == "error" and now.get("told"):
                # a failed layer's error is the answer once; asking again tries again
                self.progress[layer] = {"status": "computing", "stage": "waiting", "progress": 0.0}
                threading.Thread(target=self._run, args=(layer,), daemon=True).start()
            elif now.get("status") == "error":
                now["told"] = True
            return {k: v for k, v in self.progress[layer].items() if k != "told"}

    def _run(self, layer: str) -> None:
        def say(stage: str, frac: float) -> None:
            self.progress[layer] = {"status": "computing", "stage": stage, "progress": round(frac, 3)}
        try:
            with self._computing:
                data = compute(self.target(), layer, steps=self.steps, progress=say)
            if self.run_dir is not None:
                write(self.run_dir, layer, data)
            self.done[layer] = data
            self.progress[layer] = {"status": "ready", "stage": "done", "progress": 1.0}
        except Exception as exc:  # reported to the page, which shows it; the server keeps serving
            self.progress[layer] = {"status": "error", "error": str(exc).splitlines()[0][:300], "progress": 0.0}
