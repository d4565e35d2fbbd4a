"""Shared cases and the engine adapter for the parity tests; Node is required, never skipped."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
STATIC = HERE.parents[1] / "src" / "convscope" / "web" / "static"
NODE_MISSING = ("Node.js is not installed: the page's JavaScript is tested under Node. "
                "As root run: apt-get install -y nodejs (scripts/bootstrap.sh does it)")


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, HERE / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


CASES = _load("parity_cases", "cases.py")
ENGINE = _load("parity_engine", "_engine.py")


@pytest.fixture(scope="session")
def cases():
    return CASES


@pytest.fixture(scope="session")
def engine_api():
    return ENGINE


def node() -> str:
    """The node binary; a missing one FAILS the test with the install line."""
    path = shutil.which("node")
    if path is None:
        pytest.fail(NODE_MISSING, pytrace=False)
    return path


@pytest.fixture(scope="session")
def run_page():
    """run_page(jobs) -> answers: tests/parity/page.js over the page's own scripts."""
    exe = node()

    def run(jobs: list[dict[str, Any]]) -> list[Any]:
        res = subprocess.run([exe, str(HERE / "page.js"), str(STATIC)], input=json.dumps(jobs),
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout)

    return run


@pytest.fixture(scope="session")
def engines():
    """{network name: (case, engine)} built once: random weights from the cases' seed."""
    return {n.name: (n, ENGINE.build_engine(n.model(), n.config)) for n in CASES.NETWORKS}
