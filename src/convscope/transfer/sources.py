"""Where fine-tuning starts: a convscope run folder, or torchvision's pretrained weights.

    load_source("runs/fashion")            # a run: config.json + model.safetensors
    load_source("torchvision:resnet18")     # torchvision's DEFAULT weights for resnet18
    load_source("torchvision:resnet50:IMAGENET1K_V2")   # a named weights entry

torchvision's weights API fetches the file into $TORCH_HOME/hub/checkpoints/
(once, when online) and builds its own model; `import_weights` copies it into
the convscope model of the same name. The weights' own preprocessing (resize,
crop, mean and std of `weights.transforms()`) is recorded with the source.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from convscope.errors import RunError


@dataclass
class Source:
    """A trained model and what it was trained on."""

    model: nn.Module
    name: str                      # the registered convscope model name
    kwargs: dict[str, Any]         # builder kwargs, num_classes and in_chans excluded
    classes: list[str]
    input_size: tuple[int, int, int]
    origin: str                    # "runs/x" or "torchvision:resnet18"
    dataset: str | None = None
    normalization: dict[str, list[float]] | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        c, h, w = self.input_size
        data = f" trained on {self.dataset}" if self.dataset else ""
        return f"{self.origin} ({self.name}, {len(self.classes)} classes, {c}x{h}x{w} input{data})"


def load_source(spec: str | Path | Source) -> Source:
    """A Source from "torchvision:NAME[:WEIGHTS]", a run folder, or a Source (returned as is)."""
    if isinstance(spec, Source):
        return spec
    text = str(spec)
    if text.startswith("torchvision:"):
        return from_torchvision(text[len("torchvision:"):])
    return from_run(Path(text))


def from_run(run: Path) -> Source:
    """Rebuild a run's model (num_classes and in_chans from its config) with its weights."""
    from convscope.models import create_model
    from convscope.runs import RunDir

    rd = RunDir(run)
    config = rd.read_config()
    name, spec_kwargs = rd.model_spec()
    classes = [str(c) for c in config.get("classes", [])]
    input_size = tuple(int(v) for v in config.get("input_size", (1, 28, 28)))
    kwargs = {k: v for k, v in spec_kwargs.items() if k not in ("num_classes", "in_chans")}
    model = create_model(name, num_classes=len(classes) or None, in_chans=input_size[0], **kwargs)
    missing, unexpected = model.load_state_dict(rd.read_weights(), strict=False)
    if missing or unexpected:
        raise RunError(f"{rd.weights_path} does not fit {name} with {len(classes)} classes and "
                       f"{input_size[0]} input channel(s): missing {missing[:3]}, unexpected {unexpected[:3]}")
    return Source(model=model.eval(), name=name, kwargs=kwargs, classes=classes, input_size=input_size,
                  origin=str(run), dataset=config.get("dataset"), normalization=config.get("normalization"),
                  preprocessing=config.get("preprocessing") or {})


def _weights_entry(name: str, tag: str | None):
    import torchvision.models as tvm

    try:
        enum = tvm.get_model_weights(name)
    except (ValueError, KeyError):
        close = [m for m in tvm.list_models() if name.split("_")[0] in m][:6]
        raise ValueError(f"torchvision has no pretrained weights for {name!r}"
                         + (f"; close names: {', '.join(close)}" if close else "")) from None
    if tag is None:
        return enum.DEFAULT
    try:
        return enum[tag]
    except KeyError:
        raise ValueError(f"torchvision's {enum.__name__} has no entry {tag!r}; choose one of "
                         f"{', '.join(w.name for w in enum)}") from None


def cache_path(weights) -> Path:
    """Where torchvision's weights API keeps (and first looks for) this weights file."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _preprocessing(weights) -> dict[str, Any]:
    t = weights.transforms()
    crop = int(t.crop_size[0])
    return {"kind": "resize", "size": [crop, crop], "channels": 3, "mean": [float(v) for v in t.mean],
            "std": [float(v) for v in t.std],
            "torchvision": {"weights": f"{type(weights).__name__}.{weights.name}", "resize_size": list(t.resize_size),
                            "crop_size": list(t.crop_size), "interpolation": str(t.interpolation.value)}}


def from_torchvision(spec: str, **model_kwargs: Any) -> Source:
    """torchvision's pretrained `NAME[:WEIGHTS]` imported into convscope's model of the same name."""
    import torchvision.models as tvm

    from convscope.models import create_model, import_weights, list_models

    name, _, tag = spec.partition(":")
    if name not in list_models():
        raise ValueError(f"convscope has no model {name!r} to take torchvision's {name} weights; "
                         f"`convscope models` lists the ones it has (resnet18, vgg16, alexnet, densenet121, ...)")
    weights = _weights_entry(name, tag or None)
    try:
        reference = tvm.get_model(name, weights=weights)
    except OSError as exc:  # URLError is an OSError: offline and not in the cache
        raise ValueError(f"could not get torchvision's {weights} ({weights.url}): {exc}. Offline, place the "
                         f"file at {cache_path(weights)}") from None
    classes = list(weights.meta.get("categories") or [])
    model = create_model(name, num_classes=len(classes) or None, **model_kwargs)
    import_weights(model, reference)
    pre = _preprocessing(weights)
    return Source(model=model.eval(), name=name, kwargs=dict(model_kwargs), classes=classes,
                  input_size=(3, *pre["size"]), origin=f"torchvision:{name}", dataset=f"torchvision {weights}",
                  normalization={"mean": pre["mean"], "std": pre["std"]}, preprocessing=pre)
