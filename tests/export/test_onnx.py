"""ONNX export: onnxruntime (an independent runtime) must answer what torch answers.

The default set exports the small networks and CIFAR-size (`small_input=True`)
variants of resnet18 and mobilenet_v1; the `slow` set (`pytest -m slow
tests/export`) adds the CIFAR-size densenet121 and googlenet and every other
registered model (alexnet ... zfnet) at its default size.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from convscope.errors import UserError
from convscope.export import ExportCheckError, export_onnx
from convscope.export.onnx import SHOWN_TYPES
from convscope.models import create_model, list_models

FAST = {"lenet5", "convnet_small", "convnet_wide"}
SMALL_INPUT = ["resnet18", "mobilenet_v1", pytest.param("densenet121", marks=pytest.mark.slow),
               pytest.param("googlenet", marks=pytest.mark.slow)]


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def torch_layers(model: nn.Module, x: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Logits and the named modules' outputs, caught with this test's own hooks (last call wins)."""
    acts: dict[str, np.ndarray] = {}
    mods = dict(model.named_modules())
    handles = [mods[n].register_forward_hook(lambda _m, _i, o, n=n: acts.__setitem__(n, o.detach().clone().numpy()))
               for n in names]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return (out[0] if isinstance(out, tuple) else out), acts


def check_file(model: nn.Module, path: Path, size, *, all_layers: bool, batches=(1, 4)) -> None:
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    names = [o.name for o in proto.graph.output]
    assert names[0] == "logits" and [i.name for i in proto.graph.input] == ["input"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a symbolic batch axis
    sess = session(path)
    for n in batches:  # batch sizes other than the traced one (2)
        x = torch.randn(n, *size)
        got = dict(zip(names, sess.run(names, {"input": x.numpy()})))
        logits, acts = torch_layers(model, x, names[1:])
        assert got["logits"].shape == (n, logits.shape[1])
        want = {"logits": logits.numpy(), **acts}
        for name in names:  # 1e-4, times the output's largest magnitude beyond 1 (float32: 7 digits)
            tol = 1e-4 * max(1.0, float(np.abs(want[name]).max()))
            np.testing.assert_allclose(got[name], want[name], atol=tol, rtol=0, err_msg=name)
    if all_layers:
        shown = {n for n, m in model.named_modules() if isinstance(m, SHOWN_TYPES) and not list(m.children())}
        assert set(names[1:]) <= shown and len(names) > 1


def _export_and_check(model: nn.Module, tmp_path: Path, *, all_layers: bool = True) -> None:
    model.eval()
    size = model.default_input_size
    out = tmp_path / "m.onnx"
    result = export_onnx(model, out, size, all_layers=all_layers)
    assert result.ok and result.max_scaled_diff <= 1e-4 and out.is_file()
    check_file(model, out, size, all_layers=all_layers)


@pytest.mark.parametrize("name", sorted(FAST))
def test_small_models_export_with_every_layer(name, tmp_path):
    _export_and_check(create_model(name), tmp_path)


@pytest.mark.timeout(1800)  # a hang guard: densenet121 took 134 s here beside two CPU burners
@pytest.mark.parametrize("name", SMALL_INPUT)
def test_cifar_size_variants_export(name, tmp_path):
    model = create_model(name, num_classes=10, small_input=True)
    assert model.default_input_size[1:] == (32, 32)
    _export_and_check(model, tmp_path, all_layers=name != "densenet121")


# One of each builder at its default size in every run; the deeper variants of the same builders
# (resnet34/101/152, vgg11/13/16/19 and their _bn, densenet161/169/201, resnext101_32x8d,
# nasnet_a_large) add ~4 minutes of CPU and run with CONVSCOPE_ALL_MODELS=1 (and in
# `benchmarks/export.py --all`, whose last full run is in docs/benchmarks.md).
EVERY_BUILDER = {"alexnet", "alexnet_paper", "zfnet", "vgg11_bn", "googlenet", "googlenet_paper",
                 "inception_v4", "inception_resnet_v2", "resnet18", "resnet50", "resnext50_32x4d",
                 "seresnet50", "densenet121", "mobilenet_v1", "nasnet_a_mobile", "lenet5_harley"}
ALL_MODELS = os.environ.get("CONVSCOPE_ALL_MODELS") == "1"


def _default_size_models() -> list:
    names = [n for n in list_models() if n not in FAST]
    unknown = EVERY_BUILDER - set(names)
    assert not unknown, f"EVERY_BUILDER names unregistered models: {sorted(unknown)}"
    return [n if n in EVERY_BUILDER else pytest.param(n, marks=pytest.mark.skipif(
        not ALL_MODELS, reason="a deeper variant of a builder tested here; CONVSCOPE_ALL_MODELS=1 runs it"))
        for n in names]


@pytest.mark.slow
# a hang guard, not a speed limit: inception_resnet_v2 took 230 s beside two CPU burners (load 8-12
# on 2 cores), close to half the suite-wide 600 s
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", _default_size_models())
def test_every_registered_model_at_its_default_size(name, tmp_path):
    """Every ImageNet-size network (alexnet ... zfnet), 224-331 px, up to 144M parameters."""
    model = create_model(name)
    model.eval()
    out = tmp_path / "m.onnx"
    result = export_onnx(model, out, model.default_input_size)
    assert result.ok
    check_file(model, out, model.default_input_size, all_layers=False, batches=(1,))


def test_lenet5_layer_outputs_are_named_by_module(tmp_path):
    model = create_model("lenet5").eval()
    result = export_onnx(model, tmp_path / "l.onnx", (1, 28, 28), all_layers=True)
    assert result.outputs == ["logits", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                              "fc1", "relu3", "fc2", "relu4", "output"]


def test_inplace_activation_does_not_leak_into_the_conv_output(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    path = tmp_path / "s.onnx"
    export_onnx(model, path, (1, 8, 8), layers=["0", "1"])
    x = torch.randn(2, 1, 8, 8)
    conv, relu = session(path).run(["0", "1"], {"input": x.numpy()})
    with torch.no_grad():
        want = model[0](x).numpy()
    np.testing.assert_allclose(conv, want, atol=1e-5)
    assert (conv < 0).any() and (relu >= 0).all()


def test_a_failed_check_writes_nothing(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportCheckError, match="not written"):
        export_onnx(create_model("lenet5"), out, (1, 28, 28), tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_hooks_are_removed_after_export(tmp_path):
    model = create_model("lenet5")
    export_onnx(model, tmp_path / "m.onnx", (1, 28, 28), all_layers=True)
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("out, match", [
    ("model.onx", "must end in .onnx"),
    ("model", "must end in .onnx"),
    ("afile/model.onnx", "is a file, not a folder"),
    ("afile/deeper/model.onnx", "is a file, not a folder"),
    ("adir", "must end in .onnx"),
])
def test_bad_output_paths_are_user_errors(tmp_path, out, match):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(UserError, match=match):
        export_onnx(create_model("lenet5"), tmp_path / out, (1, 28, 28))


def test_unwritable_folder_is_a_user_error(tmp_path):
    if os.geteuid() == 0:
        target = Path("/proc/convscope-test/model.onnx")  # not writable even by root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "model.onnx"
    with pytest.raises(UserError, match="not writable"):
        export_onnx(create_model("lenet5"), target, (1, 28, 28))


def _tiny_run(tmp_path: Path) -> Path:
    from convscope.train.checkpoint import save_run

    model = create_model("lenet5")
    cfg = {"model": {"name": "lenet5", "kwargs": {}}, "dataset": "mnist", "classes": [str(i) for i in range(10)],
           "input_size": [1, 28, 28], "normalization": {"mean": [0.1307], "std": [0.3081]},
           "preprocessing": {"kind": "digits", "invert": False}}
    return save_run(tmp_path / "run", model, cfg)


def test_cli_exports_a_run_with_its_weights(tmp_path, capsys):
    from convscope.cli import main
    from convscope.train.checkpoint import load

    run = _tiny_run(tmp_path)
    out = tmp_path / "out" / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out), "--all-layers"]) == 0
    text = capsys.readouterr().out
    assert "max abs diff" in text and "ok" in text
    model, _ = load(run)
    check_file(model.eval(), out, (1, 28, 28), all_layers=True)


def test_cli_json_and_errors(tmp_path, capsys):
    from convscope.cli import main

    assert main(["export", "lenet5", "--out", str(tmp_path / "m.onnx"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["check"]["ok"] and report["check"]["max_abs_diff"] <= 1e-4 and report["outputs"] == 1
    assert main(["export", "lenet5", "--out", str(tmp_path / "m.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
