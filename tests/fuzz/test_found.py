"""The cases a careless user (and an attacker) found, one test each, by kind.

Every one must end in exit status 2 (130 for Ctrl-C), one line naming the
argument or file, no traceback, and an earlier finished run left as it was.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ._bad import config_damage, png_header, small_png, weights_damage
from .conftest import assert_fails_well, cli, snapshot, subprocess_cli

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def _kept(folder: Path, before: dict[str, str]) -> None:
    """The run's own files are byte-identical to `before` (hidden lock/temp files aside)."""
    now = {k: v for k, v in snapshot(folder).items() if not Path(k).name.startswith(".")}
    was = {k: v for k, v in before.items() if not Path(k).name.startswith(".")}
    assert now == was, f"the finished run in {folder} changed: {sorted(set(now.items()) ^ set(was.items()))}"


# ---- 1. lost work ---------------------------------------------------------------------------

class _Stop(KeyboardInterrupt):
    pass


def _interrupt_first_step(monkeypatch):
    """Ctrl-C arrives inside the first optimizer step of the next training."""
    import torch

    def step(self, *a, **k):
        raise KeyboardInterrupt

    for cls in (torch.optim.SGD, torch.optim.AdamW):
        monkeypatch.setattr(cls, "step", step)


def test_overwrite_with_lr_inf_keeps_the_finished_run(run_copy):
    before = snapshot(run_copy)
    res = cli("train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--lr", "inf",
              "--overwrite", "--quiet", "--out", run_copy)
    assert_fails_well(res, "--lr")
    _kept(run_copy, before)


def test_overwrite_that_diverges_keeps_the_finished_run(run_copy, monkeypatch):
    import torch

    def step(self, *a, **k):  # the weights blow up: the next loss is NaN
        for group in self.param_groups:
            for p in group["params"]:
                p.data.fill_(float("nan"))

    for cls in (torch.optim.SGD, torch.optim.AdamW):
        monkeypatch.setattr(cls, "step", step)
    before = snapshot(run_copy)
    res = cli("train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--overwrite", "--quiet",
              "--threads", "1", "--out", run_copy)
    assert_fails_well(res, "--lr")
    _kept(run_copy, before)


def test_overwrite_interrupted_in_epoch_1_keeps_the_finished_run(run_copy, monkeypatch):
    before = snapshot(run_copy)
    _interrupt_first_step(monkeypatch)
    res = cli("train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--overwrite", "--quiet",
              "--threads", "1", "--out", run_copy)
    assert res.code == 130, str(res)
    assert "Traceback" not in res.text
    assert "last finished epoch" not in res.text or (run_copy / WEIGHTS).is_file(), str(res)
    _kept(run_copy, before)


def test_a_run_interrupted_before_its_first_epoch_can_be_resumed_as_it_says(tmp_path, monkeypatch):
    out = tmp_path / "new"
    with monkeypatch.context() as m:
        _interrupt_first_step(m)
        res = cli("train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--quiet",
                  "--threads", "1", "--out", out)
    assert res.code == 130 and "Traceback" not in res.text, str(res)
    if "--resume" in res.text:  # it says to resume: resuming must work
        again = cli("train", "--out", out, "--resume", "--quiet", "--threads", "1")
        assert again.code == 0, f"the message said --resume:\n{res}\nbut:\n{again}"
    else:  # or it says exactly what to do instead
        assert str(out) in res.text, str(res)


def test_a_second_writer_is_stopped_by_the_lock(run_copy):
    before = snapshot(run_copy)
    (run_copy / ".lock").write_text(f"{os.getpid()}\n")  # a live process holds the run
    res = cli("train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--overwrite", "--quiet",
              "--threads", "1", "--out", run_copy)
    assert_fails_well(res, str(run_copy))
    assert str(os.getpid()) in res.err, str(res)
    _kept(run_copy, before)


def test_a_stale_lock_does_not_stop_a_resume(run_copy):
    (run_copy / ".lock").write_text("999999999\n")  # no such process
    res = cli("train", "--out", run_copy, "--resume", "--epochs", "2", "--quiet", "--threads", "1")
    assert res.code == 0, str(res)


# ---- 2. corrupt files -------------------------------------------------------------------------

LOADERS = {
    "predict": lambda run, img: ("predict", run, img),
    "evaluate": lambda run, img: ("evaluate", run, "--split", "val"),
    "summary": lambda run, img: ("summary", run),
    "kernels": lambda run, img: ("kernels", run, "--out", run.parent / "k.png"),
    "activations": lambda run, img: ("activations", run, img, "--out", run.parent / "a.png"),
    "saliency": lambda run, img: ("saliency", run, img, "--out", run.parent / "s.png"),
    "serve": lambda run, img: ("serve", "--run", run, "--port", "0"),
    "finetune": lambda run, img: ("finetune", "--from", run, "--data", "synthetic", "--out", run.parent / "ft",
                                  "--epochs", "1", "--freeze-epochs", "0", "--quiet"),
}

_weights = weights_damage(b"\0" * 8)  # only the names here; the bytes are made from the real file
WEIGHT_CASES = ["zero-byte", "truncated", "random", "header-only", "bad-length", "json-garbage"]


@pytest.mark.parametrize("damage", WEIGHT_CASES)
@pytest.mark.parametrize("command", ["predict", "evaluate", "kernels", "activations", "saliency", "serve"])
def test_damaged_weights(run_copy, digit_png, command, damage):
    good = (run_copy / WEIGHTS).read_bytes()
    (run_copy / WEIGHTS).write_bytes(weights_damage(good)[damage])
    assert_fails_well(cli(*LOADERS[command](run_copy, digit_png)), WEIGHTS)


CONFIG_CASES = list(config_damage(json.loads(json.dumps({"model": {"name": "lenet5", "kwargs": {}}}))))


@pytest.mark.parametrize("damage", CONFIG_CASES)
@pytest.mark.parametrize("command", ["predict", "evaluate", "summary", "serve"])
def test_damaged_config(run_copy, digit_png, command, damage):
    good = json.loads((run_copy / CONFIG).read_text())
    (run_copy / CONFIG).write_text(config_damage(good)[damage])
    res = cli(*LOADERS[command](run_copy, digit_png))
    if command == "summary" and damage in WEIGHTS_TELL:  # summary reads no weights and no class names:
        assert res.code == 0, str(res)                    # the architecture it shows is what config.json says
        return
    assert_fails_well(res, CONFIG)


# damage only the weights (or the class names) reveal
WEIGHTS_TELL = {"num-classes-disagree", "three-classes", "classes-a-string"}


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"\x80\x02garbage"], ids=["empty", "zip", "pickle"])
def test_damaged_state_on_resume(run_copy, content):
    state = run_copy / "state" / "state.pt"
    state.write_bytes(content if content else b"")
    res = cli("train", "--out", run_copy, "--resume", "--epochs", "2", "--quiet", "--threads", "1")
    assert_fails_well(res, "state.pt", "state/")


# ---- 3. unchecked numbers ---------------------------------------------------------------------

TRAIN = ("train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--quiet")


@pytest.mark.parametrize("extra, names", [
    (("--threads", "-4"), ("--threads",)),
    (("--threads", "0"), ("--threads",)),
    (("--device", "banana"), ("--device",)),
    (("--model-arg", "bogus=1"), ("bogus", "--model-arg")),
    (("--gamma", "-1", "--schedule", "step"), ("--gamma",)),
    (("--gamma", "0"), ("--gamma",)),
    (("--step-size", "0", "--schedule", "step"), ("--step-size",)),
    (("--warmup-epochs", "-2", "--schedule", "cosine"), ("--warmup-epochs",)),
    (("--batch-size", "100000000"), ("--batch-size",)),
    (("--batch-size", "0"), ("--batch-size",)),
    (("--lr", "inf"), ("--lr",)),
    (("--lr", "nan"), ("--lr",)),
    (("--lr", "-0.1"), ("--lr",)),
    (("--epochs", "0"), ("--epochs",)),
    (("--epochs", "-3"), ("--epochs",)),
    (("--momentum", "1.5"), ("--momentum",)),
    (("--label-smoothing", "2"), ("--label-smoothing",)),
    (("--image-size", "0"), ("--image-size",)),
    (("--seed", "-1"), ("--seed",)),
])
def test_bad_numbers_in_train(tmp_path, extra, names):
    out = tmp_path / "never"
    res = cli(*TRAIN, "--out", out, *extra)
    assert_fails_well(res, *names)
    assert not (out / WEIGHTS).exists()


def test_threads_100000_does_not_segfault(tmp_path):
    res = subprocess_cli(*TRAIN, "--out", tmp_path / "x", "--threads", "100000")
    assert_fails_well(res, "--threads")


def test_device_cuda_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert_fails_well(cli(*TRAIN, "--out", tmp_path / "x", "--device", "cuda"), "--device", "cuda")


@pytest.mark.parametrize("argv, names", [
    (("predict", "{run}", "{img}", "--top", "0"), ("--top",)),
    (("predict", "{run}", "{img}", "--top", "-1"), ("--top",)),
    (("finetune", "--from", "{run}", "--data", "synthetic", "--out", "{tmp}/f", "--lr", "nan"), ("--lr",)),
    (("finetune", "--from", "{run}", "--data", "synthetic", "--out", "{tmp}/f", "--threads", "-1"), ("--threads",)),
    (("finetune", "--from", "{run}", "--data", "synthetic", "--out", "{tmp}/f", "--batch-size", "0"),
     ("--batch-size",)),
    (("evaluate", "{run}", "--device", "banana"), ("--device",)),
    (("serve", "--run", "{run}", "--threads", "100000"), ("--threads",)),
    (("serve", "--run", "{run}", "--port", "-1"), ("--port",)),
    (("transferability", "--out", "{tmp}/t", "--epochs", "0"), ("--epochs",)),
    (("transferability", "--out", "{tmp}/t", "--threads", "-4"), ("--threads",)),
    (("transfer-vs-scratch", "--source", "{run}", "--data", "synthetic", "--out", "{tmp}/t", "--shots", "0"),
     ("--shots",)),
    (("transfer-vs-scratch", "--source", "{run}", "--data", "synthetic", "--out", "{tmp}/t", "--repeats", "0"),
     ("--repeats",)),
])
def test_bad_numbers_elsewhere(finished_run, digit_png, tmp_path, argv, names):
    words = [w.format(run=finished_run, img=digit_png, tmp=tmp_path) for w in argv]
    assert_fails_well(cli(*words), *names)


# ---- 4. wrong results with exit 0 -----------------------------------------------------------

@pytest.mark.parametrize("std", [[0], [float("nan")], [float("inf")]], ids=["zero", "nan", "inf"])
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_normalisation_that_gives_nan_is_refused(run_copy, digit_png, command, std):
    cfg = json.loads((run_copy / CONFIG).read_text())
    cfg["normalization"]["std"] = std
    cfg["preprocessing"]["std"] = std
    (run_copy / CONFIG).write_text(json.dumps(cfg))
    res = cli(*LOADERS[command](run_copy, digit_png))
    assert_fails_well(res, CONFIG)
    assert "nan" not in res.out.lower()


def test_weights_holding_nan_are_refused(run_copy, digit_png):
    from safetensors.torch import load_file, save_file

    state = load_file(str(run_copy / WEIGHTS))
    key = next(iter(state))
    state[key] = state[key] * float("nan")
    save_file(state, str(run_copy / WEIGHTS))
    res = cli("predict", run_copy, digit_png, "--json")
    assert_fails_well(res, WEIGHTS)


def test_a_one_class_folder_is_not_a_dataset(tmp_path):
    for i in range(6):
        small_png((tmp_path / "data" / "only").mkdir(parents=True, exist_ok=True) or tmp_path / "data" / "only" / f"{i}.png")
    res = cli(*TRAIN[:3], "--data", f"folder:{tmp_path / 'data'}", "--epochs", "1", "--quiet", "--out", tmp_path / "r")
    assert_fails_well(res, "class")
    assert "2" in res.err


def test_evaluate_with_a_data_root_that_does_not_exist(run_copy):
    res = cli("evaluate", run_copy, "--data", "mnist", "--data-root", "/nonexistent/mnist")
    assert_fails_well(res, "/nonexistent/mnist", "--data-root")


# ---- 5. images ---------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [12000, 20000, 100000])
@pytest.mark.parametrize("command", ["predict", "activations", "saliency"])
def test_huge_images_are_refused_before_decoding(run_copy, tmp_path, command, side):
    img = tmp_path / f"bomb{side}.png"
    img.write_bytes(png_header(side, side))
    res = cli(*LOADERS[command](run_copy, img))
    assert_fails_well(res, str(img))
    assert "megapixels" in res.err, str(res)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a\x01", os.urandom(300)],
                         ids=["empty", "signature-only", "gif-stub", "random"])
def test_broken_images(run_copy, tmp_path, content):
    img = tmp_path / "broken.png"
    img.write_bytes(content)
    assert_fails_well(cli("predict", run_copy, img), str(img))


def test_a_huge_image_in_a_folder_dataset(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(3):
            small_png(tmp_path / "d" / cls / f"{i}.png")
    (tmp_path / "d" / "a" / "bomb.png").write_bytes(png_header(20000, 20000))
    res = cli(*TRAIN[:3], "--data", f"folder:{tmp_path / 'd'}", "--quiet", "--epochs", "1", "--out", tmp_path / "r")
    assert_fails_well(res, "bomb.png")


# ---- 6. output paths ---------------------------------------------------------------------------

def _out_commands(run: Path, img: Path, out: Path) -> dict[str, tuple]:
    return {
        "compare": ("compare", "alexnet", "--out", out),
        "kernels": ("kernels", run, "--out", out),
        "activations": ("activations", run, img, "--out", out),
        "saliency": ("saliency", run, img, "--out", out),
        "transfer-vs-scratch": ("transfer-vs-scratch", "--source", run, "--data", "synthetic", "--shots", "2",
                                "--epochs", "1", "--freeze-epochs", "0", "--min-epoch", "8", "--quiet", "--out", out),
        "transferability": ("transferability", "--data", "synthetic", "--epochs", "1", "--subset", "2", "--quiet",
                            "--out", out),
        "train": (*TRAIN, "--out", out),
        "evaluate": ("evaluate", run, "--split", "val", "--out", out),
    }


OUT_COMMANDS = ["compare", "kernels", "activations", "saliency", "transfer-vs-scratch", "transferability",
                "train", "evaluate"]


@pytest.mark.parametrize("command", OUT_COMMANDS)
def test_out_under_a_file(finished_run, digit_png, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / ("x.png" if command in ("compare", "kernels", "activations", "saliency") else "dir")
    res = cli(*_out_commands(finished_run, digit_png, target)[command])
    assert_fails_well(res, str(blocker))


@pytest.mark.parametrize("command", OUT_COMMANDS)
def test_out_unwritable(finished_run, digit_png, command):
    target = Path("/sys/convscope-fuzz") / ("x.png" if command in ("compare", "kernels", "activations",
                                                                    "saliency") else "dir")
    res = cli(*_out_commands(finished_run, digit_png, target)[command])
    assert_fails_well(res, "/sys/convscope-fuzz")


@pytest.mark.parametrize("command", ["compare", "kernels", "activations", "saliency"])
def test_out_without_an_extension_writes_exactly_that_or_refuses(finished_run, digit_png, tmp_path, command):
    target = tmp_path / "picture"
    res = cli(*_out_commands(finished_run, digit_png, target)[command])
    written = sorted(p.name for p in tmp_path.iterdir())
    if res.code == 0:
        assert written == ["picture"], f"{written}\n{res}"
        assert f"wrote {target}" in res.text or str(target) in res.text
    else:
        assert_fails_well(res, ".png")
        assert written == [], written


# ---- 7. misleading words ---------------------------------------------------------------------

def test_predict_on_a_folder_says_it_is_a_folder(finished_run, tmp_path):
    res = cli("predict", finished_run, tmp_path)
    assert_fails_well(res, str(tmp_path))
    assert "does not exist" not in res.err and "folder" in res.err, str(res)


def test_finetune_never_suggests_a_resume_it_lacks(finished_run, run_copy):
    res = cli("finetune", "--from", finished_run, "--data", "synthetic", "--out", run_copy, "--quiet")
    assert_fails_well(res, str(run_copy))
    assert "--resume" not in res.err, str(res)
    assert "--overwrite" in res.err


def test_the_cifar_hint_names_data_root(tmp_path):
    res = cli(*TRAIN[:3], "--data", "cifar10", "--data-root", tmp_path, "--quiet", "--out", tmp_path / "r")
    assert_fails_well(res, str(tmp_path))
    assert "--data-root" in res.err and "--root " not in res.err.replace("--data-root", ""), str(res)


def test_saliency_on_a_fully_connected_layer_names_the_conv_layers(finished_run, digit_png, tmp_path):
    res = cli("saliency", finished_run, digit_png, "--layer", "fc1", "--out", tmp_path / "s.png")
    assert_fails_well(res, "fc1")
    assert "conv1" in res.err and "shape" not in res.err, str(res)


# ---- the boundary itself ------------------------------------------------------------------------

def test_an_unexpected_error_is_one_line_with_exit_1(monkeypatch):
    import convscope.commands.models as models_cmd

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(models_cmd, "run", boom)
    res = cli("models")
    assert res.code == 1 and "Traceback" not in res.text, str(res)
    assert "internal error" in res.err and "CONVSCOPE_DEBUG=1" in res.err
    assert len(res.err.strip().splitlines()) == 1


def test_convscope_debug_shows_the_traceback(monkeypatch):
    import convscope.commands.models as models_cmd

    monkeypatch.setattr(models_cmd, "run", lambda args: 1 / 0)
    res = cli("models", env={"CONVSCOPE_DEBUG": "1"})
    assert "Traceback" in res.err and "ZeroDivisionError" in res.err


def test_ctrl_c_is_exit_130(monkeypatch):
    import convscope.commands.models as models_cmd

    def stop(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(models_cmd, "run", stop)
    res = cli("models")
    assert res.code == 130 and "Traceback" not in res.text and "interrupted" in res.err


@pytest.mark.parametrize("exc, words", [
    (lambda p: PermissionError(13, "Permission denied", str(p)), "Permission denied"),
    (lambda p: IsADirectoryError(21, "Is a directory", str(p)), "folder"),
    (lambda p: OSError(28, "No space left on device", str(p)), "space"),
    (lambda p: FileExistsError(17, "File exists", str(p)), "exists"),
])
def test_os_errors_name_the_file(monkeypatch, tmp_path, exc, words):
    import convscope.commands.models as models_cmd

    def fail(args):
        raise exc(tmp_path / "thing")

    monkeypatch.setattr(models_cmd, "run", fail)
    res = cli("models")
    assert_fails_well(res, str(tmp_path / "thing"))
    assert words in res.err


def test_argparse_errors_exit_2():
    assert_fails_well(cli("train", "--no-such-option"), "--no-such-option")
    assert_fails_well(cli("no-such-command"), "no-such-command")


def test_a_batch_larger_than_the_data_records_the_real_images_per_second(tmp_path):
    from convscope.data import get_dataset

    out = tmp_path / "big-batch"
    res = cli(*TRAIN, "--batch-size", "60000", "--threads", "1", "--out", out)
    assert res.code == 0, str(res)
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    n = len(get_dataset("synthetic").train.images)
    seen = row["images_per_second"] * row["seconds"]  # what the epoch claims it trained on
    assert seen <= n * 1.01 + 1, (seen, n)


def _raised(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the boundary's input
        return exc
    raise AssertionError("nothing was raised")


def test_the_boundary_names_a_damaged_file_that_a_library_refused(tmp_path):
    """Exceptions raised deep inside safetensors, torch.load and Pillow still name the file."""
    import torch
    from PIL import Image
    from safetensors.torch import load_file

    from convscope.cli import describe_error

    weights, state, image = tmp_path / "w.safetensors", tmp_path / "state.pt", tmp_path / "i.png"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    state.write_bytes(b"PK\x03\x04 not a zip")
    image.write_bytes(b"not an image")
    for exc, name in ((_raised(lambda: load_file(str(weights))), weights),
                      (_raised(lambda: torch.load(state, weights_only=True)), state),
                      (_raised(lambda: Image.open(image)), image)):
        code, message = describe_error(exc)
        assert code == 2 and str(name) in message, (type(exc), message)
        assert "\n" not in message
