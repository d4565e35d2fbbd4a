"""One table of the numeric limits every command checks where it parses its options.

Each option that takes a number gets its type from here, so `--threads 100000`,
`--lr nan` or `--gamma -1` stop at the command line with one line naming the
option and the range, before anything is loaded or written:

    parser.add_argument("--threads", type=limits.arg("threads"))

`arg(name)` returns an argparse `type=` function; argparse prefixes its message
with the option ("argument --threads: ...") and exits with status 2.

Images: one pixel limit, MAX_IMAGE_PIXELS, for every command and the server.
`check_image_size(width, height, what)` is called by every image decoder with
the size read from the file's header, before any pixel is decompressed.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from convscope.errors import ImageTooLarge

# 4096 x 4096 = 16.8 megapixels, for every command and the server (the explorer's
# file upload uses the same number): a 12-megapixel phone photo fits; larger ones are
# scaled down first. Decoded as RGB that is 50 MB, and the preprocessing's float
# copies a few times more. A 12000x12000 PNG can be a 140 kB file and still need
# 1.8 GB once decoded: it is refused from its header, before anything is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
_LIMIT_WORDS = f"{MAX_IMAGE_PIXELS / 1e6:.1f} megapixels ({MAX_IMAGE_PIXELS:,} pixels, e.g. 4096x4096)"


def _fmt(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


def _max_threads() -> int:
    return max(4, 4 * (os.cpu_count() or 1))


@dataclass(frozen=True)
class Limit:
    """A number an option may take: kind (int or float) and the closed/open range."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is refused (e.g. a learning rate > 0)
    high_open: bool = False
    what: str = ""

    def describe(self) -> str:
        kind = "a whole number" if self.kind is int else "a number"
        if self.low is not None and self.high is not None and not (self.low_open or self.high_open):
            text = f"{kind} from {_fmt(self.low)} to {_fmt(self.high)}"
        else:
            parts = []
            if self.low is not None:
                parts.append(f"{'greater than' if self.low_open else 'at least'} {_fmt(self.low)}")
            if self.high is not None:
                parts.append(f"{'less than' if self.high_open else 'at most'} {_fmt(self.high)}")
            text = f"{kind} {' and '.join(parts)}" if parts else kind
        return f"{text} ({self.what})" if self.what else text

    def check(self, value: float) -> str | None:
        """None when `value` is allowed, else what is wrong with it."""
        if self.kind is float and not math.isfinite(value):
            return f"must be {self.describe()}, got {value} (not a finite number)"
        lo_bad = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        hi_bad = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if lo_bad or hi_bad:
            return f"must be {self.describe()}, got {_fmt(value)}"
        return None


# name -> Limit. Names are the options' dest names (--batch-size -> batch_size).
LIMITS: dict[str, Limit] = {
    "threads": Limit(int, 1, _max_threads(), what=f"4 x this machine's {os.cpu_count()} CPUs"),
    "workers": Limit(int, 1, 64, what="server processes"),
    "port": Limit(int, 0, 65535, what="0 picks a free port"),
    "epochs": Limit(int, 1, 100_000),
    "freeze_epochs": Limit(int, 0, 100_000),
    "batch_size": Limit(int, 1, 65_536),
    "lr": Limit(float, 0, 100, low_open=True, what="learning rate"),
    "body_lr_mult": Limit(float, 0, 100),
    "momentum": Limit(float, 0, 1, high_open=True),
    "weight_decay": Limit(float, 0, 10),
    "gamma": Limit(float, 0, 1, low_open=True, what="decay factor"),
    "step_size": Limit(int, 1, 100_000, what="epochs between decays"),
    "warmup_epochs": Limit(float, 0, 100_000),
    "label_smoothing": Limit(float, 0, 1, high_open=True),
    "erase_p": Limit(float, 0, 1),
    "seed": Limit(int, 0, 2**32 - 1),
    "image_size": Limit(int, 8, 4096, what="pixels per side"),
    "top": Limit(int, 1, 100_000),
    "reinit": Limit(int, 0, 1000),
    "repeats": Limit(int, 1, 1000),
    "subset": Limit(int, 0, 10_000_000, what="images per class (0 for all)"),
    "min_epoch": Limit(int, 1, 10_000_000),
    "shots": Limit(int, 1, 10_000_000, what="images per class"),
    # options of commands other branches add (checked by name through check_options)
    "steps": Limit(int, 1, 1_000_000),
    "restarts": Limit(int, 1, 1000),
    "top_losses": Limit(int, 0, 10_000),
    "start_lr": Limit(float, 0, 1000, low_open=True, what="learning rate"),
    "end_lr": Limit(float, 0, 1000, low_open=True, what="learning rate"),
    # a training request's (convscope.train.request.TrainRequest)
    "val_fraction": Limit(float, 0, 1, high_open=True, what="share held out for validation"),
    "test_fraction": Limit(float, 0, 1, high_open=True, what="share held out for testing"),
    "pace_ms": Limit(float, 0, 5000, what="milliseconds of sleep after each step"),
    "patience": Limit(int, 1, 100_000, what="plateau: epochs without improvement"),
    "warmup": Limit(float, 0, 1, what="onecycle: share of the steps spent warming up"),
    "eval_batch_size": Limit(int, 1, 65_536),
    "log_every": Limit(int, 1, 1_000_000, what="steps between loss checks"),
    # a model built for training: 1e9 float32 weights are 4 GB before gradients and optimizer state;
    # counted on the meta device, so a request for more (a huge num_classes) allocates nothing
    "parameters": Limit(int, 1, 1_000_000_000, what="weights"),
    # any number among a model's keyword arguments (widths, class counts, sizes)
    "model_kwarg": Limit(float, -10_000_000, 10_000_000),
}


def _parse_number(text: str, kind: type) -> float:
    try:
        return int(text, 10) if kind is int else float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None


def arg(name: str, **override: float | bool) -> Callable[[str], float]:
    """An argparse `type=` for option `name` of LIMITS; `override` changes the range
    for one command (e.g. `arg("epochs", low=0)`)."""
    base = LIMITS[name]
    limit = Limit(**{**base.__dict__, **override}) if override else base

    def parse(text: str) -> float:
        value = _parse_number(text, limit.kind)
        problem = limit.check(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = name  # argparse names the type in "invalid <name> value"
    parse.limit = limit  # type: ignore[attr-defined]  (check_options: already checked)
    return parse


def number_list(name: str) -> Callable[[str], list]:
    """An argparse type for comma-separated numbers, each within LIMITS[name] (e.g. --shots 10,100)."""
    one = arg(name)

    def parse(text: str) -> list:
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas, e.g. 10,100,1000")
        try:
            return [one(p) for p in parts]
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None

    parse.__name__ = name
    parse.limit = LIMITS[name]  # type: ignore[attr-defined]
    return parse


def device(text: str) -> str:
    """An argparse type for --device: cpu, cuda, cuda:N or mps, and present on this machine."""
    value = str(text).strip().lower()
    kind, _, index = value.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()) or (index and kind == "cpu"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda, cuda:N or mps")
    if kind == "cpu":
        return value
    import torch

    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise argparse.ArgumentTypeError("mps (Apple GPU) is not available here; use --device cpu")
        return value
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{value}: no CUDA GPU is visible on this machine; use --device cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{value}: this machine has {torch.cuda.device_count()} CUDA "
                                         f"device(s), numbered from 0")
    return value


def out_file(*suffixes: str) -> Callable[[str], Path]:
    """An argparse type for an output file: it must end in one of `suffixes` (so what is
    written is exactly the path given) and its folder must not be a file."""
    allowed = tuple(s.lower() for s in suffixes)

    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        if not str(text).strip():
            raise argparse.ArgumentTypeError("the path is empty")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name ending in {allowed[0]}")
        if path.suffix.lower() not in allowed:
            raise argparse.ArgumentTypeError(
                f"{text} must end in {' or '.join(allowed)} (e.g. {path.with_suffix(allowed[0]).name}): "
                f"the file is written in that format")
        _check_parents(path, text)
        return path

    parse.__name__ = "file"
    parse.limit = "out"  # type: ignore[attr-defined]
    return parse


def out_dir(text: str) -> Path:
    """An argparse type for an output folder: it may not exist yet, but it is not a file
    and no folder above it is a file."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("the path is empty")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; choose another path")
    _check_parents(path, text)
    return path


def image_file(text: str) -> str:
    """An argparse type for an input image: an existing file (a folder or a missing path
    is said to be just that); the pixel limit is checked when it is decoded."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not an image file; give the files, "
                                         f"e.g. {Path(text) / '*.png'}")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no image file at {text}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a regular file")
    return text


image_file.limit = "image"  # type: ignore[attr-defined]
out_dir.limit = "out"  # type: ignore[attr-defined]
device.limit = "device"  # type: ignore[attr-defined]


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The safety net behind the types: every option of `parser` whose name (dest) is in
    LIMITS, or is `device` or `out`, is checked here even when its command declared it
    with a plain `type=int`/`float`; a bad value is argparse's own error (exit 2)."""
    for action in parser._actions:
        dest, value = action.dest, getattr(args, action.dest, None)
        if value is None or getattr(action.type, "limit", None) is not None or not action.option_strings:
            continue
        option = max(action.option_strings, key=len)
        problem = _check_value(dest, value, action)
        if problem:
            parser.error(f"argument {option}: {problem}")


def _check_value(dest: str, value: object, action: argparse.Action) -> str | None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        try:
            if dest in LIMITS and isinstance(v, (int, float)) and not isinstance(v, bool):
                problem = LIMITS[dest].check(v)
                if problem is None and LIMITS[dest].kind is int and isinstance(v, float):
                    problem = f"must be a whole number, got {v:g}"
                if problem:
                    return problem
            elif action.type is float and isinstance(v, float) and not math.isfinite(v):
                return f"must be a finite number, got {v}"
            elif dest == "device" and isinstance(v, str):
                device(v)
            elif dest == "out" and isinstance(v, (str, Path)) and str(v) != str(action.default):
                shown = str(action.metavar or "")
                suffix = Path(shown).suffix if "." in shown and not shown.startswith(".") else ""
                if suffix:
                    out_file(suffix)(str(v))
                elif "FILE" in shown.upper():  # a file of the command's own format: its folder must be one
                    if Path(v).expanduser().is_dir():
                        raise argparse.ArgumentTypeError(f"{v} is a folder; give a file name")
                    _check_parents(Path(v).expanduser(), str(v))
                else:
                    out_dir(str(v))
        except argparse.ArgumentTypeError as exc:
            return str(exc)
    return None


def _check_parents(path: Path, text: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a folder")
            return


def check_image_size(width: int, height: int, what: str) -> None:
    """Refuse an image over MAX_IMAGE_PIXELS (ImageTooLarge, a DataError), from its header size."""
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ImageTooLarge(f"{what} is {width}x{height} pixels: an image needs at least one pixel")
    pixels = width * height
    if pixels > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(f"{what} is {width}x{height} = {pixels / 1e6:.1f} megapixels; convscope reads images "
                            f"of at most {_LIMIT_WORDS}: scale it down first")


def too_large(what: str) -> ImageTooLarge:
    """The error for an image Pillow itself refused while opening it as a decompression
    bomb (over twice Pillow's own limit, so far over ours): its size is not known."""
    return ImageTooLarge(f"{what} is a decompression bomb or an enormous image (over {_pillow_limit()} "
                         f"megapixels); convscope reads images of at most {_LIMIT_WORDS}: scale it down first")


def _pillow_limit() -> str:
    from PIL import Image

    return f"{2 * (Image.MAX_IMAGE_PIXELS or MAX_IMAGE_PIXELS) / 1e6:g}"


# ---- the numbers a run's config.json holds ----------------------------------------------------

def check_run_config(config: dict, where: object) -> None:
    """Refuse a config.json whose numbers would give silently wrong results: a std of 0,
    NaN or infinity (NaN probabilities), a preprocessing or input size of 0. Raises
    RunError naming `where` (the file)."""
    from convscope.errors import RunError

    def bad(what: str) -> RunError:
        return RunError(f"{where}: {what}; restore the file or retrain the run")

    norms = [("normalization", config.get("normalization"))]
    pre = config.get("preprocessing")
    if pre is not None and not isinstance(pre, dict):
        raise bad(f'"preprocessing" must be an object, got {type(pre).__name__}')
    if isinstance(pre, dict):
        norms.append(("preprocessing", pre))
        size = pre.get("size")
        if size is not None and not _positive_ints(size, 2):
            raise bad(f'"preprocessing" "size" must be [height, width] in pixels (1 or more), got {size!r}')
        if pre.get("channels") not in (None, 1, 3):
            raise bad(f'"preprocessing" "channels" must be 1 or 3, got {pre.get("channels")!r}')
    for section, norm in norms:
        if norm is None:
            continue
        if not isinstance(norm, dict):
            raise bad(f'"{section}" must be an object with "mean" and "std", got {type(norm).__name__}')
        for key in ("mean", "std"):
            values = norm.get(key)
            if values is None and section == "preprocessing":
                continue
            if not isinstance(values, list) or not values or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise bad(f'"{section}" "{key}" must be a list of finite numbers, one per channel, got {values!r}')
            if key == "std" and min(values) <= 0:
                raise bad(f'"{section}" "std" must be above 0 (dividing by it gives NaN), got {values!r}')
    size = config.get("input_size")
    if size is not None and not _positive_ints(size, 3):
        raise bad(f'"input_size" must be [channels, height, width], each 1 or more, got {size!r}')


def _positive_ints(value: object, n: int) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100_000 for v in value))


def check_finite_weights(state: dict, where: object) -> None:
    """Refuse weights holding NaN or infinity (every answer would be NaN): RunError naming `where`."""
    from convscope.errors import RunError

    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise RunError(f"{where}: tensor {name!r} holds NaN or infinite values (the training diverged?); "
                           "retrain the run, e.g. with a lower --lr")
