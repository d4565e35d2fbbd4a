"""Stages: the units that `--freeze N` and `--reinit N` count, and the head.

A stage is a named group of modules of the body, in forward order; the head
(the layer `reset_classifier` replaces) is never a stage:

    lenet5       conv1, conv2, fc1, fc2                    head: output
    ResNet       stem (conv1 + bn1), layer1 .. layer4      head: fc
    VGG          block1 .. block5 (convS_J [+ bnS_J]), fc6, fc7   head: classifier.fc8
    AlexNet      conv1 .. conv5, fc6, fc7                  head: classifier.fc8
    otherwise    the top-level children that hold parameters, in order, head excluded
                 (a Sequential is opened: its children are the stages)

A model may define `stages() -> list[tuple[str, nn.Module | list[nn.Module]]]`
itself. "Layer n" of Yosinski et al. (2014) is stage n here.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn


@dataclass(frozen=True)
class Stage:
    """One stage: its name and the modules in it, with their names in the model."""

    name: str
    modules: tuple[nn.Module, ...]
    paths: tuple[str, ...]  # e.g. ("conv1", "bn1"): prefixes of the stage's state-dict keys

    def parameters(self) -> Iterator[nn.Parameter]:
        for m in self.modules:
            yield from m.parameters()

    def owns(self, key: str) -> bool:
        """Whether state-dict key `key` ("layer1.0.conv1.weight") belongs to this stage."""
        return any(key == p or key.startswith(p + ".") for p in self.paths)


def head_paths(model: nn.Module) -> list[str]:
    """Names of the modules `reset_classifier` replaces (found by calling it on a copy).

    The names whose module object changed are the head (the new layer is
    built on the meta device). Models without reset_classifier: the last Linear.
    """
    fam = _family(model)
    if fam is not None:
        return list(fam[1])
    if hasattr(model, "reset_classifier"):
        probe = copy.deepcopy(model)
        before = {name: id(m) for name, m in probe.named_modules()}
        with torch.device("meta"):
            probe.reset_classifier(_num_classes(model) or 2)
        changed = [n for n, m in probe.named_modules() if n and before.get(n) != id(m)]
        tops = [n for n in changed if not any(n.startswith(o + ".") for o in changed if o != n)]
        if tops:
            return tops
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"cannot tell the head of {type(model).__name__}: it has no reset_classifier "
                         f"and no Linear layer; give it a stages() method")
    return linears[-1:]


def _num_classes(model: nn.Module) -> int | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def _generic(model: nn.Module, head: list[str], prefix: str = "") -> list[tuple[str, list[str]]]:
    """Top-level children with parameters, in order; a Sequential, or a child that
    holds the head, is opened (its children become stages)."""
    out: list[tuple[str, list[str]]] = []
    for name, child in model.named_children():
        path = prefix + name
        if path in head:
            continue
        if type(child) is nn.Sequential or any(h.startswith(path + ".") for h in head):
            out.extend(_generic(child, head, path + "."))
        elif _has_params(child):
            out.append((path, [path]))
    return out


def _block_groups(seq: nn.Module, prefix: str, pattern: str) -> list[tuple[str, list[str]]]:
    """Group a Sequential's children by the block number in their names (conv2_1, bn2_1 -> block2)."""
    groups: dict[str, list[str]] = {}
    for name, child in seq.named_children():
        m = re.fullmatch(pattern, name)
        if m and _has_params(child):
            groups.setdefault(m.group(1), []).append(f"{prefix}.{name}")
    return [(f"block{k}" if pattern.startswith("(?:conv|bn)") else f"conv{k}", v) for k, v in groups.items()]


def _family(model: nn.Module) -> tuple[list[tuple[str, list[str]]], list[str]] | None:
    """(stages, head) from the table in the module docstring, for the families it names."""
    kind = type(model).__name__
    if kind == "LeNet5":
        return [(n, [n]) for n in ("conv1", "conv2", "fc1", "fc2")], ["output"]
    if kind == "ResNet":
        return [("stem", ["conv1", "bn1"])] + [(f"layer{i}", [f"layer{i}"]) for i in range(1, 5)], ["fc"]
    fcs = [("fc6", ["classifier.fc6"]), ("fc7", ["classifier.fc7"])]
    if kind == "VGG":
        return _block_groups(model.features, "features", r"(?:conv|bn)(\d+)_\d+") + fcs, ["classifier.fc8"]
    if kind == "AlexNet":
        return _block_groups(model.features, "features", r"conv(\d+)") + fcs, ["classifier.fc8"]
    return None


def stages(model: nn.Module) -> list[Stage]:
    """The model's body stages in forward order (the head excluded)."""
    modules = dict(model.named_modules())
    if hasattr(model, "stages") and callable(model.stages):
        found = []
        for name, mods in model.stages():
            mods = list(mods) if isinstance(mods, (list, tuple)) else [mods]
            paths = tuple(next(n for n, m in modules.items() if m is mod) for mod in mods)
            found.append(Stage(name, tuple(mods), paths))
        return found
    fam = _family(model)
    spec = fam[0] if fam is not None else _generic(model, head_paths(model))
    return [Stage(name, tuple(modules[p] for p in paths), tuple(paths)) for name, paths in spec]


def head(model: nn.Module) -> Stage:
    """The classifier layer(s) as a Stage named "head"."""
    modules = dict(model.named_modules())
    paths = tuple(head_paths(model))
    return Stage("head", tuple(modules[p] for p in paths), paths)


def stage_of(key: str, model_stages: list[Stage]) -> str | None:
    """Name of the stage that owns state-dict key `key`, or None (head or a parameter-free module)."""
    return next((s.name for s in model_stages if s.owns(key)), None)
