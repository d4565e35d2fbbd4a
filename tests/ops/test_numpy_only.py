"""convscope.ops and convscope.geometry must never import torch (they are the NumPy reference)."""
from __future__ import annotations

import subprocess
import sys


def test_ops_and_geometry_do_not_import_torch():
    code = ("import sys, convscope.ops, convscope.geometry; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch'); "
            "assert not bad, bad; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
