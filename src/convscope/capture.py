"""Named layer outputs of any module tree, from one forward pass.

    logits, outs = capture(model, x, ["features.conv1", "features.mixed_5b.branch1"])
    outs["features.conv1"]            # (N, C, H, W): what that submodule returned

    with Capture(model, ["layer3"]) as cap:   # the same hooks over many forwards
        for x in batches:
            model(x)
            use(cap.outputs["layer3"])

Names are `model.named_modules()` names, at any depth, so a branch inside an
Inception block or a residual stage is as reachable as a top-level layer.
`names=None` takes every leaf layer (dropout and identities left out). This is
the one place that registers forward hooks (the summary's meta-device tracer
in `analysis/` aside).

`capture_graph(gm, x)` is the hook-free form for a `torch.fx` GraphModule (the
explorer's traced model): every node's value, additions and concatenations
included, from one run of the graph.

Each output is cloned as it is caught: a ReLU(inplace=True) after a conv
overwrites the conv's output later in the same forward, and what the conv
produced is what a picture of the conv should show.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable

import torch
from torch import nn

from convscope.errors import UserError

SKIPPED = (nn.Dropout, nn.Dropout2d, nn.Identity)


def leaf_names(model: nn.Module) -> list[str]:
    """Every leaf submodule (no children) except dropout and identities, in definition order."""
    return [n for n, m in model.named_modules()
            if n and next(m.children(), None) is None and not isinstance(m, SKIPPED)]


def resolve(model: nn.Module, names: Iterable[str] | None) -> dict[str, nn.Module]:
    """{name: submodule} for `names` (None: every leaf); a UserError names an unknown one."""
    modules = dict(model.named_modules())
    if names is None:
        return {n: modules[n] for n in leaf_names(model)}
    out = {}
    for name in names:
        if name not in modules or name == "":
            close = difflib.get_close_matches(name, [n for n in modules if n], n=4, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"{type(model).__name__} has no layer named {name!r}{hint} "
                            "(`convscope summary` lists the layer names)")
        out[name] = modules[name]
    return out


def _keep(value: Any, detach: bool, clone: bool = True) -> Any:
    if isinstance(value, torch.Tensor):
        if detach:
            return value.detach().clone()
        return value.clone() if clone else value
    if isinstance(value, (tuple, list)):
        kept = [_keep(v, detach, clone) for v in value]
        return tuple(v for v in kept if v is not None) or None
    return None


class Capture:
    """Forward hooks on the named submodules while the `with` block runs.

    `outputs` maps each name to the output of its latest call, in the order the
    layers ran; a submodule that did not run (an auxiliary head in eval mode) is
    absent. `clear()` empties it between forwards.
    """

    def __init__(self, model: nn.Module, names: Iterable[str] | None = None, *, detach: bool = True,
                 clone: bool = True) -> None:
        self.model = model
        self.modules = resolve(model, names)
        self.detach = detach
        # detach=False, clone=False: the very output tensor, so a gradient can be taken with
        # respect to it (Grad-CAM); a clone is a copy off the path to the model's output
        self.clone = clone
        self.outputs: dict[str, Any] = {}
        self.first_calls: dict[str, None] = {}  # names in the order of their first call
        self._handles: list[Any] = []

    @property
    def names(self) -> list[str]:
        return list(self.modules)

    def _hook(self, name: str):
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            kept = _keep(out, self.detach, self.clone)
            if kept is not None:
                self.first_calls.setdefault(name)
                self.outputs.pop(name, None)  # re-inserted: the order is the order of the last calls
                self.outputs[name] = kept
        return hook

    def clear(self) -> None:
        self.outputs = {}
        self.first_calls = {}

    def __enter__(self) -> "Capture":
        self.clear()
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def capture(model: nn.Module, x: torch.Tensor, names: Iterable[str] | None = None, *,
            detach: bool = True) -> tuple[Any, dict[str, Any]]:
    """(model(x), {name: output}) from one forward pass (under no_grad when `detach`)."""
    with Capture(model, names, detach=detach) as cap:
        with torch.no_grad() if detach else torch.enable_grad():
            out = model(x)
    return out, cap.outputs


def capture_graph(gm: Any, x: torch.Tensor, recorder: tuple[Any, list[str]] | None = None) -> tuple[Any, dict[str, Any]]:
    """One forward through a traced `torch.fx.GraphModule`: (output, {fx node name: value}).

    The graph is rewritten (`graph_recorder`) to return every node's value as well as its
    output: plain generated Python, no interpreter in the loop. In-place operations
    (ReLU(inplace=True), x.relu_()) get a copy of their input, so the value kept for the
    node before them is what that node computed. Pass the `recorder` made once for `gm`
    (the explorer's layer graph keeps it) to skip the rewrite.
    """
    module, names = recorder if recorder is not None else graph_recorder(gm)
    with torch.inference_mode():
        out, values = module(x)
    return out, dict(zip(names, values))


def graph_recorder(gm: Any) -> tuple[Any, list[str]]:
    """`gm` rewritten to return (output, every node's value), and the nodes' names."""
    return _recording_module(gm)


def _recording_module(gm: Any) -> tuple[Any, list[str]]:
    import copy

    import torch.fx as fx

    graph = copy.deepcopy(gm.graph)
    mods = dict(gm.named_modules())
    names: list[str] = []
    kept: list[Any] = []
    output = None
    for node in list(graph.nodes):
        if node.op == "output":
            output = node
            continue
        inplace = (node.op == "call_module" and getattr(mods.get(node.target), "inplace", False) is True) \
            or (node.op == "call_method" and str(node.target).endswith("_")) or node.kwargs.get("inplace") is True
        if inplace and node.args and isinstance(node.args[0], fx.Node):
            with graph.inserting_before(node):
                copy_ = graph.call_method("clone", (node.args[0],))
            node.args = (copy_, *node.args[1:])
        names.append(node.name)
        kept.append(node)
    with graph.inserting_before(output):
        everything = graph.call_function(tuple, ([*kept],))
    output.args = ((output.args[0], everything),)
    graph.lint()
    return fx.GraphModule(gm, graph, "Recorder"), names
