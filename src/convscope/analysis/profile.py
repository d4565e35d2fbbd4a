"""Time per layer: measured forward (and backward) milliseconds of every summary row.

MACs do not predict time: a depthwise convolution does few MACs but reads and
writes as much memory as a full one, and batch norm, activations, pooling and
concatenation cost time while doing no MACs at all. `profile()` puts the two
side by side.

How it is measured, without hooks of its own: the summary's tracker (the
TorchDispatchMode that turns a forward pass into rows, `_tracker.Tracker`) is
run on the real model with real tensors, and each aten operation it sees is
timed around the call itself, so the rows are exactly the summary's rows and
the tracker's own bookkeeping is not counted. Backward: a TorchFunctionMode
notes which row created each autograd node during that forward, and the
backward pass times each node from its pre-hook to its post-hook (autograd
node hooks, not module hooks). On CUDA every timed op is synchronised.

The clock: on the CPU with one torch thread, the thread's CPU time
(`time.thread_time`), which other processes on a shared machine do not
inflate (a descheduled thread's wall-clock keeps running); with more threads,
or on CUDA, wall-clock time (`time.perf_counter`). `clock=` chooses.

Each repeat times one plain forward (no tracker: the end-to-end figure) and
then one tracked forward; medians over the repeats are reported. The rows add
up to less than the end-to-end time by the Python work between operations
(module calls, argument handling), which is the check: within 15% on the
zoo's networks (benchmarks/layer_profile.py, docs/benchmarks.md).
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from convscope.analysis._tracker import RawRow, Tracker
from convscope.analysis.summary import Summary, _number_repeats, parse_input_size, summary


@dataclass
class Profile:
    summary: Summary
    forward_ms: list[float | None]        # one per summary row (None for the input row)
    backward_ms: list[float | None] | None
    end_to_end_ms: float
    end_to_end_backward_ms: float | None
    device: str
    batch_size: int
    repeats: int
    threads: int
    clock: str = "wall"                   # "cpu": the thread's CPU time; "wall": perf_counter

    @property
    def rows_forward_ms(self) -> float:
        return sum(v for v in self.forward_ms if v)

    @property
    def rows_backward_ms(self) -> float | None:
        return None if self.backward_ms is None else sum(v for v in self.backward_ms if v)

    def to_dict(self) -> dict[str, Any]:
        d = self.summary.to_dict()
        for i, row in enumerate(d["rows"]):
            row["forward_ms"] = self.forward_ms[i]
            row["ns_per_mac"] = (1e6 * self.forward_ms[i] / (row["macs"] * self.batch_size)
                                 if row["macs"] and self.forward_ms[i] is not None else None)
            if self.backward_ms is not None:
                row["backward_ms"] = self.backward_ms[i]
        d.update(end_to_end_ms=self.end_to_end_ms, rows_forward_ms=self.rows_forward_ms,
                 forward_ratio=self.rows_forward_ms / self.end_to_end_ms, device=self.device,
                 batch_size=self.batch_size, repeats=self.repeats, threads=self.threads, clock=self.clock,
                 timing="medians over repeats; rows: the aten ops of each row, timed one by one")
        if self.backward_ms is not None:
            d.update(end_to_end_backward_ms=self.end_to_end_backward_ms, rows_backward_ms=self.rows_backward_ms)
        return d

    def __str__(self) -> str:
        from convscope.analysis.profile_table import render

        return render(self)


_CLOCK = {"cpu": time.thread_time, "wall": time.perf_counter}
_now = time.perf_counter  # set by profile() for the duration of a measurement


def _choose_clock(clock: str, device: torch.device) -> str:
    if clock not in ("auto", "cpu", "wall"):
        raise ValueError(f"clock {clock!r}: choose auto, cpu or wall")
    if clock == "auto":
        return "cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    if clock == "cpu" and device.type == "cuda":
        raise ValueError("the cpu clock cannot time CUDA kernels; use clock='wall' with --device cuda")
    return clock


class _Timed:
    """An aten op that times its own call; every other attribute is the op's."""

    def __init__(self, func: Any, sync: bool) -> None:
        self.func, self.sync, self.seconds = func, sync, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.func, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.sync:
            torch.cuda.synchronize()
        t0 = _now()
        out = self.func(*args, **kwargs)
        if self.sync:
            torch.cuda.synchronize()
        self.seconds = _now() - t0
        return out


class _TimingTracker(Tracker):
    """The summary's tracker, with the time of each op added to the row it belongs to."""

    def __init__(self, model: nn.Module, x: torch.Tensor, sync: bool) -> None:
        super().__init__(model, x)
        self.sync = sync
        self.seconds: dict[int, float] = defaultdict(float)
        self.unattributed = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        _, row = self.current()
        n = len(self.rows)
        timed = _Timed(func, self.sync)
        out = super().__torch_dispatch__(timed, types, args, kwargs)
        target = self.rows[-1] if len(self.rows) > n else row  # a new row: an op of its own
        if target is not None:
            self.seconds[id(target)] += timed.seconds
        else:
            self.unattributed += timed.seconds
        return out

    def row_owning(self, before: int) -> RawRow | None:
        return self.rows[-1] if len(self.rows) > before else self.current()[1]


class _NodeOwners(TorchFunctionMode):
    """Which row made each autograd node (so backward time can be given to rows)."""

    def __init__(self, tracker: _TimingTracker) -> None:
        super().__init__()
        self.tracker = tracker
        self.owner: dict[Any, RawRow] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        n = len(self.tracker.rows)
        out = func(*args, **(kwargs or {}))
        row = self.tracker.row_owning(n)
        if row is not None:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor) and t.grad_fn is not None and t.grad_fn not in self.owner:
                    self.owner[t.grad_fn] = row
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = _now()
    fn()
    _sync(device)
    return 1e3 * (_now() - t0)


def _time_nodes(owners: dict[Any, RawRow], device: torch.device) -> dict[int, float]:
    """Register pre/post hooks on each owned node; returns the dict they fill (row id -> ms)."""
    spent: dict[int, float] = defaultdict(float)
    for node, row in owners.items():
        start = [0.0]

        def pre(grad_outputs, start=start):
            _sync(device)
            start[0] = _now()

        def post(grad_inputs, grad_outputs, start=start, key=id(row)):
            _sync(device)
            spent[key] += 1e3 * (_now() - start[0])

        node.register_prehook(pre)
        node.register_hook(post)
    return spent


def _tracked_pass(model: nn.Module, x: torch.Tensor, backward: bool) -> tuple[list[RawRow], dict, dict | None]:
    sync = x.device.type == "cuda"
    tracker = _TimingTracker(model, x, sync)
    owners = _NodeOwners(tracker)
    try:
        with torch.set_grad_enabled(backward), tracker:
            if backward:
                with owners:
                    out = model(x)
            else:
                out = model(x)
    finally:
        tracker.remove()
    fwd = {k: 1e3 * v for k, v in tracker.seconds.items()}
    bwd = None
    if backward:
        spent = _time_nodes(owners.owner, x.device)
        _first(out).float().sum().backward()
        bwd = dict(spent)
        model.zero_grad(set_to_none=True)
    _number_repeats(tracker.rows)
    return tracker.rows, fwd, bwd


def _first(out: Any) -> torch.Tensor:
    from convscope.predictor import main_logits

    return main_logits(out)


def _plain_pass(model: nn.Module, x: torch.Tensor, backward: bool) -> tuple[float, float | None]:
    if not backward:
        with torch.no_grad():
            return _timed(lambda: model(x), x.device), None
    holder = {}
    fwd = _timed(lambda: holder.setdefault("out", model(x)), x.device)
    bwd = _timed(lambda: _first(holder["out"]).float().sum().backward(), x.device)
    model.zero_grad(set_to_none=True)
    return fwd, bwd


def profile(model: nn.Module | str, input_size: Sequence[int] | str | None = None, *, backward: bool = False,
            device: str | torch.device = "cpu", batch_size: int = 1, repeats: int = 10,
            warmup: int = 2, clock: str = "auto") -> Profile:
    """Time every summary row of `model` (a module with weights, or a registered name with random ones)."""
    global _now
    if isinstance(model, str):
        from convscope.models import create_model

        model = create_model(model)
    s = summary(model, input_size)
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"batch size {batch_size} and repeats {repeats} must be at least 1, warm-up {warmup} >= 0")
    chosen = _choose_clock(clock, dev)
    flags = {m: m.training for m in model.modules()}
    model.to(dev).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch_size, *parse_input_size(s.input_size)), generator=gen).to(dev)
    _now = _CLOCK[chosen]
    try:
        result = _measure(model, s, x, backward, repeats, warmup)
        result.clock = chosen
        return result
    finally:
        _now = time.perf_counter
        for m, flag in flags.items():
            m.training = flag
        model.zero_grad(set_to_none=True)


def _measure(model: nn.Module, s: Summary, x: torch.Tensor, backward: bool, repeats: int,
             warmup: int) -> Profile:
    fwd_runs: list[list[float]] = []
    bwd_runs: list[list[float]] = []
    e2e, e2e_b = [], []
    for i in range(warmup + repeats):
        f, b = _plain_pass(model, x, backward)
        rows, fwd, bwd = _tracked_pass(model, x, backward)
        names = [r.name for r in rows]
        if names != [r.name for r in s.rows[1:]]:
            raise RuntimeError(f"the timed forward ran other layers than the summary "
                               f"({len(names)} rows vs {len(s.rows) - 1})")
        if i < warmup:
            continue
        e2e.append(f)
        fwd_runs.append([fwd.get(id(r), 0.0) for r in rows])
        if backward:
            e2e_b.append(b)
            bwd_runs.append([bwd.get(id(r), 0.0) for r in rows])
    med = lambda runs: [None] + [statistics.median(col) for col in zip(*runs)]  # noqa: E731
    return Profile(summary=s, forward_ms=med(fwd_runs), backward_ms=med(bwd_runs) if backward else None,
                   end_to_end_ms=statistics.median(e2e),
                   end_to_end_backward_ms=statistics.median(e2e_b) if backward else None,
                   device=str(x.device), batch_size=x.shape[0], repeats=repeats, threads=torch.get_num_threads())
