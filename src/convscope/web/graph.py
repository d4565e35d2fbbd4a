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
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from convscope.analysis.graph import (ACTIVATIONS, activation_facts, activation_name, functional_module,
                                      window)

ACTIVATION_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", torch.sigmoid: "sigmoid",
                        torch.tanh: "tanh", F.gelu: "gelu", F.silu: "silu", F.leaky_relu: "leakyrelu",
                        F.elu: "elu", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.mish: "mish",
                        F.sigmoid: "sigmoid", F.tanh: "tanh", F.hardtanh: "hardtanh", torch.relu_: "relu"}
ACTIVATION_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "sigmoid_": "sigmoid",
                      "tanh_": "tanh"}
LAYOUT_FUNCTIONS = (torch.flatten, torch.reshape)
LAYOUT_METHODS = ("flatten", "view", "reshape", "contiguous", "squeeze", "unsqueeze")
FOLD_INTO = ("conv", "fc", "bn", "add", "concat", "mul", "lrn")
MAX_FC_KERNEL_VALUES = 20_000


class _Tracer(fx.Tracer):
    """Every module without children is a leaf (so custom convs with shape-dependent padding
    are one node, not a trace error)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return super().is_leaf_module(m, qualname) or next(m.children(), None) is None


def trace(model: nn.Module) -> fx.GraphModule:
    """The model as an fx GraphModule (raises whatever fx raises when it cannot trace)."""
    from convscope.models._base import check_input

    tracer = _Tracer(autowrap_functions=(check_input,))
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _module_kind(mod: nn.Module) -> str:
    if isinstance(mod, nn.Conv2d):
        return "conv"
    if isinstance(mod, nn.Linear):
        return "fc"
    if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
        return "bn"
    if isinstance(mod, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        return "maxpool"
    if isinstance(mod, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return "avgpool"
    if activation_name(mod) is not None:
        return activation_name(mod)
    if isinstance(mod, (nn.Dropout, nn.Identity, nn.Flatten)):
        return "layout"
    if isinstance(mod, nn.LocalResponseNorm) or type(mod).__name__ in ("LRN", "LocalResponseNorm"):
        return "lrn"
    if hasattr(mod, "same_padding") and getattr(mod, "kind", None) in ("max", "avg"):
        return f"{mod.kind}pool"  # a pooling layer with TF-"SAME" padding (the protocol of analysis.graph)
    return type(mod).__name__.lower()


def _function_kind(node: fx.Node) -> str:
    t = node.target
    if node.op == "call_method":
        if t in ACTIVATION_METHODS:
            return ACTIVATION_METHODS[t]
        return "layout" if t in LAYOUT_METHODS else str(t)
    if t in ACTIVATION_FUNCTIONS:
        return ACTIVATION_FUNCTIONS[t]
    if t in LAYOUT_FUNCTIONS:
        return "layout"
    if t in (operator.add, torch.add, operator.iadd):
        return "add"
    if t in (torch.cat, torch.concat):
        return "concat"
    if t in (operator.mul, torch.mul):
        return "mul"
    if t is F.local_response_norm:
        return "lrn"
    if t in (F.adaptive_avg_pool2d, F.avg_pool2d):
        return "avgpool"
    if t in (F.adaptive_max_pool2d, F.max_pool2d):
        return "maxpool"
    return getattr(t, "__name__", str(t))


def _is_activation(kind: str) -> bool:
    return kind in ACTIVATIONS


def _scope(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    return list(stack.values())[-1][0]


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda a: out.append(a) or a)
    return out


class Graph:
    """The traced model and its nodes: `layers` for /api/model, `shown` maps a layer name to
    the fx node whose value is shown for it."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.note: str | None = None
        try:
            self.gm: fx.GraphModule | None = trace(model)
        except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError, ...
            self.gm = None
            self.note = (f"torch.fx could not trace {type(model).__name__} ({type(exc).__name__}: "
                         f"{str(exc)[:120]}); its layers are shown in the order they ran, without the branches")

    # -- the chain of nodes -------------------------------------------------
    def build(self, values: dict[str, torch.Tensor], input_size: tuple[int, int, int]) -> list[dict[str, Any]]:
        """Layer dicts in forward order, from one forward's node values (`run`)."""
        if self.gm is None:
            return self._build_chain(values, input_size)
        modules = dict(self.gm.named_modules())
        nodes = [n for n in self.gm.graph.nodes if n.op in ("placeholder", "call_module", "call_function", "call_method")]
        rep: dict[str, str] = {}          # fx node name -> layer name that stands for it
        layers: dict[str, dict[str, Any]] = {}
        seen: dict[str, int] = {}
        self.shown: dict[str, str] = {}   # layer name -> fx node name whose value is shown
        shown_node: dict[str, fx.Node] = {}  # layer name -> that fx node (its readers, in O(1))
        for node in nodes:
            if node.op == "placeholder":
                layers["input"] = self._layer("input", "input", [], list(input_size), None, "")
                rep[node.name] = "input"
                self.shown["input"], shown_node["input"] = node.name, node
                continue
            value = values.get(node.name)
            if not isinstance(value, torch.Tensor):
                continue  # check_input and friends: no tensor flows out
            mod = modules.get(node.target) if node.op == "call_module" else None
            kind = _module_kind(mod) if mod is not None else _function_kind(node)
            srcs = [rep[a.name] for a in _tensor_args(node) if a.name in rep]
            src = layers.get(srcs[0]) if srcs else None
            single_reader = src is not None and len(shown_node[src["name"]].users) == 1
            if kind == "layout" and src is not None:
                src["folded"].append(self._label(node, mod))
                rep[node.name] = src["name"]
                continue
            if _is_activation(kind) and src is not None and src["kind"] in FOLD_INTO and single_reader \
                    and src["activation"] is None and len(srcs) == 1:
                src.update(activation=kind, **activation_facts(kind, mod, _kwargs(node)))
                src["folded"].append(self._label(node, mod))
                self.shown[src["name"]], shown_node[src["name"]] = node.name, node
                rep[node.name] = src["name"]
                continue
            base = node.target if node.op == "call_module" else ".".join(p for p in (_scope(node), kind) if p)
            seen[base] = seen.get(base, 0) + 1
            name = base if seen[base] == 1 else f"{base} ({seen[base]})"
            # a functional pooling call is described by the module it stands for
            facts_mod = functional_module(node.target, _kwargs(node)) if mod is None else mod
            layer = self._layer(name, kind, list(dict.fromkeys(srcs)), list(value.shape[1:]), facts_mod,
                                _scope(node), src["shape"] if src is not None else None)
            if _is_activation(kind):
                layer.update(activation_facts(kind, mod, _kwargs(node)))
            layer["op"] = type(mod).__name__ if mod is not None else getattr(node.target, "__name__", str(node.target))
            layer["module"] = node.target if node.op == "call_module" else None
            layers[name] = layer
            rep[node.name] = name
            self.shown[name], shown_node[name] = node.name, node
        return list(layers.values())

    @staticmethod
    def _label(node: fx.Node, mod: nn.Module | None) -> str:
        if mod is not None:
            return f"{node.target} ({type(mod).__name__})"
        return getattr(node.target, "__name__", str(node.target))

    @staticmethod
    def _layer(name: str, kind: str, inputs: list[str], shape: list[int], mod: nn.Module | None,
               scope: str, in_shape: list[int] | None = None) -> dict[str, Any]:
        layer: dict[str, Any] = {"name": name, "kind": kind, "inputs": inputs, "shape": shape, "scope": scope,
                                 "activation": None, "folded": [], "kernel": None, "stride": None,
                                 "padding": None, "dilation": None, "groups": None}
        if kind in ("conv", "maxpool", "avgpool") and mod is not None:
            in_hw = in_shape[1:] if in_shape is not None and len(in_shape) == 3 else None
            facts = window(mod, in_hw, shape[1:] if len(shape) == 3 else None)
            if facts is not None:
                layer.update(facts)
        return layer

    def _build_chain(self, values: dict[str, torch.Tensor], input_size) -> list[dict[str, Any]]:
        modules = dict(self.model.named_modules())
        layers = [self._layer("input", "input", [], list(input_size), None, "")]
        self.shown = {"input": "input"}
        for name, value in values.items():
            if name == "input" or not isinstance(value, torch.Tensor):
                continue
            mod = modules[name]
            kind = _module_kind(mod)
            layer = self._layer(name, kind, [layers[-1]["name"]], list(value.shape[1:]), mod,
                                name.rpartition(".")[0], layers[-1]["shape"])
            if _is_activation(kind):
                layer.update(activation_facts(kind, mod))
            layer["op"], layer["module"] = type(mod).__name__, name
            layers.append(layer)
            self.shown[name] = name
        return layers


def _kwargs(node: fx.Node) -> dict[str, Any]:
    """A call's arguments by name (F.leaky_relu(x, 0.2) -> negative_slope=0.2); {} where torch cannot say."""
    if node.op != "call_function":
        return dict(node.kwargs)
    try:
        pair = node.normalized_arguments(node.graph.owning_module, normalize_to_only_use_kwargs=True)
    except Exception:  # noqa: BLE001 - a signature torch cannot bind: no facts, never a failure
        pair = None
    return dict(pair.kwargs) if pair is not None else dict(node.kwargs)


# ---- receptive fields through every branch ----------------------------------------------

def receptive_fields(layers: list[dict[str, Any]], input_hw: tuple[int, int]) -> None:
    """Add "rf", "jump", "start" (per axis, input pixels) to every layer, in place.

    Along each path: rf' = rf + (k - 1) d jump, jump' = jump s, start' = start + ((k - 1) d / 2 - p) jump.
    A node reading several inputs takes, per axis, the largest field among them (the
    branches' windows together are what the unit can see). Fully connected layers, global pools and
    everything after them see the whole input.
    """
    by_name = {layer["name"]: layer for layer in layers}
    whole = {"rf": [float(n) for n in input_hw], "jump": [float(n) for n in input_hw],
             "start": [(n - 1) / 2 for n in input_hw]}
    for layer in layers:
        if layer["kind"] == "input":
            layer.update(rf=[1.0, 1.0], jump=[1.0, 1.0], start=[0.0, 0.0], whole_input=False)
            continue
        srcs = [by_name[s] for s in layer["inputs"] if s in by_name]
        if not srcs or any(s.get("whole_input") for s in srcs) or layer["kind"] == "fc" or layer.get("global") \
                or len(layer["shape"]) != 3:
            layer.update({k: list(v) for k, v in whole.items()}, whole_input=True)
            continue
        rf, jump, start = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
        for a in (0, 1):  # per axis: a 1x7 branch and a 7x1 branch each widen one side
            best = max(srcs, key=lambda s: s["rf"][a])
            rf[a], jump[a], start[a] = best["rf"][a], best["jump"][a], best["start"][a]
        src = srcs[0]
        if layer["kernel"] is not None:
            before = [0, 0]
            for a in (0, 1):
                k, s, d = layer["kernel"][a], layer["stride"][a], layer["dilation"][a]
                p = layer["pad_before"][a]
                before[a] = p
                rf[a] = rf[a] + (k - 1) * d * jump[a]
                start[a] = start[a] + ((k - 1) * d / 2 - p) * jump[a]
                jump[a] = jump[a] * s
        if layer["kernel"] is not None:
            layer["pad_before"] = before  # rows / columns of padding before the input, per axis
        layer.update(rf=[float(v) for v in rf], jump=[float(v) for v in jump],
                     start=[float(v) for v in start], whole_input=False)
