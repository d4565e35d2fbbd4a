"""The shared cases through the page's JavaScript under Node, against the Python engine.

- inspect.js's worked value of a unit (unitmath.js, from the layer's description, its
  weights and the values of the layers it reads) equals the network's own value of that
  unit within 1e-4, on every layer of every case network, border units included;
- preprocess.js feeds what the engine feeds, for drawings (as lists and as PNGs) and photos;
- engine_ort.js's warnings and refusals are the server's texts, word for word, with the
  size limits the description sends.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

TOL = 1e-4


def _facts(desc: dict) -> dict:
    return {"digits": desc["digits"], "random_weights": desc["random_weights"], "preprocessing": desc["preprocessing"],
            "input_size": desc["input_size"]}


def _require_facts(desc: dict, engine_api) -> None:
    missing = [k for k in engine_api.FACTS if k not in desc]
    assert not missing, f"GET /api/model lacks {missing} (issue 22: the page reads them, never guesses)"


def _explain_job(network, engine, engine_api, cases, x) -> tuple[dict, list[tuple[dict, float]]]:
    desc = engine_api.description(engine)
    values = engine_api.layer_values(engine, x)
    rng = np.random.default_rng(cases.SEED)
    units, want = [], []
    for layer in desc["layers"]:
        if layer["kind"] == "input":
            continue
        for m, y, xx in cases.units(layer["shape"], rng):
            weights = None
            if layer["kind"] in ("conv", "fc", "bn"):
                weights = engine_api.unit_weights(engine, layer["name"], m)
            units.append({"layer": layer["name"], "m": m, "y": y, "x": xx, "weights": weights})
            v = values[layer["name"]]
            want.append((layer, float(v[m, y, xx] if v.ndim == 3 else v.reshape(-1)[m])))
    job = {"op": "explain", "layers": desc["layers"], "normalization": desc["normalization"],
           "values": {k: v.ravel().tolist() for k, v in values.items()}, "units": units}
    return job, want


@pytest.mark.parametrize("name", ["digits", "photo"])
def test_the_worked_value_of_every_unit_is_the_networks_own(name, engines, engine_api, cases, run_page):
    network, engine = engines[name]
    job, want = _explain_job(network, engine, engine_api, cases, cases.input_for(network))
    got = run_page([job])[0]
    worst: dict[str, float] = {}
    wrong, unexplained = [], []
    for (layer, net), unit, g in zip(want, job["units"], got):
        kind = layer["kind"] + (f"+{layer['activation']}" if layer.get("activation") else "")
        where = f"{layer['name']} ({kind}) unit {unit['m']},{unit['y']},{unit['x']}"
        if "unexplained" in g:
            unexplained.append(f"{where}: {g['unexplained']}")
            continue
        d = abs(g["a"] - net)
        worst[kind] = max(worst.get(kind, 0.0), d)
        if d > TOL:
            wrong.append(f"{where}: page {g['a']:.6f}, network {net:.6f}")
    print(f"\n{name}: largest |page - network| per kind: " + ", ".join(f"{k} {v:.1e}" for k, v in sorted(worst.items())))
    assert not unexplained, "units the page cannot write out:\n" + "\n".join(unexplained[:20])
    assert not wrong, f"{len(wrong)} of {len(got)} units written out wrong:\n" + "\n".join(wrong[:20])


def test_the_cases_hold_every_layer_kind_and_activation(engines, engine_api, cases):
    kinds, acts = set(), set()
    for _, engine in engines.values():
        for layer in engine_api.description(engine)["layers"]:
            kinds.add(layer["kind"])
            acts.add(layer.get("activation") or layer["kind"])
    assert cases.KINDS <= kinds, cases.KINDS - kinds
    assert cases.ACTIVATIONS <= acts, cases.ACTIVATIONS - acts


def _drawing_jobs(cases, engines, engine_api, png: bool):
    jobs, want = [], []
    for net_name in ("digits", "fashion"):
        network, engine = engines[net_name]
        desc = engine_api.description(engine)
        _require_facts(desc, engine_api)
        for drawing in cases.DRAWINGS:
            g = drawing.image()
            image = _png(g) if png else g
            for pre in ((True, False) if desc["digits"] else (True,)):
                ans = engine_api.answer(engine, image, pre)
                job = {"op": "answer", "h": g.shape[0], "w": g.shape[1], "config": _config(desc),
                       "preprocess": pre, "facts": _facts(desc), "probs": ans["probabilities"], "file": False}
                if png:
                    job["rgba"] = _rgba(g).ravel().tolist()
                else:
                    job["gray"] = g.ravel().tolist()
                jobs.append(job)
                want.append((f"{net_name}/{drawing.name}/preprocess={pre}", desc, engine_api.prepared(engine, image, pre), ans))
    return jobs, want


def _config(desc: dict) -> dict:
    return {"input_size": desc["input_size"], "normalization": desc["normalization"], "preprocessing": desc["preprocessing"]}


def _rgba(g: np.ndarray) -> np.ndarray:
    """The canvas's RGBA bytes of a drawing (opaque grey)."""
    q = np.rint(g * 255).astype(np.uint8)
    return np.dstack([q, q, q, np.full_like(q, 255)])


def _png(g: np.ndarray):
    """The drawing as the server decodes the page's PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_rgba(g), "RGBA").save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue()))


def _fed_tol(desc: dict) -> float:
    # "resize" runs: Pillow may take its two 8-bit passes in the other order: one level apart
    return 1.01 / 255 / min(desc["normalization"]["std"]) if desc["preprocessing"]["kind"] == "resize" else 1e-4


@pytest.mark.parametrize("png", [False, True], ids=["list", "png"])
def test_drawings_are_fed_and_warned_about_as_the_server_does(png, cases, engines, engine_api, run_page):
    jobs, want = _drawing_jobs(cases, engines, engine_api, png)
    got = run_page(jobs)
    for (label, desc, x, ans), g in zip(want, got):
        np.testing.assert_allclose(np.asarray(g["x"]), x, atol=_fed_tol(desc), err_msg=f"{label}: the fed input")
        if ans["raw"] is not None:
            np.testing.assert_allclose(np.asarray(g["raw"]), np.asarray(ans["raw"]).ravel(), atol=1e-4, err_msg=f"{label}: the raw downsample")
        else:
            assert g["raw"] is None, label
        assert g["warnings"] == ans["warnings"], label


def test_photos_are_fed_as_the_server_feeds_them(cases, engines, engine_api, run_page):
    jobs, want = [], []
    for net_name in ("photo", "digits"):
        _, engine = engines[net_name]
        desc = engine_api.description(engine)
        for name in cases.PHOTOS:
            img = cases.photo(name)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            from PIL import Image

            decoded = Image.open(io.BytesIO(buf.getvalue()))
            ans = engine_api.answer(engine, decoded, True)
            rgba = np.asarray(img.convert("RGBA"))
            jobs.append({"op": "answer", "rgba": rgba.ravel().tolist(), "w": img.width, "h": img.height, "file": True,
                         "config": _config(desc), "preprocess": True, "facts": _facts(desc), "probs": ans["probabilities"]})
            want.append((f"{net_name}/{name}", desc, engine_api.prepared(engine, Image.open(io.BytesIO(buf.getvalue())), True), ans))
    for (label, desc, x, ans), g in zip(want, run_page(jobs)):
        np.testing.assert_allclose(np.asarray(g["x"]), x, atol=_fed_tol(desc), err_msg=label)
        assert g["warnings"] == ans["warnings"], label


def test_refused_requests_get_the_servers_words(cases, engines, engine_api, run_page):
    desc = engine_api.description(engines["digits"][1])
    _require_facts(desc, engine_api)
    names = list(cases.BAD_BODIES)
    got = run_page([{"op": "request", "body": cases.BAD_BODIES[n], "limits": desc["limits"]} for n in names])
    for name, g in zip(names, got):
        assert g == engine_api.refusal(cases.BAD_BODIES[name]), name
    assert got[names.index("good-list")] is None and sum(g is not None for g in got) == len(names) - 1


def test_decoded_sizes_get_the_servers_limits_and_words(cases, engines, engine_api, run_page):
    desc = engine_api.description(engines["digits"][1])
    _require_facts(desc, engine_api)
    got = run_page([{"op": "decoded", "w": w, "h": h, "file": f, "limits": desc["limits"]} for w, h, f in cases.DECODED_SIZES])
    for (w, h, f), g in zip(cases.DECODED_SIZES, got):
        assert g == engine_api.decoded_refusal(w, h, f), (w, h, f)


def test_percentages_and_numbers_are_written_as_python_writes_them(run_page):
    """f"{v:.0%}" rounds the double half to even (98 of 784 pixels is 12%, not 13%); f"{v:g}"."""
    values = [98 / 784, 0.125, 0.375, 0.045, 0.4499, 1 / 3, 0.995, 0.005, 0.015, 1.0, 0.0, 128 / 1024,
              -0.5, 1.2000000476837158, 1e-5, 123456.7, 1234567.0, 2.5e-7, -3.0, 0.1 + 0.2]
    got = run_page([{"op": "format", "values": values}])[0]
    assert got["percent"] == [f"{v:.0%}" for v in values]
    assert got["g"] == [f"{v:g}" for v in values]


ACTIVATION_CASES = [  # (name, the layer's parameters as the description sends them, torch's function)
    ("relu", {}, F.relu), ("relu6", {}, F.relu6), ("leakyrelu", {"negative_slope": 0.2}, lambda t: F.leaky_relu(t, 0.2)),
    ("elu", {"alpha": 0.7}, lambda t: F.elu(t, 0.7)), ("selu", {}, F.selu), ("tanh", {}, torch.tanh),
    ("sigmoid", {}, torch.sigmoid), ("silu", {}, F.silu), ("gelu", {"approximate": "none"}, F.gelu),
    ("gelu", {"approximate": "tanh"}, lambda t: F.gelu(t, approximate="tanh")), ("hardswish", {}, F.hardswish),
    ("hardsigmoid", {}, F.hardsigmoid), ("mish", {}, F.mish),
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}, lambda t: F.hardtanh(t, -0.5, 2.0)),
]


def test_every_activation_the_page_writes_out_is_torchs(run_page):
    zs = np.concatenate([np.linspace(-8, 8, 161), [-30.0, -3.0, 3.0, 25.0, 1e-7, -1e-7]])
    got = run_page([{"op": "activations", "zs": zs.tolist(), "cases": [{"name": n, "params": p} for n, p, _ in ACTIVATION_CASES]}])[0]
    assert {n for n, _, _ in ACTIVATION_CASES} == set(got[0]["names"]), "an activation of unitmath.js without a case here"
    t = torch.tensor(zs, dtype=torch.float64)
    for (name, params, fn), g in zip(ACTIVATION_CASES, got):
        np.testing.assert_allclose(g["values"], fn(t).numpy(), atol=1e-9, err_msg=f"{name} {params}")
