"""The architecture zoo. One file per family; each registers its builders.

Family modules are discovered (every non-underscore module here is imported),
so adding a family never edits this file.
"""
from __future__ import annotations

import importlib
import pkgutil

from convscope.models._registry import create_model, list_models, model_rows, register_model
from convscope.models._weights import import_weights

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["create_model", "list_models", "model_rows", "register_model", "import_weights"]
