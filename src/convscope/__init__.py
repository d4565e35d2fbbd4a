"""convscope: see, build, train, measure and transfer convolutional neural networks.

The public face is small and imported lazily, so `convscope conv ...` starts
without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "convscope.models",
    "list_models": "convscope.models",
    "import_weights": "convscope.models",
    "summary": "convscope.analysis",
    "load": "convscope.runs",
    "get_dataset": "convscope.data",
    "Predictor": "convscope.predictor",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convscope' has no attribute {name!r}")
