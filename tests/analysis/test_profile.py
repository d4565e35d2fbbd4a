"""Time per layer: the rows are the summary's, each op's time lands on the row that ran it, and the
figures add up exactly where they are defined to.

No test here asserts how long anything took or how two times compare: on a busy machine that is
noise, not behaviour. The timing claims (the rows add up to the end-to-end time within 15%; a
layer of elementwise passes takes the forward's time) are measured by `benchmarks/layer_profile.py`
(docs/benchmarks.md). Here the clock is replaced by one that advances exactly one second per
reading, so a row's time is its count of timed operations: an oracle known by construction.
"""
from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from convscope.analysis import profile as profile_module
from convscope.analysis import summary
from convscope.analysis.profile import profile
from convscope.cli import main

TICK_MS = 1000.0  # one reading of the ticking clock: one second


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def ticking(monkeypatch):
    """clock='cpu' reads a counter: every timed op or autograd node spans exactly one tick."""
    counter = itertools.count()
    monkeypatch.setitem(profile_module._CLOCK, "cpu", lambda: float(next(counter)))
    return "cpu"


class Busy(nn.Module):
    """No MACs at all, but 300 elementwise passes: work that a MAC count cannot see."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(300):
            x = torch.sin(x)
        return x


def _by_name(p):
    return {r.name: i for i, r in enumerate(p.summary.rows)}


def test_each_op_lands_on_the_row_that_ran_it(ticking):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Busy(), nn.Conv2d(8, 8, 1))
    p = profile(model, (3, 16, 16), backward=True, repeats=2, warmup=1, clock=ticking)
    row = _by_name(p)
    busy = p.summary.rows[row["1"]]
    assert busy.macs == 0 and busy.other_ops > 0
    # 300 torch.sin calls forward, 300 SinBackward nodes backward; one convolution op and node each
    assert p.forward_ms[row["1"]] == 300 * TICK_MS and p.backward_ms[row["1"]] == 300 * TICK_MS
    for conv in ("0", "2"):
        assert p.forward_ms[row[conv]] == TICK_MS and p.backward_ms[row[conv]] == TICK_MS
    assert p.rows_forward_ms == 302 * TICK_MS and p.rows_backward_ms == 302 * TICK_MS
    # the plain (untracked) pass reads the clock once before and once after: one tick
    assert p.end_to_end_ms == TICK_MS and p.end_to_end_backward_ms == TICK_MS
    assert p.clock == "cpu" and p.repeats == 2 and p.batch_size == 1
    assert all(m.training for m in model.modules())  # train/eval flags restored
    assert all(q.grad is None for q in model.parameters())
    assert profile_module._now is profile_module.time.perf_counter  # the module clock put back


@pytest.mark.slow  # vgg11's 130M random weights take seconds to initialise on a busy core
@pytest.mark.parametrize("name, size", [("resnet18", "3x64x64"), ("mobilenet_v1", "3x64x64"),
                                        ("vgg11", "3x32x32")])
def test_zoo_rows_are_the_summary_rows_and_every_layer_is_timed(ticking, name, size):
    p = profile(name, size, repeats=1, warmup=0, clock=ticking)
    s = summary(name, size)
    assert [(r.name, r.kind) for r in p.summary.rows] == [(r.name, r.kind) for r in s.rows]
    assert p.forward_ms[0] is None and len(p.forward_ms) == len(s.rows)
    # every row's time is a whole number of ticks (ops), and every conv and linear row ran >= 1 op
    assert all(v is not None and v >= 0 and v % TICK_MS == 0 for v in p.forward_ms[1:])
    assert all(v >= TICK_MS for r, v in zip(p.summary.rows, p.forward_ms) if r.kind in ("Conv2d", "Linear"))
    assert p.rows_forward_ms == sum(p.forward_ms[1:])


def test_every_conv_backward_node_is_timed(ticking):
    p = profile("resnet18", "3x32x32", backward=True, repeats=1, warmup=0, clock=ticking)
    convs = [b for r, b in zip(p.summary.rows, p.backward_ms) if r.kind == "Conv2d"]
    assert len(convs) == 20 and all(b == TICK_MS for b in convs)  # one ConvolutionBackward0 node each
    assert p.backward_ms[0] is None and all(b >= 0 for b in p.backward_ms[1:])
    assert p.rows_backward_ms == sum(p.backward_ms[1:])


def test_the_real_clock_gives_non_negative_rows_that_add_up_exactly():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1))
    p = profile(model, (3, 16, 16), backward=True, repeats=2, warmup=0)
    assert p.clock == "cpu"  # one torch thread on the CPU: the thread's CPU time
    assert p.forward_ms[0] is None and all(v >= 0 for v in p.forward_ms[1:])
    assert p.backward_ms[0] is None and all(v >= 0 for v in p.backward_ms[1:])
    assert p.end_to_end_ms >= 0 and p.end_to_end_backward_ms >= 0
    d = p.to_dict()
    assert d["rows_forward_ms"] == sum(p.forward_ms[1:]) == p.rows_forward_ms
    assert d["rows_backward_ms"] == sum(p.backward_ms[1:])
    if p.end_to_end_ms:
        assert d["forward_ratio"] == p.rows_forward_ms / p.end_to_end_ms
    conv = d["rows"][1]
    assert conv["ns_per_mac"] == 1e6 * conv["forward_ms"] / (conv["macs"] * p.batch_size)
    with pytest.raises(ValueError, match="clock 'sundial'"):
        profile(model, (3, 16, 16), clock="sundial")


def test_cli_json_rows_carry_forward_and_backward_ms(capsys):
    assert main(["summary", "lenet5", "--profile", "--backward", "--repeats", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"end_to_end_ms", "end_to_end_backward_ms", "total_macs", "forward_ratio", "clock"} <= d.keys()
    rows = d["rows"][1:]
    assert all({"forward_ms", "backward_ms", "macs"} <= r.keys() for r in rows)
    assert all(r["forward_ms"] >= 0 and r["backward_ms"] >= 0 for r in rows)
    # JSON floats round-trip exactly, and the totals are plain sums of the rows in order
    assert sum(r["forward_ms"] for r in rows) == d["rows_forward_ms"]
    assert sum(r["backward_ms"] for r in rows) == d["rows_backward_ms"]
    assert main(["summary", "lenet5", "--profile", "--repeats", "2"]) == 0
    text = capsys.readouterr().out
    assert "Forward ms" in text and "ns/MAC" in text and "bias adds, activations" in text
    assert "pooling" in text and "end-to-end forward" in text
    assert main(["summary", "lenet5", "--backward"]) == 2
    assert main(["summary", "lenet5", "--profile", "--device", "cuda" if not torch.cuda.is_available() else "x"]) == 2
