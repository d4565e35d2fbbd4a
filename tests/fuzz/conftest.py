"""The fuzz suite's tools: run `convscope.cli.main` in this process, one tiny finished run.

`cli(*argv)` calls the real entry point with stdout and stderr captured and
returns what a user would see (exit status, stdout, stderr). An exception that
escapes `main` is recorded as the traceback a user would have seen, so a test
can assert that no case ever shows one.

`finished_run` is one lenet5 trained for one epoch on the synthetic set (a few
seconds), shared by the whole session; tests that damage a run use
`run_copy`, a fresh copy of it.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass
class Result:
    code: int
    out: str
    err: str
    argv: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return self.out + self.err

    def __str__(self) -> str:
        return f"$ convscope {' '.join(self.argv)}\nexit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def cli(*argv: object, env: dict[str, str] | None = None) -> Result:
    """`convscope ARGV...` in this process."""
    import torch

    from convscope.cli import main

    words = tuple(str(a) for a in argv)
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _no_serving():
            try:
                code = main(list(words))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except Served:
                err.write("(it started serving instead of refusing)\n")
                code = -2
            except BaseException:  # what the user would have seen: a traceback
                err.write(traceback.format_exc())
                code = -1
    finally:
        torch.set_num_threads(threads)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Result(int(code if code is not None else 0), out.getvalue(), err.getvalue(), words)


class Served(BaseException):
    """`convscope serve` got as far as serving: in a test of bad input that is a failure."""


@contextlib.contextmanager
def _no_serving():
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    def serve(*args, **kwargs):
        raise Served

    saved = uvicorn.Server.run, Multiprocess.run
    uvicorn.Server.run = Multiprocess.run = serve
    try:
        yield
    finally:
        uvicorn.Server.run, Multiprocess.run = saved


def subprocess_cli(*argv: object, timeout: float = 300) -> Result:
    """`python -m convscope ARGV...` in a child process: for cases that could kill this one."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    words = tuple(str(a) for a in argv)
    proc = subprocess.run([sys.executable, "-m", "convscope", *words], capture_output=True, text=True,
                          env=env, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr, words)


def assert_fails_well(res: Result, *names: str, code: int = 2) -> None:
    """Exit `code`, no traceback, and a message that names one of `names` (an argument or file)."""
    assert res.code == code, str(res)
    assert "Traceback" not in res.text, str(res)
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert lines, str(res)
    if names:
        assert any(n in res.err for n in names), f"the message names none of {names}:\n{res}"


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (relative path -> digest)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    res = cli("train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--batch-size", "64",
              "--threads", "1", "--quiet", "--out", out)
    assert res.code == 0, str(res)
    return out


@pytest.fixture()
def run_copy(finished_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(finished_run, dst)
    return dst


@pytest.fixture(scope="session")
def digit_png(tmp_path_factory) -> Path:
    import numpy as np
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "digit.png"
    a = np.zeros((28, 28), dtype=np.uint8)
    a[6:22, 12:16] = 255
    Image.fromarray(a).save(path)
    return path
