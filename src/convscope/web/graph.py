"""The network as a graph: every operation of the forward pass, in order, with what it reads.

`torch.fx` traces the model once (each module without children is one node;
`check_input` stays a call); additions and concatenations are nodes of their
own. Two kinds of nodes are folded into the node before them, and the node
says so in "folded" (nothing is dropped silently):

- an elementwise activation (ReLU, ...) that is the only reader of a conv,
  linear, batch-norm, add or concat node: the node is shown after it, since
  that is what the next layer reads ("activation": "relu");
- layout-only steps (flatten, view, reshape, Dropout and Identity in eval):
  the values do not change, only their arrangement.

A model that fx cannot trace is described as the chain of its leaf modules in
the order they ran ("graph": "chain", with the reason in "graph_note").

The nodes, their geometry and their receptive fields are those of the one
layer graph (`convscope.analysis.graph.LayerGraph`), which `summary` and
`convscope.units` read too; this module only names, folds and presents them.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn

from convscope.analysis.graph import LayerGraph, module_kind, node_field, pad_amounts, shapes_of, trace
from convscope.analysis.layer_facts import ACTIVATIONS, activation_facts, window
from convscope.analysis.receptive import Field
from convscope.capture import graph_recorder

__all__ = ["Graph", "trace"]
FOLD_INTO = ("conv", "fc", "bn", "add", "concat", "mul", "lrn")


class Graph:
    """The traced model and its nodes: `build` gives the layers of /api/model, `shown` maps a
    layer name to the fx node whose value is shown for it, `layer_graph` is the one graph."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.note: str | None = None
        self.shown: dict[str, str] = {}
        self.layer_graph: LayerGraph | None = None
        self.recorder: Any = None  # the graph rewritten to return every node's value (capture.graph_recorder)
        try:
            self.gm: fx.GraphModule | None = trace(model)
            self.recorder = graph_recorder(self.gm)
        except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError, ...
            self.gm = None
            self.note = (f"torch.fx could not trace {type(model).__name__} ({type(exc).__name__}: "
                         f"{str(exc)[:120]}); its layers are shown in the order they ran, without the branches")

    def build(self, values: dict[str, torch.Tensor], input_size: tuple[int, int, int]) -> list[dict[str, Any]]:
        """Layer dicts in forward order, from one forward's node values, each with its geometry and
        receptive field ("rf", "jump", "start" per axis, "whole_input")."""
        if self.gm is None:
            layers = self._build_chain(values, input_size)
        else:
            self.layer_graph = LayerGraph(self.gm, shapes_of(values))
            layers = self._build_graph(self.layer_graph, input_size)
        for layer in layers:
            _put_field(layer, layer.pop("_field"), input_size[1:])
        return layers

    def _build_graph(self, g: LayerGraph, input_size: tuple[int, int, int]) -> list[dict[str, Any]]:
        rep: dict[str, str] = {}          # fx node name -> layer name that stands for it
        layers: dict[str, dict[str, Any]] = {}
        seen: dict[str, int] = {}
        self.shown = {}
        self._fx = {n.name: n for n in self.gm.graph.nodes}
        for node in g.nodes.values():
            srcs = [rep[i] for i in node.inputs if i in rep]
            src = layers.get(srcs[0]) if srcs else None
            if node.kind == "input":
                layers["input"] = _layer("input", "input", [], list(input_size), "", node.field)
                rep[node.name], self.shown["input"] = "input", node.name
            elif node.kind == "layout" and src is not None:
                src["folded"].append(self._label(node))
                rep[node.name] = src["name"]
            elif node.kind in ACTIVATIONS and src is not None and src["kind"] in FOLD_INTO and len(srcs) == 1 \
                    and src["activation"] is None and len(self._fx[self.shown[src["name"]]].users) == 1:
                src.update(activation=node.kind, **node.facts)  # the activation's parameters (negative_slope...)
                src["folded"].append(self._label(node))
                self.shown[src["name"]], rep[node.name] = node.name, src["name"]
            else:
                base = node.module or ".".join(p for p in (node.scope, node.kind) if p)
                seen[base] = seen.get(base, 0) + 1
                name = base if seen[base] == 1 else f"{base} ({seen[base]})"
                layer = _layer(name, node.kind, list(dict.fromkeys(srcs)), list(node.shape), node.scope, node.field)
                layer.update(node.facts)
                layer["op"] = self._op(node)
                layer["module"] = node.module
                layers[name] = layer
                rep[node.name], self.shown[name] = name, node.name
        return list(layers.values())

    def _op(self, node: Any) -> str:
        if node.module is not None:
            return type(self.gm.get_submodule(node.module)).__name__
        target = self._fx[node.name].target
        return getattr(target, "__name__", str(target))

    def _label(self, node: Any) -> str:
        return f"{node.module} ({self._op(node)})" if node.module is not None else self._op(node)

    def _build_chain(self, values: dict[str, torch.Tensor], input_size) -> list[dict[str, Any]]:
        """Leaf modules in the order they ran: a chain, each reading the one before it."""
        modules = dict(self.model.named_modules())
        layers = [_layer("input", "input", [], list(input_size), "", Field())]
        self.shown = {"input": "input"}
        for name, value in values.items():
            if name == "input" or not isinstance(value, torch.Tensor):
                continue
            mod = modules[name]
            kind = module_kind(mod)
            prev = layers[-1]
            facts = window(mod, prev["shape"][1:] if len(prev["shape"]) == 3 else None,
                           list(value.shape[2:]) if value.dim() == 4 else None) or {}
            facts = facts or ({"pad": pad_amounts(mod)} if kind == "pad" else activation_facts(kind, mod))
            field = node_field(kind, facts, [(prev["_field"], prev["shape"])], list(value.shape[1:]))
            layer = _layer(name, kind, [prev["name"]], list(value.shape[1:]), name.rpartition(".")[0], field)
            layer.update(facts, op=type(mod).__name__, module=name)
            layers.append(layer)
            self.shown[name] = name
        return layers


def _layer(name: str, kind: str, inputs: list[str], shape: list[int], scope: str, field: Field | None) -> dict:
    """A layer dict with every key the page reads; windowed layers get their facts on top."""
    return {"name": name, "kind": kind, "inputs": inputs, "shape": shape, "scope": scope, "activation": None,
            "folded": [], "kernel": None, "stride": None, "padding": None, "dilation": None, "groups": None,
            "_field": field}


def _put_field(layer: dict[str, Any], field: Field | None, input_hw: tuple[int, int]) -> None:
    """"rf", "jump", "start" (per axis, input pixels) and "whole_input" from the layer's field. A layer
    that sees the whole input (after global pooling, fc) gets the input's size, one jump of it, and
    its centre, so the page draws the whole image."""
    if field is None or field.whole:
        layer.update(rf=[float(n) for n in input_hw], jump=[float(n) for n in input_hw],
                     start=[(n - 1) / 2 for n in input_hw], whole_input=True)
        return
    layer.update(rf=[float(v) for v in field.r], jump=[float(v) for v in field.j],
                 start=[float(v) for v in field.s], whole_input=False)
