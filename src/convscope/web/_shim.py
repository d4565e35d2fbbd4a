"""Stand-ins for convscope.predictor / convscope.capture until they land (same names, same calls)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

try:  # pragma: no cover - the real ones win as soon as they exist
    from convscope.predictor import Predictor  # noqa: F401
except ImportError:
    class Predictor:  # type: ignore[no-redef]
        def __init__(self, model: nn.Module, config: dict[str, Any] | None = None, *, device: str = "cpu") -> None:
            self.model = model.eval()
            self.config = dict(config or {})
            k = None
            self.input_size = tuple(self.config["input_size"])
            self.mean = list(self.config["normalization"]["mean"])
            self.std = list(self.config["normalization"]["std"])
            classes = self.config.get("classes")
            if not classes:
                with torch.inference_mode():
                    out = self.model(torch.zeros(1, *self.input_size))
                k = (out[0] if isinstance(out, (tuple, list)) else out).shape[-1]
                classes = [str(i) for i in range(k)]
            self.classes = [str(c) for c in classes]

        @classmethod
        def from_run(cls, run_dir):
            from convscope.train.checkpoint import load

            model, config = load(run_dir)
            return cls(model, config)

        @classmethod
        def from_name(cls, name: str, **kwargs):
            from convscope.models import create_model

            model = create_model(name, **kwargs)
            c, h, w = model.default_input_size
            config = {"model": {"name": name, "kwargs": kwargs}, "input_size": [c, h, w],
                      "normalization": {"mean": [0.0] * c, "std": [1.0] * c},
                      "preprocessing": {"kind": "resize", "size": [h, w], "channels": c}}
            return cls(model, config)

        def prepare(self, image, *, preprocess: bool = True) -> torch.Tensor:
            import io

            from PIL import Image

            from convscope.data.preprocess import prepare_image

            if isinstance(image, (bytes, bytearray)):
                image = Image.open(io.BytesIO(image))
            return prepare_image(image, self.config, preprocess=preprocess)

        def shown(self, x: torch.Tensor) -> np.ndarray:
            m = torch.tensor(self.mean).view(-1, 1, 1)
            s = torch.tensor(self.std).view(-1, 1, 1)
            return (x[0].float() * s + m).clamp(0, 1).numpy()

try:  # pragma: no cover
    from convscope.capture import capture  # noqa: F401
except ImportError:
    def capture(model: nn.Module, x: torch.Tensor, names=None, *, detach: bool = True):
        acts: dict[str, torch.Tensor] = {}
        hooks = []
        for name, mod in model.named_modules():
            if (names is None and next(mod.children(), None) is None and name) or (names and name in names):
                hooks.append(mod.register_forward_hook(
                    lambda _m, _i, o, name=name: acts.__setitem__(name, o.detach() if detach else o)))
        try:
            out = model(x)
        finally:
            for h in hooks:
                h.remove()
        return out, acts
