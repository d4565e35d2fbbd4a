"""The one layer graph: every operation of a forward pass, with its geometry and receptive field.

`torch.fx` traces the model (each module without children is one node;
`convscope.models._base.check_input` stays a call), and one forward (real
values, or the meta device's shapes) gives every node's output shape. Then a
single pass in topological order gives each node its kind, its inputs, its
window (kernel, stride, per-side padding, dilation, groups; see
`layer_facts.window`) and its receptive field (`receptive.Field`: size, jump
and start per axis), each from its inputs' fields, which are already known:
linear in the number of nodes.

The rules (`convscope.analysis.receptive`): a window (conv, pooling)
moves the field by the Araujo et al. recurrences, with the padding before the
input; explicit padding (`F.pad`, `nn.ZeroPad2d`, negative = cropping) shifts
it; where inputs of the output's size meet (add, concatenation, multiplication,
any elementwise op) the field is the hull of theirs (what a gradient measurement
sees); a 1x1 map broadcast over a bigger one (the SE gate) is left out; an
output whose spatial size changed without a window (global mean, flatten,
linear) sees the whole input.

`summary`, `convscope.units` and the explorer (`web.graph`) all read their
receptive fields from here.
"""
from __future__ import annotations

import operator
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from convscope.analysis.layer_facts import (activation_facts, activation_name, functional_module, window)
from convscope.analysis.receptive import Field, adaptive, merge
from convscope.layers import LRN

ACTIVATION_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", torch.sigmoid: "sigmoid",
                        torch.tanh: "tanh", F.gelu: "gelu", F.silu: "silu", F.leaky_relu: "leakyrelu",
                        F.elu: "elu", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.mish: "mish",
                        F.sigmoid: "sigmoid", F.tanh: "tanh", F.hardtanh: "hardtanh", torch.relu_: "relu"}
ACTIVATION_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "sigmoid_": "sigmoid",
                      "tanh_": "tanh"}
LAYOUT_FUNCTIONS = (torch.flatten, torch.reshape)
LAYOUT_METHODS = ("flatten", "view", "reshape", "contiguous", "squeeze", "unsqueeze")
PARAMETRIZED = ("leakyrelu", "elu", "hardtanh", "gelu")  # activations with parameters the page needs
PAD_MODULES = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)


@dataclass(frozen=True)
class GraphNode:
    """One fx node that outputs a tensor."""

    name: str                     # the fx node's name
    kind: str                     # conv, fc, bn, maxpool, avgpool, add, concat, mul, pad, layout, relu, ...
    inputs: tuple[str, ...]       # fx names of the tensor nodes it reads, in argument order
    shape: tuple[int, ...]        # its output's shape without the batch dimension
    module: str | None            # the module's qualified name (call_module nodes)
    scope: str                    # the module whose forward made the call
    facts: Mapping[str, Any]      # window geometry and pooling facts, activation parameters
    field: Field | None           # None only where no input carries a field
    reach: tuple[tuple[float, float], ...] | None = None  # per axis, the first and last input pixel
    #   any unit of this node reads: a valid stride-2 conv on an even input never reads the last row,
    #   so nothing after it does; a unit sees the part of its window inside its node's reach


class _Tracer(fx.Tracer):
    """Every module without children is a leaf (so custom convs with shape-dependent padding
    are one node, not a trace error)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return super().is_leaf_module(m, qualname) or next(m.children(), None) is None


# torch.fx's tracer patches nn.Module.__call__ for the whole process while it traces: a forward
# pass in another thread meanwhile goes through the tracer and fails ("module is not installed
# as a submodule"). Tracing holds this lock, and so does every forward of the explorer's engine
# (its one lock is this one), so a network traced while the server answers (a Train-tab run
# opened) never meets an answer half-way.
FX_LOCK = threading.RLock()


def trace(model: nn.Module) -> fx.GraphModule:
    """The model as an fx GraphModule (raises whatever fx raises when it cannot trace)."""
    from convscope.models._base import check_input

    tracer = _Tracer(autowrap_functions=(check_input,))
    with FX_LOCK:
        graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def module_kind(mod: nn.Module) -> str:
    """What a leaf module does, by type or protocol (never by class name)."""
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
        return activation_name(mod)  # type: ignore[return-value]
    if isinstance(mod, (nn.Dropout, nn.Identity, nn.Flatten)):
        return "layout"
    if isinstance(mod, PAD_MODULES):
        return "pad"
    if isinstance(mod, (nn.LocalResponseNorm, LRN)):
        return "lrn"
    if hasattr(mod, "same_padding") and getattr(mod, "kind", None) in ("max", "avg"):
        return f"{mod.kind}pool"  # a pooling layer with TF-"SAME" padding (layer_facts' protocol)
    return type(mod).__name__.lower()


def function_kind(node: fx.Node) -> str:
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
    if t in (operator.mul, torch.mul, operator.imul):
        return "mul"
    if t is F.local_response_norm:
        return "lrn"
    if t is F.pad:
        return "pad"
    if t in (F.adaptive_avg_pool2d, F.avg_pool2d):
        return "avgpool"
    if t in (F.adaptive_max_pool2d, F.max_pool2d):
        return "maxpool"
    return getattr(t, "__name__", str(t))


def scope_of(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def tensor_args(node: fx.Node) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda a: out.append(a) or a)
    return out


def call_kwargs(node: fx.Node) -> dict[str, Any]:
    """A call's arguments by name (F.leaky_relu(x, 0.2) -> negative_slope=0.2); its own keywords
    where torch cannot bind the signature."""
    if node.op != "call_function":
        return dict(node.kwargs)
    try:
        pair = node.normalized_arguments(node.graph.owning_module, normalize_to_only_use_kwargs=True)
    except Exception:  # noqa: BLE001 - a signature torch cannot bind: fewer facts, never a failure
        pair = None
    return dict(pair.kwargs) if pair is not None else dict(node.kwargs)


class LayerGraph:
    """The traced model's tensor nodes in forward order (`nodes`, by fx name), built in one pass."""

    def __init__(self, gm: fx.GraphModule, shapes: Mapping[str, Sequence[int]]) -> None:
        """`shapes`: fx node name -> output shape without the batch dimension, from one forward
        (nodes that output no tensor are absent)."""
        self.gm = gm
        self.nodes: dict[str, GraphNode] = {}
        modules = dict(gm.named_modules())
        for node in gm.graph.nodes:
            if node.name in shapes and node.op != "output":
                self.nodes[node.name] = self._node(node, modules, tuple(int(v) for v in shapes[node.name]))

    def field(self, name: str) -> Field | None:
        return self.nodes[name].field

    def node_of(self, layer: str) -> str:
        """The fx node name of `layer`: an fx node name, a leaf module's name (its first call), or a
        container's name (the last node made inside it: its output)."""
        if layer in self.nodes:
            return layer
        for node in self.nodes.values():
            if node.module == layer:
                return node.name
        inside = [n.name for n in self.nodes.values()
                  if (n.module or "").startswith(layer + ".") or (n.scope + ".").startswith(layer + ".")]
        if not inside:
            raise KeyError(f"no layer {layer!r} in the graph")
        return inside[-1]

    def _node(self, node: fx.Node, modules: dict[str, nn.Module], shape: tuple[int, ...]) -> GraphNode:
        if node.op == "placeholder":
            return GraphNode(node.name, "input", (), shape, None, "", {}, Field(),
                             tuple((0.0, float(n - 1)) for n in shape[1:]))
        mod = modules.get(node.target) if node.op == "call_module" else None
        kind = module_kind(mod) if mod is not None else function_kind(node)
        inputs = tuple(a.name for a in tensor_args(node) if a.name in self.nodes)
        srcs = [self.nodes[i] for i in inputs]
        in_hw = srcs[0].shape[1:] if srcs and len(srcs[0].shape) == 3 else None
        facts: dict[str, Any] = {}
        if kind in ("conv", "maxpool", "avgpool"):
            stand_in = mod if mod is not None else functional_module(node.target, call_kwargs(node))
            facts = (window(stand_in, in_hw, shape[1:] if len(shape) == 3 else None) or {}) if stand_in else {}
        elif kind == "pad":
            facts = {"pad": pad_amounts(mod, node)}
        elif kind in PARAMETRIZED:  # only these read the call's arguments (binding a signature costs)
            facts = activation_facts(kind, mod, call_kwargs(node) if mod is None else None)
        field = node_field(kind, facts, [(s.field, s.shape) for s in srcs], shape)
        return GraphNode(node.name, kind, inputs, shape, node.target if mod is not None else None,
                         scope_of(node), facts, field, node_reach(field, [s.reach for s in srcs], shape))


def node_reach(field: Field | None, reaches: Sequence[Any], shape: Sequence[int]) -> tuple | None:
    """The input pixels any unit of a node reads, per axis: the span from unit 0's window to the last
    unit's, inside the hull of what its inputs reach (exact along a chain; at a join the hull)."""
    reaches = [r for r in reaches if r is not None]
    if not reaches:
        return None
    hull = tuple((min(r[a][0] for r in reaches), max(r[a][1] for r in reaches)) for a in range(2))
    if field is None or field.whole or len(shape) != 3:
        return hull
    out = []
    for a in range(2):
        half = (field.r[a] - 1) / 2
        first, last = field.s[a] - half, field.s[a] + (shape[1 + a] - 1) * field.j[a] + half
        out.append((max(hull[a][0], first), min(hull[a][1], last)))
    return tuple(out)


def pad_amounts(mod: nn.Module | None, node: fx.Node | None = None) -> list[int] | None:
    """(left, right, top, bottom) of explicit padding, as F.pad takes it (negative: cropping), from a
    padding module or an F.pad call."""
    pad = getattr(mod, "padding", None) if mod is not None else call_kwargs(node).get("pad") if node else None
    if pad is None:
        return None
    pad = [int(v) for v in (pad if isinstance(pad, (list, tuple)) else (pad,) * 4)]
    return (pad + [0, 0, 0, 0])[:4]


def node_field(kind: str, facts: Mapping[str, Any], srcs: Sequence[tuple[Field | None, Sequence[int]]],
               shape: Sequence[int]) -> Field | None:
    """A node's receptive field from its inputs' (field, shape) pairs: the rules of the module docstring."""
    ins = [(f, tuple(s)) for f, s in srcs if f is not None]
    if not ins:
        return None
    first = ins[0][0]
    if len(shape) != 3:  # flattened, linear: every output sees the whole input
        return merge([f for f, _ in ins]).everything()
    out_hw = tuple(shape[1:])
    if facts.get("adaptive") and len(ins[0][1]) == 3:  # to 1x1 is global pooling: the whole input
        return adaptive(first, ins[0][1][1:], out_hw) if out_hw != (1, 1) else first.everything()
    if facts.get("kernel") is not None and facts.get("stride") is not None:
        return first.window(facts["kernel"], facts["stride"], facts["pad_before"], facts["dilation"])
    if facts.get("pad") is not None:
        left, _, top, _ = facts["pad"]
        return first.shift(top, left)
    maps = [f for f, s in ins if len(s) == 3 and s[1:] == out_hw]
    if maps:  # elementwise, add, concatenation, a 1x1 gate broadcast over the map (left out)
        return merge(maps)
    return merge([f for f, _ in ins]).everything()  # the map shrank with no window: a global reduction


class _Recorder(fx.Interpreter):
    """Runs a GraphModule node by node, keeping every node's output (so shapes and tensors are
    known by node name); `before(node)` / `after(node)` hooks let a caller follow along."""

    def __init__(self, gm: fx.GraphModule, before=None, after=None) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.extra_traceback = False  # an error reads as torch's own, not fx's
        self.before, self.after = before, after
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        if self.before is not None:
            self.before(n)
        try:
            value = super().run_node(n)
        finally:
            if self.after is not None:
                self.after(n)
        self.values[n.name] = value
        return value


def shapes_of(values: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """fx node name -> output shape without the batch dimension, for the nodes that output a tensor."""
    return {k: tuple(v.shape[1:]) for k, v in values.items() if isinstance(v, torch.Tensor)}


def run(gm: fx.GraphModule, x: torch.Tensor, before=None, after=None) -> tuple[Any, dict[str, Any]]:
    """The output of `gm(x)` and every node's output by fx name."""
    rec = _Recorder(gm, before, after)
    out = rec.run(x)
    return out, rec.values


def build(model: nn.Module, input_size: Sequence[int]) -> LayerGraph:
    """The graph of `model` for one input of `input_size` (C, H, W), its shapes found on the meta
    device (nothing computed; the model is neither copied nor changed: it is traced in eval mode,
    as it answers, and its train/eval flags are restored)."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        gm = trace(model)  # shares the model's modules: run while they are still in eval mode
        x = torch.empty((1, *input_size), device="meta")
        stand_ins = {k: torch.empty_like(v, device="meta") for k, v in [*gm.named_parameters(), *gm.named_buffers()]}
        with torch.no_grad():
            _, values = torch.func.functional_call(_Runner(gm), {f"gm.{k}": v for k, v in stand_ins.items()}, (x,))
    finally:
        for m, flag in flags.items():
            m.training = flag
    return LayerGraph(gm, shapes_of(values))


class _Runner(nn.Module):
    """`run` as a module, so `torch.func.functional_call` can swap in meta stand-ins for the weights."""

    def __init__(self, gm: fx.GraphModule, before=None, after=None) -> None:
        super().__init__()
        self.gm = gm
        self._hooks = (before, after)

    def forward(self, x: torch.Tensor) -> tuple[Any, dict[str, Any]]:
        return run(self.gm, x, *self._hooks)


# aten operation (a summary row made in a container's forward) -> the kind of its graph node
ATEN_KINDS = {"add_": "add", "cat": "concat", "mul_": "mul", "relu_": "relu", "constant_pad_nd": "pad",
              "_adaptive_avg_pool2d": "avgpool", "adaptive_avg_pool2d": "avgpool", "avg_pool2d": "avgpool",
              "adaptive_max_pool2d": "maxpool", "max_pool2d_with_indices": "maxpool", "max_pool2d": "maxpool",
              "sigmoid_": "sigmoid", "tanh_": "tanh", "hardtanh": "relu6", "hardtanh_": "relu6"}


def row_nodes(graph: LayerGraph, rows: Sequence[tuple[str, bool, Sequence[str]]]) -> list[str | None]:
    """The graph node of each summary row, or None: a module's k-th call is its k-th node; an
    operation made in a container's forward (`layer1.0.add`) is the k-th node of that kind made
    in that container's forward. `rows`: (name, is a module's row, its aten operations)."""
    calls: dict[tuple[str, str], list[str]] = {}
    for node in graph.nodes.values():
        if node.module is not None:
            calls.setdefault(("module", node.module), []).append(node.name)
        elif node.kind != "input":
            calls.setdefault((node.scope, node.kind), []).append(node.name)
    used: dict[tuple[str, str], int] = {}
    out: list[str | None] = []
    for name, is_module, ops in rows:
        if is_module:
            key = ("module", name)
        else:
            op = ops[0] if ops else name
            scope = name[:-len(op) - 1] if name.endswith("." + op) else ""
            kinds = [ATEN_KINDS.get(op, op)] + (["avgpool"] if op == "mean" else [])  # adaptive pool to 1 is a mean
            key = next(((scope, k) for k in kinds if used.get((scope, k), 0) < len(calls.get((scope, k), []))),
                       (scope, kinds[0]))
        k = used.get(key, 0)
        used[key] = k + 1
        found = calls.get(key, [])
        out.append(found[k] if k < len(found) else None)
    return out
