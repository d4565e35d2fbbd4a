"""RUN/state/state.pt: everything --resume needs, in one atomically written file.

Stored as plain containers and tensors (RNG states as uint8 tensors) so it
loads with `torch.load(weights_only=True)`: no pickled code runs on resume.
"""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convscope.errors import RunError
from convscope.runs import STATE, STATE_FILE, RunDir, RunNotFound, atomic_write_bytes

STATE_PATH = Path(STATE) / STATE_FILE


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(run: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(RunDir(run).state_path, buf.getvalue())


def load_state(run: Path) -> dict[str, Any]:
    rd = RunDir(run)
    path = rd.state_path
    if not path.is_file():
        raise RunNotFound(
            f"nothing to resume in {run}: {STATE_PATH} is missing (the run never finished an epoch); "
            f"start it again with --overwrite instead of --resume")
    if path.stat().st_size == 0:
        raise RunError(f"{path} is empty (0 bytes): the resume state was never written; "
                       f"start the run again with --overwrite instead of --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a torch file, pickled code refused
        raise RunError(f"{path} cannot be read ({str(exc).splitlines()[0][:120]}): it is truncated or "
                       f"corrupt; start the run again with --overwrite instead of --resume") from None
    if not isinstance(state, dict) or not {"epoch", "model", "optimizer", "history"} <= state.keys():
        raise RunError(f"{path} is not a convscope resume state; start the run again with --overwrite")
    return state
