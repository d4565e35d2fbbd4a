"""The one inference path: prepare an image, score it, read its top guesses and layer outputs.

    p = Predictor.from_run("runs/demo")
    x = p.prepare("digit.png")                # (1, C, H, W), as the run's training data was
    p.top(p.probabilities(x)[0], 3)           # [{"index", "label", "probability"}, ...]
    logits, outs = p.capture(x, ["conv1"])    # any named submodule's output

`convscope predict`, the explorer and the analysis pictures all go through it,
so an image is prepared (alpha composited, dark ink on light paper turned
into MNIST's white on black, resized or MNIST-centred, normalised) exactly one
way whoever asks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from convscope import capture as capturing
from convscope.data.preprocess import prepare_image
from convscope.errors import DataError, RunError


def main_logits(out: Any) -> torch.Tensor:
    """Models with auxiliary heads (GoogLeNet in train mode) return a tuple: logits first."""
    return out[0] if isinstance(out, (tuple, list)) else out


def top_k(probs: Any, k: int, labels: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """[{"index", "label", "probability"}] of the k largest of one row of probabilities,
    largest first (ties: lower index first); a class without a label is named by its index."""
    p = [float(v) for v in np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs,
                                      dtype=np.float64).reshape(-1)]
    order = sorted(range(len(p)), key=lambda i: (-p[i], i))[:max(0, int(k))]
    return [{"index": i, "label": str(labels[i]) if i < len(labels) else str(i), "probability": p[i]}
            for i in order]


def unnormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(C, H, W) float32 in [0, 1]: the first image of `x` with the normalisation undone."""
    a = x.detach().float().cpu()
    a = a[0] if a.dim() == 4 else a
    m = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
    return np.clip((a * s + m).numpy(), 0.0, 1.0).astype(np.float32)


def default_config(model: nn.Module, name: str | None = None, kwargs: dict | None = None) -> dict[str, Any]:
    """A run config for a model without a run: its default input size, identity
    normalisation, classes "0".."K-1"; small grey inputs are prepared as MNIST digits."""
    from convscope.runs import output_count

    c, h, w = (int(v) for v in getattr(model, "default_input_size", (3, 224, 224)))
    k = output_count(model, (c, h, w))
    return {
        "model": {"name": name or getattr(model, "model_name", type(model).__name__), "kwargs": dict(kwargs or {})},
        "classes": [str(i) for i in range(k)] if k is not None else None,
        "input_size": [c, h, w],
        "normalization": {"mean": [0.0] * c, "std": [1.0] * c},
        "preprocessing": {"kind": _default_kind(c, h, w), "size": [h, w], "channels": c},
    }


def _default_kind(c: int, h: int, w: int) -> str:
    """How a config that does not say prepares its images: small grey inputs as MNIST digits."""
    return "digits" if c == 1 and max(h, w) <= 32 else "resize"


def check_classes(classes: Sequence[Any], outputs: int | None, where: str = "the run's config.json") -> None:
    """The one "classes match outputs" rule: RunError (a ValueError) when `outputs` is known
    and differs from the number of class names."""
    if outputs is not None and outputs != len(classes):
        raise RunError(f"{where} names {len(classes)} classes but its model has {outputs} outputs; "
                       f'fix "classes" in config.json (one name per output)')


def is_digits(config: dict[str, Any]) -> bool:
    """The one rule for "this network reads MNIST-style digits": its inputs are prepared as
    digits (ink box scaled and centred) and have one channel. The explorer's pad, its
    warnings and the page all follow it (the page reads it from /api/model)."""
    pre = config.get("preprocessing") or {}
    size = config.get("input_size") or [pre.get("channels", 1)]
    return pre.get("kind") == "digits" and int(size[0]) == 1


def normalize_config(model: nn.Module, config: dict[str, Any] | None = None, *,
                     defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one run-config normaliser: `config` with every key the predictor, the explorer and
    the page read filled in from the model (old runs and hand-written configs lack some).
    `defaults`: `default_config(model)`, when the caller has it already."""
    defaults = defaults or default_config(model)
    given = {k: v for k, v in (config or {}).items() if v is not None}
    cfg = {**defaults, **given}
    c, h, w = (int(v) for v in cfg["input_size"])
    cfg["input_size"] = [c, h, w]
    # preprocessing and normalisation follow the input size the config gives, not the defaults'
    pre = dict(given.get("preprocessing") or {})
    pre.setdefault("kind", _default_kind(c, h, w))
    pre.setdefault("size", [h, w])
    pre.setdefault("channels", c)
    cfg["preprocessing"] = pre
    norm = given.get("normalization") or {"mean": pre.get("mean", [0.0] * c), "std": pre.get("std", [1.0] * c)}
    cfg["normalization"] = {"mean": [float(v) for v in norm["mean"]], "std": [float(v) for v in norm["std"]]}
    return cfg


def _per_channel(values: Sequence[float], c: int, what: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * c
    if len(values) != c:
        raise RunError(f"the run config's normalisation has {len(values)} {what} values for {c} channels")
    return values


class Predictor:
    """A model in eval mode and the config that says how its inputs were prepared."""

    def __init__(self, model: nn.Module, config: dict[str, Any] | None = None, *,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        defaults = default_config(model)
        self.config = normalize_config(model, config, defaults=defaults)
        self.input_size = tuple(int(v) for v in self.config["input_size"])
        c = self.input_size[0]
        norm = self.config["normalization"]
        self.mean = _per_channel(norm.get("mean", [0.0]), c, "mean")
        self.std = _per_channel(norm.get("std", [1.0]), c, "std")
        k = len(defaults["classes"]) if defaults["classes"] is not None else None
        classes = self.config.get("classes") or defaults["classes"] or []
        self.classes = [str(v) for v in classes]
        check_classes(self.classes, k)
        self.run_dir: Path | None = None

    @classmethod
    def from_run(cls, run_dir: str | Path, *, device: str | torch.device = "cpu") -> "Predictor":
        from convscope.runs import RunDir

        model, config = RunDir(run_dir).load()
        p = cls(model, config, device=device)
        p.run_dir = Path(run_dir)
        return p

    @classmethod
    def from_name(cls, name: str, *, device: str | torch.device = "cpu", **kwargs: Any) -> "Predictor":
        """A registered model with random weights and its default config."""
        from convscope.models import create_model

        model = create_model(name, **kwargs)
        return cls(model, default_config(model, name, kwargs), device=device)

    @property
    def name(self) -> str:
        return str((self.config.get("model") or {}).get("name") or type(self.model).__name__)

    # ---- input ----------------------------------------------------------------------------
    def prepare(self, image: Any, *, preprocess: bool = True) -> torch.Tensor:
        """(1, C, H, W) float32, normalised: `image` prepared as the run's training data was.

        image: a path, the bytes of an image file, a PIL image, or an array ((H, W) or
        (H, W, C); uint8 0-255 or floats in [0, 1]). `preprocess=False` (digits models
        only) swaps the MNIST centring for a plain area resize.
        """
        x = prepare_image(image, self.config, preprocess=preprocess)
        if tuple(x.shape[1:]) != self.input_size:
            raise RunError(f'the run\'s "preprocessing" gives {tuple(x.shape[1:])} images but the model '
                           f"takes {self.input_size}; fix config.json")
        return x.to(self.device)

    def prepare_pair(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """A digits run's (MNIST-style, plain resize) inputs for one image, from one decode."""
        from convscope.data.preprocess import prepare_digit_pair

        x, raw = prepare_digit_pair(image, self.config)
        if tuple(x.shape[1:]) != self.input_size:
            raise RunError(f'the run\'s "preprocessing" gives {tuple(x.shape[1:])} images but the model '
                           f"takes {self.input_size}; fix config.json")
        return x.to(self.device), raw.to(self.device)

    def prepare_batch(self, images: Iterable[Any], *, preprocess: bool = True) -> torch.Tensor:
        """(N, C, H, W): every image prepared (a bad one fails before any is scored)."""
        xs = [self.prepare(img, preprocess=preprocess) for img in images]
        if not xs:
            raise DataError("no images to prepare")
        return torch.cat(xs)

    def shown(self, x: torch.Tensor) -> np.ndarray:
        """The fed image with the normalisation undone, clipped to [0, 1]: (C, H, W) float32."""
        return unnormalize(x, self.mean, self.std)

    # ---- output ---------------------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return main_logits(self.model(x.to(self.device))).float()

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) softmax of the logits (float32)."""
        return torch.softmax(self.logits(x), dim=1)

    def top(self, probs: torch.Tensor | Sequence[float], k: int = 5) -> list[dict[str, Any]]:
        """The k most probable classes of one image, most probable first (ties: lower index first)."""
        return top_k(probs, k, self.classes)

    def predict(self, images: Sequence[Any], k: int = 5) -> list[dict[str, Any]]:
        """`convscope predict --json`: [{"image", "top"}] in the order given."""
        images = list(images)
        xs = []
        for img in images:
            try:
                xs.append(self.prepare(img))
            except FileNotFoundError:
                raise DataError(f"image {str(img)!r} does not exist") from None
            except (ValueError, OSError) as exc:
                if isinstance(exc, RunError):
                    raise
                raise DataError(f"cannot use image {_describe(img)}: {exc}") from None
        if not xs:
            return []
        probs = self.probabilities(torch.cat(xs))
        return [{"image": _describe(img, i, quote=False), "top": self.top(probs[i], k)}
                for i, img in enumerate(images)]

    def capture(self, x: torch.Tensor, names: Iterable[str] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """(logits, {name: output}) of one forward; names are `named_modules()` names (None: every leaf)."""
        out, outs = capturing.capture(self.model, x.to(self.device), names)
        return main_logits(out).float(), outs


def _describe(img: Any, i: int | None = None, *, quote: bool = True) -> str:
    if isinstance(img, (str, Path)):
        return repr(str(img)) if quote else str(img)
    return f"image {i}" if i is not None else f"the {type(img).__name__} image"
