"""The inputs the explorer has answered lately, so /api/layer and /api/gradcam can come back
to them: each with the snapshot that answered it (a later swap does not change what an
input id means) and, for the last few, every layer's value (no second forward pass)."""
from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from typing import Any

import torch

from convscope.web.decode import InputError

KEEP_INPUTS = 16                  # inputs whose x is kept
KEEP_VALUES = 2                   # ... of which every layer's value stays in memory


@dataclass
class Entry:
    snapshot: Any                 # web.snapshot.Snapshot that answered it
    x: torch.Tensor               # (1, C, H, W), as fed
    values: dict[str, torch.Tensor] | None = None


class Kept:
    """Input ids and what they name; the caller (the engine) holds its lock around every call."""

    def __init__(self, inputs: int = KEEP_INPUTS, values: int = KEEP_VALUES) -> None:
        self._ids = itertools.count(1)
        self._entries: collections.OrderedDict[int, Entry] = collections.OrderedDict()
        self._with_values: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.inputs, self.values = inputs, values

    def new_ids(self, n: int) -> list[int]:
        return [next(self._ids) for _ in range(n)]

    def keep(self, input_id: int, snapshot: Any, x: torch.Tensor,
             values: dict[str, torch.Tensor] | None = None) -> None:
        self._entries[input_id] = Entry(snapshot, x, None)
        if values is not None:
            self.set_values(input_id, values)
        while len(self._entries) > self.inputs:
            old, _ = self._entries.popitem(last=False)
            self._with_values.pop(old, None)

    def set_values(self, input_id: int, values: dict[str, torch.Tensor]) -> None:
        entry = self._entries.get(input_id)
        if entry is None:
            return
        entry.values = values
        self._with_values[input_id] = None
        self._with_values.move_to_end(input_id)
        while len(self._with_values) > self.values:
            old, _ = self._with_values.popitem(last=False)
            if old in self._entries:
                self._entries[old].values = None

    def get(self, input_id: int | None) -> tuple[int, Entry]:
        """(id, entry) of `input_id`, or of the last input answered when it is None."""
        if input_id is None:
            if not self._entries:
                raise InputError("nothing predicted yet: POST /api/predict first", 409)
            input_id = next(reversed(self._entries))
        entry = self._entries.get(input_id)
        if entry is None:
            raise InputError(f"input {input_id} is no longer kept (the server keeps the last {self.inputs}); "
                             "predict it again", 410)
        return input_id, entry
