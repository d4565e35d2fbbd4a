"""SIGKILL mid-epoch, then --resume: the same final weights as a run never interrupted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import torch
from safetensors.torch import load_file

from convscope.train import train

KW = dict(data="synthetic", epochs=3, batch_size=64, lr=0.05, progress=False)

# The child builds lenet5 exactly as train() does (seed 0, then create_model) and
# kills itself with SIGKILL during the 45th training forward pass: epoch 2, step 15.
CHILD = textwrap.dedent("""
    import os, signal, sys, torch
    from convscope.models import create_model
    from convscope.train import train
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_chans=1, dropout=0.3)
    n = {"calls": 0}
    def hook(module, args, output):
        if module.training:
            n["calls"] += 1
            if n["calls"] == 45:
                os.kill(os.getpid(), signal.SIGKILL)
    model.register_forward_hook(hook)
    train(model=model, model_kwargs={"dropout": 0.3}, out=sys.argv[1], **KW)
""")


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    ref = train(model="lenet5", model_kwargs={"dropout": 0.3}, out=tmp_path / "ref", **KW)
    cut = tmp_path / "cut"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", f"KW = {KW!r}\n" + CHILD, str(cut)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    rows = (cut / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1]  # epoch 2 was lost, epoch 1 kept
    assert torch.load(cut / "state" / "state.pt", weights_only=True)["epoch"] == 1
    train(out=cut, resume=True, progress=False)
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [json.loads(r)["epoch"] for r in (cut / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
