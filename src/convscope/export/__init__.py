"""Export: a model as ONNX (checked with onnxruntime), and the static in-browser explorer site."""
from __future__ import annotations

from convscope.export.onnx import ExportCheckError, ExportResult, export_onnx, shown_layers

__all__ = ["ExportCheckError", "ExportResult", "export_onnx", "shown_layers"]
