"""The run folder under train and finetune: --overwrite keeps the old run until the new one
has a checkpoint, one writer at a time, clear words for a run that cannot be resumed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from convscope.errors import RunError
from convscope.runs import RunDir
from convscope.train import TrainingDiverged, train

FAST = dict(model="lenet5", data="synthetic", epochs=1, batch_size=64, lr=0.05, progress=False)


@pytest.fixture
def finished(tmp_path):
    return train(out=tmp_path / "run", **FAST)


def _files(run):
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_diverging_overwrite_leaves_the_finished_run_intact(finished):
    before = _files(finished)
    with pytest.raises(TrainingDiverged):
        train(out=finished, overwrite=True, **dict(FAST, lr=100))  # the highest lr limits.LIMITS allows
    assert _files(finished) == before


def test_diverging_finetune_overwrite_leaves_the_run_intact(tmp_path, finished):
    from convscope.transfer import finetune

    target = train(out=tmp_path / "target", **FAST)
    before = _files(target)
    with pytest.raises(TrainingDiverged):
        finetune(finished, "synthetic", target, overwrite=True, epochs=1, lr=1e30, batch_size=64, progress=False)
    assert _files(target) == before
    finetune(finished, "synthetic", target, overwrite=True, epochs=1, batch_size=64, progress=False)
    rows = RunDir(target).read_history()
    assert [(r["epoch"], r["phase"]) for r in rows] == [(1, "head"), (2, "all")]
    assert not (target / "phase1-head").exists() and not list(target.glob(".previous-*"))


def test_successful_overwrite_replaces_the_run_and_deletes_the_old(finished):
    old = load_file(str(finished / "model.safetensors"))
    train(out=finished, overwrite=True, seed=1, **FAST)
    new = load_file(str(finished / "model.safetensors"))
    assert not torch.equal(old["conv1.weight"], new["conv1.weight"])
    assert not list(finished.glob(".previous-*")) and not (finished / ".lock").exists()
    assert [r["epoch"] for r in RunDir(finished).read_history()] == [1]


def test_a_second_writer_gets_a_clear_error(finished):
    code = ("import sys, time; from convscope.runs import RunDir\n"
            "with RunDir(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(600)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", code, str(finished)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "locked"
        before = _files(finished)
        with pytest.raises(RunError, match=rf"being written by another process \(pid {proc.pid}"):
            train(out=finished, resume=True, epochs=2, progress=False)
        with pytest.raises(RunError, match="another process"):
            train(out=finished, overwrite=True, **FAST)
        assert {k: v for k, v in _files(finished).items() if k != ".lock"} == \
            {k: v for k, v in before.items() if k != ".lock"}
    finally:
        proc.kill()
        proc.wait()
    train(out=finished, resume=True, epochs=2, progress=False)  # the dead holder's lock is stale: taken over
    assert [r["epoch"] for r in RunDir(finished).read_history()] == [1, 2]


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated"])
def test_damaged_resume_state_names_the_file(finished, damage):
    (finished / "state" / "state.pt").write_bytes(damage)
    with pytest.raises(RunError, match=r"state/state.pt .*--overwrite instead of --resume"):
        train(out=finished, resume=True, epochs=2, progress=False)


def test_a_run_without_state_says_to_overwrite(finished):
    (finished / "state" / "state.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"state/state.pt is missing.*--overwrite instead of --resume"):
        train(out=finished, resume=True, epochs=2, progress=False)
