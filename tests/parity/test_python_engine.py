"""The shared cases against the Python engine, each checked by an oracle of its own:
torch's modules and functions for the values and the facts of every layer, the cases'
own intent for the drawings' warnings, the limits the engine says it enforces for refusals.
(test_page_js.py then holds the page's JavaScript to the same engine.)"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

TORCH_ACTIVATIONS = {
    "relu": lambda t, l: F.relu(t), "relu6": lambda t, l: F.relu6(t), "tanh": lambda t, l: torch.tanh(t),
    "leakyrelu": lambda t, l: F.leaky_relu(t, l["negative_slope"]), "elu": lambda t, l: F.elu(t, l.get("alpha", 1.0)),
    "silu": lambda t, l: F.silu(t), "hardswish": lambda t, l: F.hardswish(t), "mish": lambda t, l: F.mish(t),
    "gelu": lambda t, l: F.gelu(t, approximate=l.get("approximate", "none")), "sigmoid": lambda t, l: torch.sigmoid(t),
    "hardsigmoid": lambda t, l: F.hardsigmoid(t),
}


def _hooked(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's logits and every named module's output, by forward hooks (no engine involved)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(n, out.detach().clone()))
             for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out[0], {k: v[0] for k, v in seen.items()}


@pytest.mark.parametrize("name", ["digits", "photo"])
def test_every_layer_value_is_torchs_own(name, engines, engine_api, cases):
    network, engine = engines[name]
    x = cases.input_for(network)
    logits, seen = _hooked(network.model(), x)  # the same seed: the same weights as the engine's
    # the engine may run its pass with more rows (another GEMM kernel): the last bits differ
    np.testing.assert_allclose(engine_api.logits(engine, x), logits.numpy(), rtol=1e-5, atol=1e-5)
    values = engine_api.layer_values(engine, x)
    desc = engine_api.description(engine)
    by_name = {layer["name"]: layer for layer in desc["layers"]}
    checked = 0
    for layer in desc["layers"]:
        act = layer.get("activation")
        if layer["kind"] == "input":
            continue
        if layer.get("module") in seen:
            before = seen[layer["module"]]
        elif layer["kind"] in ("add", "concat"):
            ins = [torch.from_numpy(values[n]) for n in layer["inputs"]]
            before = sum(ins) if layer["kind"] == "add" else torch.cat(ins)
        else:
            continue
        want = TORCH_ACTIVATIONS[act](before, layer) if act else before
        np.testing.assert_allclose(values[layer["name"]], want.reshape(values[layer["name"]].shape).numpy(),
                                   rtol=1e-5, atol=1e-5, err_msg=layer["name"])
        checked += 1
    assert checked >= len(by_name) - 2, f"only {checked} of {len(by_name)} layers checked"


def _same_sides(n: int, k: int, s: int) -> list[int]:
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)  # nasnet.pad_same
    return [total // 2, total - total // 2]


@pytest.mark.parametrize("name", ["digits", "photo"])
def test_each_layer_carries_the_facts_the_page_reads(name, engines, engine_api):
    """count_include_pad, ceil_mode, divisor_override, adaptive, dilation, groups, TF-SAME
    padding (all four sides) and each activation's parameters, as the modules hold them."""
    network, engine = engines[name]
    desc = engine_api.description(engine)
    modules = dict(network.model().named_modules())
    by_name = {layer["name"]: layer for layer in desc["layers"]}
    for layer in desc["layers"]:
        mod = modules.get(layer.get("module") or "")
        for key in engine_api.LAYER_FACTS.get(layer["kind"], ()):
            if not layer.get("adaptive"):
                assert key in layer, f"{layer['name']} ({layer['kind']}) carries no {key!r}"
        if isinstance(mod, nn.Conv2d):
            assert (layer["dilation"], layer["groups"]) == (list(mod.dilation), mod.groups), layer["name"]
        if isinstance(mod, nn.AvgPool2d):
            assert (layer["count_include_pad"], layer["ceil_mode"], layer["divisor_override"]) == \
                (mod.count_include_pad, mod.ceil_mode, mod.divisor_override), layer["name"]
        if isinstance(mod, nn.MaxPool2d):
            assert layer["ceil_mode"] == mod.ceil_mode, layer["name"]
        if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) or layer["name"] == "avgpool":
            assert layer.get("adaptive") is True, layer["name"]
        if type(mod).__name__ in ("Conv2dSame", "PoolSame"):
            src = by_name[layer["inputs"][0]]
            k, s = layer["kernel"][0], layer["stride"][0]
            if type(mod).__name__ == "PoolSame" and mod.kind == "avg" and s == 1:
                want, counted = [k // 2] * 4, False     # F.avg_pool2d(padding=k // 2, count_include_pad=False)
            else:
                want, counted = _same_sides(src["shape"][1], k, s) + _same_sides(src["shape"][2], k, s), True
            assert layer.get("padding_mode") == "same_tf" and layer["padding"] == want, layer["name"]
            if layer["kind"] == "avgpool":
                assert layer["count_include_pad"] is counted, layer["name"]
        if layer.get("activation") == "leakyrelu" or layer["kind"] == "leakyrelu":
            assert layer["negative_slope"] == pytest.approx(0.1), layer["name"]


def test_the_description_carries_version_digits_and_limits(engines, engine_api):
    for name, (network, engine) in engines.items():
        desc = engine_api.description(engine)
        assert isinstance(desc.get("version"), int) and not isinstance(desc["version"], bool), name
        want = network.config["preprocessing"]["kind"] == "digits" and network.config["input_size"][0] == 1
        assert desc.get("digits") is want, name
        assert {"min_side", "max_side", "max_image_pixels"} <= set(desc.get("limits") or {}), name
        ans = engine_api.answer(engine, np.zeros((28, 28), np.float32), True)
        assert ans.get("version") == desc["version"], name


def test_each_drawing_raises_the_warning_it_was_drawn_for(engines, engine_api, cases):
    _, engine = engines["digits"]
    for drawing in cases.DRAWINGS:
        warnings = engine_api.answer(engine, drawing.image(), True)["warnings"]
        ink = [w for w in warnings if "random weights" not in w and "guesses are close" not in w]
        if drawing.warns is None:
            assert not ink, (drawing.name, ink)
        else:
            assert len(ink) == 1 and drawing.warns in ink[0], (drawing.name, warnings)


def test_the_limits_it_sends_are_the_ones_it_enforces(engines, engine_api, cases):
    limits = engine_api.description(engines["digits"][1])["limits"]
    for w, h, file in cases.DECODED_SIZES:
        outside = w * h > limits["max_image_pixels"] if file else \
            min(w, h) < limits["min_side"] or max(w, h) > limits["max_side"]
        assert (engine_api.decoded_refusal(w, h, file) is not None) == outside, (w, h, file)
    refused = {n for n, body in cases.BAD_BODIES.items() if engine_api.refusal(body) is not None}
    assert refused == set(cases.BAD_BODIES) - {"good-list"}
