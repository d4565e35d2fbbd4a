"""A resumable grid of training cells: each finished cell is one JSON file, written atomically.

    grid = Grid(out, names, progress=True)
    for name in grid.todo():          # skips the cells finished by an earlier, interrupted run
        grid.done(name, {...})        # out/cells/NAME.json, then the bar moves on

A cell is either finished (its file is there and complete) or not run at all,
so an interrupted experiment picks up at the first unfinished cell.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from convscope.runs import atomic_write_json

CELLS = "cells"


class Grid:
    def __init__(self, out: str | Path, names: list[str], *, progress: bool = True, unit: str = "cell",
                 settings: dict[str, Any] | None = None) -> None:
        self.out = Path(out)
        self.names = list(names)
        self._check_settings(settings)
        self.results: dict[str, dict[str, Any]] = {}
        for name in self.names:
            path = self.path(name)
            if path.is_file():
                try:
                    self.results[name] = json.loads(path.read_text())
                except json.JSONDecodeError:  # pragma: no cover - atomic writes make this unlikely
                    path.unlink()
        self.show, self.unit, self.bar = progress, unit, None

    def _check_settings(self, settings: dict[str, Any] | None) -> None:
        """Finished cells are reused only by a run with the same settings."""
        if settings is None:
            return
        path = self.out / "settings.json"
        settings = json.loads(json.dumps(settings))  # as JSON would give them back
        if path.is_file():
            saved = json.loads(path.read_text())
            diff = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            if diff:
                what = ", ".join(f"{k}: {saved.get(k)!r} there, {settings.get(k)!r} now" for k in diff)
                raise ValueError(f"{self.out} holds an experiment with other settings ({what}); choose another "
                                 f"--out, or delete {self.out} to start over")
        else:
            atomic_write_json(path, settings)

    def path(self, name: str) -> Path:
        return self.out / CELLS / f"{name}.json"

    def todo(self) -> Iterator[str]:
        left = [n for n in self.names if n not in self.results]
        if self.show:
            from tqdm import tqdm

            self.bar = tqdm(total=len(self.names), initial=len(self.names) - len(left), unit=self.unit,
                            file=sys.stderr, dynamic_ncols=True, desc="grid")
            if len(left) < len(self.names):
                self.bar.write(f"resuming: {len(self.names) - len(left)} of {len(self.names)} cells already "
                               f"done in {self.out / CELLS}", file=sys.stderr)
        try:
            for name in left:
                if self.bar is not None:
                    self.bar.set_postfix_str(name)
                self.t0 = time.perf_counter()
                yield name
        finally:
            if self.bar is not None:
                self.bar.close()

    def done(self, name: str, result: dict[str, Any]) -> None:
        result = dict(result, seconds=round(time.perf_counter() - self.t0, 2))
        atomic_write_json(self.path(name), result)
        self.results[name] = result
        if self.bar is not None:
            self.bar.update(1)
