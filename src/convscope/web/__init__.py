"""The interactive explorer: draw a digit and watch every layer of a trained network respond.

    from convscope.web import create_app
    app = create_app("runs/demo")        # FastAPI app; `convscope serve --run runs/demo`
"""
from __future__ import annotations

from convscope.web.app import create_app
from convscope.web.engine import Explorer

__all__ = ["create_app", "Explorer"]
