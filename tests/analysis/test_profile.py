"""Time per layer: the rows are the summary's, they add up to the end-to-end time, and the time
lands on the layer that spends it."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from convscope.analysis import summary
from convscope.analysis.profile import profile
from convscope.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("resnet18", "3x64x64"), ("mobilenet_v1", "3x64x64"),
                                        ("vgg11", "3x32x32")])
def test_rows_add_up_to_the_end_to_end_forward(name, size):
    p = profile(name, size, repeats=3, warmup=1)
    assert [r.name for r in p.summary.rows] == [r.name for r in summary(name, size).rows]
    assert p.forward_ms[0] is None and all(v is not None and v >= 0 for v in p.forward_ms[1:])
    assert p.rows_forward_ms == pytest.approx(p.end_to_end_ms, rel=0.15), (p.rows_forward_ms, p.end_to_end_ms)


@pytest.mark.slow
def test_backward_rows_add_up_to_the_end_to_end_backward():
    p = profile("resnet18", "3x32x32", backward=True, repeats=3, warmup=1)
    assert p.rows_forward_ms == pytest.approx(p.end_to_end_ms, rel=0.15)
    assert p.rows_backward_ms == pytest.approx(p.end_to_end_backward_ms, rel=0.15)
    convs = [b for r, b in zip(p.summary.rows, p.backward_ms) if r.kind == "Conv2d"]
    assert all(b > 0 for b in convs)  # every conv's backward node was timed


class Busy(nn.Module):
    """No MACs at all, but 300 elementwise passes: time that a MAC count cannot see."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(300):
            x = torch.sin(x)
        return x


def test_time_lands_on_the_row_that_spends_it():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Busy(), nn.Conv2d(8, 8, 1))
    p = profile(model, (3, 64, 64), repeats=3, warmup=1)
    rows = {r.name: (r, ms) for r, ms in zip(p.summary.rows, p.forward_ms)}
    busy, busy_ms = rows["1"]
    assert busy.macs == 0 and busy.other_ops > 0
    assert busy_ms > 0.8 * p.rows_forward_ms
    assert rows["0"][0].macs > 0 and rows["0"][1] < busy_ms / 10
    assert all(m.training for m in model.modules())  # train/eval flags restored
    assert all(q.grad is None for q in model.parameters())


def test_cli_json_rows_carry_forward_and_backward_ms(capsys):
    assert main(["summary", "lenet5", "--profile", "--backward", "--repeats", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"end_to_end_ms", "end_to_end_backward_ms", "total_macs"} <= d.keys()
    rows = d["rows"][1:]
    assert all({"forward_ms", "backward_ms", "macs"} <= r.keys() for r in rows)
    assert sum(r["forward_ms"] for r in rows) == pytest.approx(d["rows_forward_ms"])
    assert main(["summary", "lenet5", "--profile", "--repeats", "2"]) == 0
    text = capsys.readouterr().out
    assert "Forward ms" in text and "ns/MAC" in text and "bias adds, activations" in text
    assert "pooling" in text and "end-to-end forward" in text
    assert main(["summary", "lenet5", "--backward"]) == 2
    assert main(["summary", "lenet5", "--profile", "--device", "cuda" if not torch.cuda.is_available() else "x"]) == 2
