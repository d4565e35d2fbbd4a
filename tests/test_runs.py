"""convscope.runs: one owner of a run folder, with errors that name the file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from convscope.errors import RunError
from convscope.models import create_model
from convscope.runs import (CONFIG, METRICS, WEIGHTS, RunDir, RunNotFound, atomic_write, atomic_write_json,
                            discard, load)


def _config(**model):
    return {"model": {"name": "lenet5", "kwargs": model}, "classes": [str(i) for i in range(10)],
            "input_size": [1, 28, 28]}


@pytest.fixture
def run(tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet5")
    rd = RunDir(tmp_path / "run")
    rd.save(model, _config())
    return rd, model


def test_round_trip_gives_the_same_outputs(run):
    rd, model = run
    loaded, config = load(rd.path)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert config["model"]["name"] == "lenet5" and not loaded.training
    assert rd.model_spec() == ("lenet5", {})


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_json(path, {"a": 1})

    def broken(tmp):
        with open(tmp, "w") as fh:
            fh.write("{half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left


def test_missing_folder_and_config(tmp_path):
    with pytest.raises(RunNotFound, match="no run folder"):
        RunDir(tmp_path / "nope").read_config()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        RunDir(tmp_path / "empty").load()


@pytest.mark.parametrize("text, what", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON list"),
    ('"lenet5"', "JSON str"),
    ('{"classes": ["a"]}', "names no model"),
    ('{"model": {"name": "lenet5", "kwargs": [1]}}', "must be an object"),
])
def test_bad_configs_name_the_file(run, text, what):
    rd, _ = run
    rd.config_path.write_text(text)
    with pytest.raises(RunError, match=what) as info:
        rd.load()
    assert str(rd.config_path) in str(info.value)


def test_config_model_may_be_a_plain_name(run):
    rd, _ = run
    rd.config_path.write_text(json.dumps(dict(_config(), model="lenet5")))
    assert rd.model_spec() == ("lenet5", {})
    rd.load()


def test_builder_kwargs_rejected_name_the_file(run):
    rd, _ = run
    rd.config_path.write_text(json.dumps(_config(bogus=1)))
    with pytest.raises(RunError, match="does not take (the kwargs|bogus)") as info:
        rd.load()
    assert CONFIG in str(info.value)


def _header_only(path):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return data[:8 + n]


@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "header-only"])
def test_damaged_weights_name_the_file(run, damage):
    rd, _ = run
    data = rd.weights_path.read_bytes()
    new = {"empty": b"", "truncated": data[: len(data) // 2], "random": os.urandom(4096),
           "header-only": _header_only(rd.weights_path)}[damage]
    rd.weights_path.write_bytes(new)
    with pytest.raises(RunError) as info:
        rd.load()
    assert WEIGHTS in str(info.value) and ("retrain" in str(info.value))


def test_missing_weights_says_what_to_do(run):
    rd, _ = run
    rd.weights_path.unlink()
    with pytest.raises(RunNotFound, match="did not finish its first epoch.*--resume"):
        rd.load()


def test_num_classes_disagreeing_with_the_weights(run):
    rd, _ = run
    rd.config_path.write_text(json.dumps(dict(_config(num_classes=5), classes=list("abcde"))))
    with pytest.raises(RunError, match="num_classes") as info:
        rd.load()
    assert WEIGHTS in str(info.value)


def test_class_names_must_match_the_outputs(run):
    rd, _ = run
    rd.config_path.write_text(json.dumps(dict(_config(), classes=["a", "b", "c"])))
    with pytest.raises(RunError, match="names 3 classes but its model has 10 outputs"):
        rd.load()


def test_history_append_read_write(tmp_path):
    rd = RunDir(tmp_path)
    assert rd.read_history() == []
    rd.append_history({"epoch": 1, "val_top1": 0.5})
    rd.append_history({"epoch": 2, "val_top1": 0.7})
    assert [r["epoch"] for r in rd.read_history()] == [1, 2]
    assert len(rd.metrics_path.read_text().splitlines()) == 2
    rd.write_history([{"epoch": 9}])
    assert rd.read_history() == [{"epoch": 9}]
    rd.metrics_path.write_text('{"epoch": 1}\n{oops\n')
    with pytest.raises(RunError, match=f"{METRICS} line 2"):
        rd.read_history()


def test_check_out(tmp_path, run):
    rd, _ = run
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        RunDir(tmp_path / "new").check_out(resume=True, overwrite=False)
    with pytest.raises(RunError, match="already holds a run.*--overwrite"):
        rd.check_out(resume=False, overwrite=False)
    rd.check_out(resume=False, overwrite=True)
    rd.check_out(resume=True, overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file"):
        RunDir(tmp_path / "file").check_out(resume=False, overwrite=False)


def test_lock_stops_a_second_writer(tmp_path):
    rd = RunDir(tmp_path / "run")
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from convscope.runs import RunDir\n"
            "with RunDir(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(600)\n")
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    proc = subprocess.Popen([sys.executable, "-c", code, str(rd.path), src], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunError, match=f"another process \\(pid {proc.pid}"):
            with rd.lock():
                pass
    finally:
        proc.kill()
        proc.wait()
    with rd.lock():  # the holder is dead: its lock is stale and taken over
        assert rd.lock_path.read_text().strip() == str(os.getpid())
        with pytest.raises(RunError, match="another process"):  # a second writer in this process too
            with rd.lock():
                pass
    assert not rd.lock_path.exists()


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    rd = RunDir(tmp_path)
    rd.lock_path.write_text(f"{_dead_pid()}\n")
    with rd.lock():
        assert rd.lock_path.read_text().strip() == str(os.getpid())
    rd.lock_path.write_text("")  # a lock just created, its pid not yet written: held
    with pytest.raises(RunError, match="being written by another process"):
        with rd.lock():
            pass
    old = time.time() - 60
    os.utime(rd.lock_path, (old, old))  # an empty lock a minute old: a writer that died at once
    with rd.lock():
        pass


def test_set_aside_restore_and_discard(run):
    rd, model = run
    rd.append_history({"epoch": 1})
    before = rd.weights_path.read_bytes()
    aside = rd.set_aside()
    assert not rd.exists() and (aside / WEIGHTS).is_file()
    rd.write_config(_config())            # a new run starts writing...
    rd.restore(aside)                      # ...and fails before its first checkpoint
    assert rd.weights_path.read_bytes() == before and rd.read_history() == [{"epoch": 1}]
    assert not list(rd.path.glob(".previous-*"))
    aside = rd.set_aside()
    discard(aside)
    assert not aside.exists() and not rd.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_overwrite_is_recovered(run):
    rd, _ = run
    before = rd.weights_path.read_bytes()
    aside = rd.set_aside()
    killed = aside.with_name(aside.name.rsplit("-", 1)[0] + f"-{_dead_pid()}")
    aside.rename(killed)                    # as a SIGKILLed --overwrite leaves it: no checkpoint yet
    with pytest.raises(RunError, match="already holds a run"):
        rd.check_out(resume=False, overwrite=False)
    assert rd.weights_path.read_bytes() == before and not killed.exists()
    aside = rd.set_aside()
    killed = aside.with_name(aside.name.rsplit("-", 1)[0] + f"-{_dead_pid()}")
    aside.rename(killed)
    rd.save(create_model("lenet5"), _config())  # this time the new run did write a checkpoint
    rd.check_out(resume=True, overwrite=False)
    assert not killed.exists() and rd.weights_path.read_bytes() != before
