"""Looking inside a CNN: the per-layer summary (shapes, parameters, multiply-adds,
memory, receptive fields), architecture comparison, and pictures of what it learned."""
from __future__ import annotations

from convscope.analysis.receptive import Field
from convscope.analysis.summary import Row, Summary, parse_input_size, summary

__all__ = ["summary", "Summary", "Row", "Field", "parse_input_size"]
