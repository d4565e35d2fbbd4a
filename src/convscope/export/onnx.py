"""ONNX export: the model (and, on request, every shown layer) as one .onnx file, checked.

    export_onnx(model, "model.onnx", (1, 28, 28), all_layers=True) -> ExportResult

The graph has one input, "input" (N, C, H, W) with a dynamic batch axis N, and
the output "logits" (N, K). With `all_layers` every shown layer's output (a
conv, pool, linear, batch-norm, LRN or activation module, the layers the
explorer draws) is an extra graph output named by its module name
(`model.named_modules()`), in the order the forward pass reaches them.

Every export is checked before it is written: onnxruntime runs the file on
random inputs of the model's size (a batch of 3, so the dynamic axis is
exercised at a size other than the traced one) and every output must equal
torch's within `TOLERANCE`: absolute for outputs whose values stay within
[-1, 1], relative to the output's largest magnitude beyond that (float32 keeps
7 digits: a randomly initialised ResNet-152 reaches 1e7 in layer4, where no
runtime agrees to 1e-4 absolute). The file is written atomically and only when
the check passes.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from convscope.errors import ConvscopeError, UserError
from convscope.capture import Capture

TOLERANCE = 1e-4
OPSET = 18
INPUT = "input"
LOGITS = "logits"
SHOWN_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.BatchNorm2d, nn.BatchNorm1d, nn.LocalResponseNorm,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU,
    nn.Hardswish, nn.Hardsigmoid,
)


class ExportCheckError(ConvscopeError, ValueError):
    """onnxruntime's answers differ from torch's: the file was not written."""


@dataclass
class ExportResult:
    path: Path
    input_size: tuple[int, int, int]
    outputs: list[str]
    max_abs_diff: float
    worst_output: str
    batch: int
    seconds: float
    bytes: int
    ok: bool = True
    tolerance: float = TOLERANCE
    max_scaled_diff: float = 0.0
    per_output: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "input_size": list(self.input_size), "outputs": len(self.outputs),
                "check": {"ok": self.ok, "max_abs_diff": self.max_abs_diff,
                          "max_diff_over_scale": self.max_scaled_diff, "worst_output": self.worst_output,
                          "tolerance": self.tolerance, "batch": self.batch, "runtime": "onnxruntime"},
                "seconds": round(self.seconds, 2), "bytes": self.bytes}


# ---- which layers -------------------------------------------------------------------------

def shown_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the shown leaf modules that return a tensor, in the order one forward reaches them
    (a module called twice, like a shared ReLU, is listed once, at its first call)."""
    wanted = [name for name, mod in model.named_modules()
              if name and isinstance(mod, SHOWN_TYPES) and not list(mod.children())]
    with Capture(model, wanted) as cap, torch.inference_mode():
        model(x)
    return [n for n in cap.first_calls if isinstance(cap.outputs[n], torch.Tensor)]


class WithLayers(nn.Module):
    """`model` whose forward returns (logits, *the outputs of the named modules).

    A module called more than once (a shared ReLU) gives its last call's output.
    The outputs are caught by `convscope.capture` (cloned: an in-place activation that
    follows would otherwise overwrite them in eager mode, though not in the exported graph).
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self._capture = Capture(model, self.names, detach=False)  # UserError for an unknown name
        self._capture.__enter__()

    def remove_hooks(self) -> None:
        """Leave `model` as it was."""
        self._capture.__exit__(None, None, None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self._capture.clear()
        logits = _main(self.model(x))
        return (logits, *(self._capture.outputs[n] for n in self.names))


def _main(out: Any) -> torch.Tensor:
    from convscope.predictor import main_logits

    return main_logits(out)


# ---- paths --------------------------------------------------------------------------------

def check_out_path(out: str | Path, suffix: str = ".onnx") -> Path:
    """The output file path, or UserError saying why it cannot be written there."""
    path = Path(out)
    if path.suffix.lower() != suffix:
        raise UserError(f"--out {out} must end in {suffix} (e.g. model{suffix})")
    if path.is_dir():
        raise UserError(f"--out {out} is a folder; name a file inside it, e.g. {path / ('model' + suffix)}")
    parent = path.parent
    for above in [parent, *parent.parents]:
        if above.exists():
            if not above.is_dir():
                raise UserError(f"cannot write {out}: {above} is a file, not a folder")
            _probe_writable(above, out)
            break
    return path


def _probe_writable(folder: Path, out: str | Path) -> None:
    """Create and remove a temp file in `folder` (os.access says yes to root even on a read-only mount)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".convscope-probe-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {folder} is not writable ({exc.strerror})") from None


# ---- export and check ---------------------------------------------------------------------

def _export_program(module: nn.Module, x: torch.Tensor, output_names: list[str]):
    batch = torch.export.Dim("batch", min=1, max=4096)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        try:
            return torch.onnx.export(module, (x,), input_names=[INPUT], output_names=output_names,
                                     dynamic_shapes=({0: batch},), dynamo=True, opset_version=OPSET,
                                     optimize=True, verbose=False)
        except Exception as exc:  # the exporter's errors are long; keep the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportCheckError(f"torch.onnx could not export {type(module).__name__}: {first[:300]}") from exc


def check_onnx(onnx_bytes: bytes, module: nn.Module, input_size: Sequence[int], output_names: list[str], *,
               batch: int = 3, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Run the ONNX model with onnxruntime and the torch module on the same random batch:
    (max absolute difference, largest magnitude in torch's answer) of each output."""
    import onnxruntime as ort

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *input_size, generator=gen)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    got = sess.run(output_names, {INPUT: x.numpy()})
    with torch.inference_mode():
        want = module(x)
    want = (want,) if isinstance(want, torch.Tensor) else want
    diffs = {}
    for name, g, w in zip(output_names, got, want):
        w = w.detach().numpy().astype(np.float64)
        if g.shape != w.shape:
            raise ExportCheckError(f"onnxruntime gives {name} shape {g.shape}, torch {w.shape}")
        if w.size:
            diffs[name] = (float(np.abs(g.astype(np.float64) - w).max()), float(np.abs(w).max()))
        else:
            diffs[name] = (0.0, 0.0)
    return diffs


def scaled(diff: float, magnitude: float) -> float:
    """A difference measured against the output's own size (values beyond [-1, 1])."""
    return diff / max(1.0, magnitude)


def export_onnx(model: nn.Module, out: str | Path, input_size: Sequence[int], *, all_layers: bool = False,
                layers: Sequence[str] | None = None, tolerance: float = TOLERANCE) -> ExportResult:
    """Export `model` (put in eval mode) to `out`, check it with onnxruntime, write it atomically.

    `layers` names the modules whose outputs become graph outputs (default: none, or every
    shown layer with `all_layers`). Raises ExportCheckError, and writes nothing, when the
    check fails.
    """
    t0 = time.perf_counter()
    path = check_out_path(out)
    model = model.eval()
    size = tuple(int(v) for v in input_size)
    probe = torch.zeros(2, *size)
    names = list(layers) if layers is not None else (shown_layers(model, probe) if all_layers else [])
    if INPUT in names or LOGITS in names:
        raise UserError(f"a layer may not be called {INPUT!r} or {LOGITS!r}: those are the graph's input and output")
    module: nn.Module = WithLayers(model, names) if names else _Plain(model)
    try:
        return export_module(module, path, size, [LOGITS, *names], tolerance=tolerance, t0=t0)
    finally:
        if isinstance(module, WithLayers):
            module.remove_hooks()


def export_module(module: nn.Module, out: str | Path, input_size: Sequence[int], output_names: list[str], *,
                  tolerance: float = TOLERANCE, t0: float | None = None) -> ExportResult:
    """Export any module whose forward takes (N, C, H, W) and returns a tensor or a tuple of
    them (named `output_names`), check it with onnxruntime, write it atomically."""
    t0 = time.perf_counter() if t0 is None else t0
    path = check_out_path(out)
    size = tuple(int(v) for v in input_size)
    if len(set(output_names)) != len(output_names) or INPUT in output_names:
        raise UserError(f"output names must be distinct and not {INPUT!r}: {output_names}")
    module = module.eval()
    program = _export_program(module, torch.zeros(2, *size), output_names)
    data = program.model_proto.SerializeToString()
    diffs = check_onnx(data, module, size, output_names)
    worst = max(diffs, key=lambda n: scaled(*diffs[n]))
    result = ExportResult(path=path, input_size=size, outputs=output_names,
                          max_abs_diff=max(d for d, _ in diffs.values()), worst_output=worst, batch=3,
                          seconds=0.0, bytes=len(data), ok=scaled(*diffs[worst]) <= tolerance,
                          tolerance=tolerance, per_output={n: d for n, (d, _) in diffs.items()},
                          max_scaled_diff=scaled(*diffs[worst]))
    if not result.ok:
        d, m = diffs[worst]
        raise ExportCheckError(f"onnxruntime differs from torch by {d:.3g} on output {worst!r} (values up to "
                               f"{m:.3g}; tolerance {tolerance:g} x max(1, that)); {path} was not written")
    _atomic_write(path, data)
    result.seconds = time.perf_counter() - t0
    return result


class _Plain(nn.Module):
    """The model with its main logits only (GoogLeNet-style tuples reduced to the first)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _main(self.model(x))


def _atomic_write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a model file is for others to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
