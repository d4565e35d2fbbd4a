"""torchrun with 2 processes (gloo) against 1 process with the same global batch.

Tolerance: the 2-process run averages two half-batch gradients where the
1-process run takes one mean over the whole batch, so the weights differ only
by float32 rounding, compounded over the 30 SGD steps of one epoch: we allow
1e-4 absolute (typical weights are ~0.1; a wrong shard or a missing gradient
average moves them by 1e-2 or more).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import torch
from safetensors.torch import load_file

from convscope.train import train


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    ddp = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as s:  # a free port for the rendezvous (port 0 hangs torchrun's static one)
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", port,
           "-m", "convscope", "train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1",
           "--batch-size", "64", "--lr", "0.05", "--augment", "digits", "--out", str(ddp), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks: leave nothing running
        _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    one = train(model="lenet5", data="synthetic", out=tmp_path / "one", epochs=1, batch_size=64, lr=0.05,
                augment="digits", progress=False)
    a, b = load_file(str(one / "model.safetensors")), load_file(str(ddp / "model.safetensors"))
    diffs = {k: (a[k] - b[k]).abs().max().item() for k in a}
    assert max(diffs.values()) < 1e-4, diffs
    # and not trivially: training moved the weights far more than the tolerance
    torch.manual_seed(0)
    from convscope.models import create_model

    init = create_model("lenet5").state_dict()
    assert (init["conv1.weight"] - a["conv1.weight"]).abs().max().item() > 1e-2
