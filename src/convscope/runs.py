"""The one owner of a run folder: its file names, config, history, weights and writes.

    RUN/model.safetensors   weights only (never pickle)
    RUN/config.json         everything needed to rebuild the model and its preprocessing
    RUN/metrics.jsonl       one line per epoch
    RUN/curves.png          loss and accuracy
    RUN/state/state.pt      optimizer and RNG state for --resume (torch.load weights_only=True)
    RUN/.lock               the pid of the process writing the run (while it trains)
    RUN/.demo-ready         `make demo`'s marker: the demo run finished

config.json keys (tools read these; add others freely):
    {"convscope_version", "model": {"name", "kwargs": {...}}, "dataset": "mnist",
     "classes": [...], "input_size": [C, H, W],
     "normalization": {"mean": [...], "std": [...]},
     "preprocessing": {"kind": "digits" | "resize", "invert": bool, ...},
     "recipe": {...}, "seed": int, "versions": {...}}

Every problem with a run folder is a `RunError` whose message names the file
and says what to do; a folder or file that is not there is a `RunNotFound`
(also a FileNotFoundError).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from convscope.errors import RunError
from convscope.limits import check_finite_weights, check_run_config

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.jsonl"
CURVES = "curves.png"
STATE = "state"
STATE_FILE = "state.pt"
DEMO_READY = ".demo-ready"
LOCK = ".lock"
PREVIOUS = ".previous-"  # --overwrite sets the old run aside as RUN/.previous-<time> until the new one has an epoch

RUN_FILES = (CONFIG, WEIGHTS, METRICS, CURVES, STATE, DEMO_READY)


class RunNotFound(RunError, FileNotFoundError):
    """A run folder, or a file a run needs, is not there."""


# ---- atomic writes ------------------------------------------------------------------------

def atomic_write(path: str | Path, writer: Callable[[str], None]) -> None:
    """`writer(tmp_path)` writes the file; it is fsynced and renamed over `path`.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
    atomic_write(path, write)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


# ---- the model spec of a config -----------------------------------------------------------

def model_spec(config: Any, where: str | Path = CONFIG) -> tuple[str, dict[str, Any]]:
    """(model name, builder kwargs) of a run config; `where` names the file in errors."""
    if not isinstance(config, dict):
        raise RunError(f"{where} holds a JSON {type(config).__name__}, not an object; "
                       "it is not a convscope run config (retrain, or restore the file)")
    spec = config.get("model")
    if isinstance(spec, str) and spec:
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise RunError(f'{where} names no model (expected "model": {{"name": ..., "kwargs": {{...}}}}); '
                       "is it a convscope run?")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise RunError(f'{where}: "model" "kwargs" must be an object of builder arguments, '
                       f"got {type(kwargs).__name__}; fix or remove it")
    return spec["name"], dict(kwargs)


# ---- the run folder -----------------------------------------------------------------------

class RunDir:
    """A run folder: `RunDir("runs/demo").load()` -> (model, config)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / CONFIG
        self.weights_path = self.path / WEIGHTS
        self.metrics_path = self.path / METRICS
        self.curves_path = self.path / CURVES
        self.state_dir = self.path / STATE
        self.state_path = self.state_dir / STATE_FILE
        self.lock_path = self.path / LOCK
        self.demo_ready_path = self.path / DEMO_READY

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        """True when the folder holds a run (its config.json)."""
        return self.config_path.is_file()

    # ---- config ---------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """config.json, checked to be a run config with a model spec."""
        if not self.path.is_dir():
            raise RunNotFound(f"no run folder at {self.path} (train one with `convscope train --out {self.path}`)")
        if not self.config_path.is_file():
            raise RunNotFound(f"{self.path} is not a convscope run: {CONFIG} is missing")
        try:
            config = json.loads(self.config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunError(f"{self.config_path} is not valid JSON ({exc}); restore it or retrain the run") from None
        model_spec(config, self.config_path)
        check_run_config(config, self.config_path)  # std 0, NaN, size 0: wrong results, not errors
        return config

    def write_config(self, config: dict[str, Any]) -> None:
        """config.json, atomically. (`fit` on a module of its own writes one without a model spec:
        such a run holds weights and history, but `load` cannot rebuild it.)"""
        if not isinstance(config, dict):
            raise TypeError(f"a run config is a dict, got {type(config).__name__}")
        atomic_write_json(self.config_path, config)

    def model_spec(self) -> tuple[str, dict[str, Any]]:
        return model_spec(self.read_config(), self.config_path)

    # ---- history --------------------------------------------------------------------------
    def read_history(self) -> list[dict[str, Any]]:
        """metrics.jsonl as a list of rows ([] when the run has none yet)."""
        if not self.metrics_path.is_file():
            return []
        rows = []
        for i, line in enumerate(self.metrics_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise RunError(f"{self.metrics_path} line {i} is not JSON; restore the file or retrain") from None
            if not isinstance(row, dict):
                raise RunError(f"{self.metrics_path} line {i} is not a JSON object; restore the file or retrain")
            rows.append(row)
        return rows

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows).encode())

    def append_history(self, row: dict[str, Any]) -> None:
        self.write_history([*self.read_history(), row])

    # ---- weights --------------------------------------------------------------------------
    def save_weights(self, model: Any) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        atomic_write(self.weights_path, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))

    def save(self, model: Any, config: dict[str, Any]) -> Path:
        """Weights, then config (each atomically). Returns the folder."""
        self.save_weights(model)
        self.write_config(config)
        return self.path

    def read_weights(self, device: Any = "cpu") -> dict[str, Any]:
        """The safetensors state dict, checked to be a whole file (RunError naming it otherwise)."""
        from safetensors.torch import load_file

        path = self.weights_path
        if not path.is_file():
            raise RunNotFound(f"{self.path} has no {WEIGHTS}: the run did not finish its first epoch "
                              f"(resume it with `convscope train --out {self.path} --resume`, or retrain)")
        if path.stat().st_size == 0:
            raise RunError(f"{path} is empty (0 bytes): the weights were never written; retrain the run")
        try:
            state = load_file(str(path), device=str(device))
        except Exception as exc:  # safetensors raises its own error type, and OSError/ValueError
            raise RunError(f"{path} is not a readable safetensors file ({str(exc).splitlines()[0][:120]}): "
                           "it is truncated or corrupt; retrain the run or restore the file") from None
        check_finite_weights(state, path)
        return state

    def build(self, config: dict[str, Any] | None = None, *, device: Any = None) -> Any:
        """The run's architecture with fresh weights (on `device`, e.g. "meta")."""
        import torch

        from convscope.models import create_model

        name, kwargs = model_spec(self.read_config() if config is None else config, self.config_path)
        try:
            with torch.device(device) if device is not None else contextlib.nullcontext():
                return create_model(name, **kwargs)
        except TypeError as exc:
            raise RunError(f"{self.config_path}: model {name!r} does not take the kwargs {sorted(kwargs)} "
                           f"({exc}); fix \"model\" \"kwargs\" or retrain") from None
        except ValueError as exc:
            raise RunError(f"{self.config_path}: cannot build model {name!r}: {exc}") from None

    def load(self, device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
        """Rebuild the model from config.json, load its safetensors weights; (model, config), eval mode."""
        config = self.read_config()
        model = self.build(config)
        state = self.read_weights(device)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a tensor of another shape: e.g. num_classes disagrees
            first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc)[:200])
            raise RunError(f"{self.weights_path} does not fit the model {CONFIG} describes ({first}); "
                           f"does \"num_classes\"/\"in_chans\" in {CONFIG} match the weights?") from None
        if missing or unexpected:
            raise RunError(f"{self.weights_path} does not fit {model_spec(config)[0]}: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}; the weights belong to another model")
        self._check_classes(config, model)
        return model.to(device).eval(), config

    def _check_classes(self, config: dict[str, Any], model: Any) -> None:
        classes = config.get("classes")
        if classes is None:
            return
        if not isinstance(classes, list):
            raise RunError(f'{self.config_path}: "classes" must be a list of names, got {type(classes).__name__}')
        from convscope.predictor import check_classes

        check_classes(classes, output_count(model, config.get("input_size")), str(self.config_path))

    # ---- writing a run --------------------------------------------------------------------
    def check_out(self, *, resume: bool, overwrite: bool) -> None:
        """Checks before a run is written here (train --out, finetune --out); first `recover()`."""
        self.recover()
        out = self.path
        if resume:
            if not self.exists():
                raise RunNotFound(f"cannot resume: {out} holds no run ({CONFIG} is missing); "
                                  f"start a new run with --out {out} and no --resume")
            return
        if out.exists() and not out.is_dir():
            raise RunError(f"--out {out} is a file, not a folder; choose another --out")
        if self.exists() and not overwrite:
            raise RunError(f"{out} already holds a run; continue it with --resume, replace it with "
                           f"--overwrite, or choose another --out")

    def probe_writable(self) -> None:
        """Create the folder and write a probe file: a clear error before any training."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}-{time.monotonic_ns()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RunError(f"cannot write the run to --out {self.path}: {exc.strerror or exc}; "
                           f"choose a folder you can write to") from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold RUN/.lock (this pid) while writing; a second writer gets a RunError.

        A lock left by a process that is no longer alive is taken over.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = _lock_pid(self.lock_path)
                if pid is None and _age(self.lock_path) < 10:  # just created, its pid not written yet
                    raise RunError(f"{self.path} is being written by another process ({self.lock_path} "
                                   f"is new); wait for it to finish, or choose another --out") from None
                if pid is not None and _alive(pid):
                    raise RunError(f"{self.path} is being written by another process (pid {pid}, "
                                   f"{self.lock_path}); wait for it to finish, stop it, or choose another "
                                   f"--out") from None
                self.lock_path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            break
        else:  # pragma: no cover - another process keeps winning the race
            raise RunError(f"could not take {self.lock_path}; try again")
        try:
            yield
        finally:
            if _lock_pid(self.lock_path) == os.getpid():
                self.lock_path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def writing(self, *, replace: bool = False) -> Iterator[Callable[[], None]]:
        """Hold the lock while a run is written here; with `replace` (--overwrite) the old run
        is set aside first and yields `checkpointed()`, to call once the new run has its first
        checkpoint: that deletes the old run. If the block ends before a checkpoint
        (an error, Ctrl-C), the old run is put back as it was.
        """
        with self.lock():
            aside = self.set_aside() if replace else None
            done = aside is None

            def checkpointed() -> None:
                nonlocal done
                if not done:
                    discard(aside)
                    done = True

            try:
                yield checkpointed
            finally:
                if not done:
                    if self.state_path.is_file() or self.weights_path.is_file():
                        discard(aside)  # the new run got as far as a checkpoint after all
                    else:
                        self.restore(aside)

    def recover(self) -> None:
        """Finish what a killed --overwrite left: its set-aside old run (RUN/.previous-<time>-<pid>,
        pid no longer alive) is put back when the new run never got to a checkpoint, else deleted."""
        if not self.path.is_dir():
            return
        for aside in sorted(self.path.glob(f"{PREVIOUS}*")):
            pid = _aside_pid(aside)
            if not aside.is_dir() or (pid is not None and _alive(pid)):
                continue
            with contextlib.suppress(OSError):  # under torchrun every rank checks: one of them wins
                if self.state_path.is_file() or self.weights_path.is_file():
                    discard(aside)
                else:
                    self.restore(aside)

    def set_aside(self) -> Path | None:
        """--overwrite: move the old run's files into RUN/.previous-<time>; returns that folder."""
        present = [n for n in RUN_FILES if (self.path / n).exists()]
        if not present:
            return None
        aside = self.path / f"{PREVIOUS}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        aside.mkdir(parents=True)
        for name in present:
            os.replace(self.path / name, aside / name)
        return aside

    def restore(self, aside: Path | None) -> None:
        """Put a set-aside run back (the new run failed before its first checkpoint)."""
        if aside is None or not aside.is_dir():
            return
        for name in RUN_FILES:
            new = self.path / name
            if new.is_dir():
                shutil.rmtree(new)
            else:
                new.unlink(missing_ok=True)
        for item in aside.iterdir():
            os.replace(item, self.path / item.name)
        aside.rmdir()


def discard(aside: Path | None) -> None:
    """Delete a set-aside run once the new run has written its first checkpoint."""
    if aside is not None and aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)


def _aside_pid(aside: Path) -> int | None:
    try:
        return int(aside.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


def _lock_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or "x")
    except (OSError, ValueError):
        return None


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def output_count(model: Any, input_size: Any = None) -> int | None:
    """How many scores the model gives per image: one forward on the meta device (no compute,
    nothing copied: its parameters and buffers are swapped for meta tensors of their shapes)."""
    import itertools

    import torch

    size = input_size or getattr(model, "default_input_size", None)
    if not size:
        return None
    tensors = {k: torch.empty_like(v, device="meta")
               for k, v in itertools.chain(model.named_parameters(), model.named_buffers())}
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = torch.func.functional_call(model, tensors, (torch.empty(1, *[int(v) for v in size], device="meta"),))
    except Exception:  # a model that cannot run on meta: the caller's own forward will tell
        return None
    finally:
        model.train(was)
    from convscope.predictor import main_logits

    out = main_logits(out)
    return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None


def load(run_dir: str | Path, *, device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """`convscope.load`: (model in eval mode, config) of a run folder."""
    return RunDir(run_dir).load(device)


def read_config(run_dir: str | Path) -> dict[str, Any]:
    return RunDir(run_dir).read_config()


def save_run(run_dir: str | Path, model: Any, config: dict[str, Any]) -> Path:
    """Write weights and config of a run (each atomically). Returns the run folder."""
    return RunDir(run_dir).save(model, config)
