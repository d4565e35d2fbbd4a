"""Run folders, as train has always spelled them: the names now live in `convscope.runs`.

Kept so `from convscope.train.checkpoint import load, save_run, ...` goes on working.
"""
from __future__ import annotations

from convscope.runs import (CONFIG, WEIGHTS, atomic_write, atomic_write_bytes, atomic_write_json, load,
                            read_config, save_run)

__all__ = ["CONFIG", "WEIGHTS", "atomic_write", "atomic_write_bytes", "atomic_write_json", "load",
           "read_config", "save_run"]
