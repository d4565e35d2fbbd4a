"""One request to train: what `convscope train`, `convscope.train.train()` and the
explorer's Train tab ask for, checked in one place.

    req = TrainRequest.parse({"model": "lenet5", "data": "mnist", "epochs": 2, "out": "runs/a"})
    train_request(req)                     # convscope.train.api

`TrainRequest.parse(values, *, runs_root=None, data_allowed=None)` is the only way
a request is built from outside values, and it raises `convscope.errors.UserError`
(one line: what was wrong and how to fix it, quoting at most ~40 characters of the
value given) for anything wrong with its shape: a key that is not a setting, a
wrong type, a number outside `limits.LIMITS`, an unknown model, recipe or device,
model kwargs that build no model or one over `LIMITS["parameters"]` weights
(counted on PyTorch's meta device: nothing is allocated).

With `runs_root` (the server) the request is also confined: `out` is a name or a
relative path that resolves (symlinks and `..` followed) inside `runs_root`;
`data` is one of the named datasets or exactly one of the `data_allowed` folders;
the keys that reach other files or the network (`data_root`, `download`,
`overwrite`, `resume`, ...) are refused. What needs the data itself (does the
model fit it, is `out` free) is `convscope.train.api.preflight`'s.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from convscope import limits
from convscope.errors import UserError

NAMED_DATASETS = ("mnist", "fashion-mnist", "synthetic", "cifar10")
SHOWN = 40  # characters of a caller's value an error message quotes

_NUMBERS = ("epochs", "batch_size", "lr", "seed", "threads", "image_size", "val_fraction", "test_fraction",
            "pace_ms")
_STRINGS = ("recipe", "optimizer", "schedule", "device", "data_root")
_FLAGS = ("resume", "overwrite", "download")
# TrainConfig fields a request may set besides the ones above (train(**overrides))
_SERVER_OVERRIDES = ("momentum", "nesterov", "weight_decay", "step_size", "gamma", "warmup_epochs",
                     "label_smoothing", "augment", "erase_p")
# what a request from the server (runs_root given) may carry: nothing that reads or writes elsewhere
SERVER_KEYS = frozenset(("model", "model_kwargs", "data", "out", "recipe", "epochs", "lr", "batch_size",
                         "optimizer", "schedule", "seed", "threads", "device", "pace_ms", "image_size",
                         "val_fraction", "test_fraction", *_SERVER_OVERRIDES))
_KWARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def short(value: object) -> str:
    """`value` as an error message may quote it: its repr, cut to SHOWN characters."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


@dataclass(frozen=True)
class TrainRequest:
    """A checked request to train. Build it with `parse`; `train_kwargs()` are `train()`'s arguments."""

    model: Any = None                   # a registered name, or (library) an nn.Module
    data: Any = None                    # a dataset name, folder:PATH, or (library) a Dataset
    out: Path | None = None
    recipe: str | None = None
    model_kwargs: Mapping[str, Any] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    schedule: str | None = None
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    device: str | None = None
    threads: int | None = None
    data_root: str | None = None
    download: bool = False
    image_size: int | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    pace_ms: float = 0.0                # the Train tab's sleep after each step (watching slowly)
    overrides: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def parse(cls, values: Mapping[str, Any], *, runs_root: str | Path | None = None,
              data_allowed: Iterable[str | Path] | None = None) -> "TrainRequest":
        """The request `values` asks for, or UserError. `runs_root`: confine it as the server must
        (see the module's doc); `data_allowed`: the folders `folder:` may name there."""
        if not isinstance(values, Mapping):
            raise UserError(f"a training request is an object of settings, not {type(values).__name__}")
        confined = runs_root is not None
        _check_keys(values, confined)
        got: dict[str, Any] = {}
        for key in _NUMBERS:
            got[key] = _number(key, values.get(key))
        for key in _STRINGS:
            got[key] = _string(key, values.get(key))
        for key in _FLAGS:
            got[key] = _flag(key, values.get(key))
        got["seed"] = 0 if got["seed"] is None else got["seed"]
        got["pace_ms"] = 0.0 if got["pace_ms"] is None else float(got["pace_ms"])
        got["overrides"] = MappingProxyType(_overrides(values, confined))
        got["model_kwargs"] = _model_kwargs(values.get("model_kwargs"))
        got["model"] = _model(values.get("model"), confined)
        got["data"] = _data(values.get("data"), confined, data_allowed)
        _check_names(got)
        if got["device"] is not None:
            got["device"] = _device(got["device"])
        got["out"] = _out(values.get("out"), got, runs_root)
        req = cls(**got)
        req.check_model_size()
        return req

    # ---- what the request is used as ------------------------------------------------------
    def train_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `convscope.train.train` (progress, report and callbacks aside)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("overrides", "pace_ms")}
        out["model_kwargs"] = dict(self.model_kwargs) if self.model_kwargs is not None else None
        return dict(out, **self.overrides)

    def to_json(self) -> dict[str, Any]:
        """The request as JSON values (names for model and data): `parse(to_json())` is equal to it."""
        if not all(v is None or isinstance(v, str) for v in (self.model, self.data)):
            raise UserError("a request with a model or dataset object cannot be sent as JSON; name them")
        out = {k: v for k, v in self.train_kwargs().items() if v is not None}
        out["out"] = str(self.out) if self.out is not None else None
        return dict(out, pace_ms=self.pace_ms)

    def model_name(self) -> str | None:
        """The registered model this request trains (the recipe's, else lenet5); None for an object."""
        return self._named("model", "lenet5")

    def data_name(self) -> str | None:
        """The dataset this request trains on (the recipe's, else mnist); None for an object."""
        return self._named("data", "mnist")

    def _named(self, key: str, default: str) -> str | None:
        from convscope.train.config import recipe_defaults

        value = getattr(self, key)
        value = recipe_defaults(self.recipe).get(key, default) if value is None else value
        return value if isinstance(value, str) else None

    def check_model_size(self) -> None:
        """Build the model on the meta device (no memory): kwargs that build none, or a network
        over LIMITS["parameters"] weights, are refused before anything is allocated."""
        name = self.model_name()
        if self.resume or name is None:
            return  # a resumed run rebuilds the network it saved; an object is built already
        import torch

        from convscope.models import create_model
        from convscope.train.config import recipe_defaults

        kwargs = dict(self.model_kwargs) if self.model_kwargs is not None else \
            (recipe_defaults(self.recipe).get("model_kwargs") or {} if self.model is None else {})
        try:
            with torch.device("meta"):
                net = create_model(name, **kwargs)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001  (a builder's own error for kwargs it cannot take)
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise UserError(f"model {name} cannot be built with model_kwargs {short(kwargs)}: {first[:120]}; "
                            f"fix or drop the model kwargs") from None
        count = sum(p.numel() for p in net.parameters())
        if limits.LIMITS["parameters"].check(count):
            raise UserError(f"model {name} with model_kwargs {short(kwargs)} has {count:,} weights; a model "
                            f"trained here has {limits.LIMITS['parameters'].describe()}: use smaller model kwargs")


# ---- the checks, one per kind of value -------------------------------------------------------

def _check_keys(values: Mapping[str, Any], confined: bool) -> None:
    from convscope.train.config import TrainConfig

    known = SERVER_KEYS if confined else {f.name for f in dataclasses.fields(TrainRequest)} - {"overrides"} | {
        f.name for f in dataclasses.fields(TrainConfig)} - {"recipe"}
    for key in values:
        if not isinstance(key, str) or key not in known:
            shown = sorted(k for k in known if k not in _FLAGS)
            raise UserError(f"unknown training setting {short(key)}{_did_you_mean(key, known, ' (', ')')}"
                            f"{' for this server' if confined else ''}; settings: {', '.join(shown)}")


def _did_you_mean(value: object, names: Iterable[str], before: str = "; ", after: str = "?") -> str:
    import difflib

    close = difflib.get_close_matches(str(value)[:100], list(names), n=3, cutoff=0.6)
    return f"{before}did you mean {', '.join(close)}{after}" if close else ""


def _number(key: str, value: Any) -> int | float | None:
    if value is None:
        return None
    limit = limits.LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{key} must be {limit.describe()}, got {type(value).__name__} {short(value)}")
    if isinstance(value, numbers.Integral) and abs(int(value)) > 2**63:
        raise UserError(f"{key} must be {limit.describe()}, got a number of {len(str(abs(value)))} digits")
    value = int(value) if isinstance(value, numbers.Integral) else float(value)
    if limit.kind is int and isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise UserError(f"{key} must be {limit.describe()}, got {short(value)}")
        value = int(value)
    problem = limit.check(value)
    if problem:
        raise UserError(f"{key} {problem}")
    return limit.kind(value)


def _string(key: str, value: Any, most: int = 200) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UserError(f"{key} must be a string, got {type(value).__name__} {short(value)}")
    if len(value) > most or "\x00" in value:
        raise UserError(f"{key} {short(value)} is too long or holds a NUL: use at most {most} characters")
    return value


def _flag(key: str, value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise UserError(f"{key} must be true or false, got {type(value).__name__} {short(value)}")
    return value


def _overrides(values: Mapping[str, Any], confined: bool) -> dict[str, Any]:
    """TrainConfig fields beyond the request's own (momentum=..., augment=...), each by its kind."""
    from convscope.train.config import TrainConfig

    own = {f.name for f in dataclasses.fields(TrainRequest)} | {"recipe"}
    defaults = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in own or key not in defaults or value is None:
            continue
        default = defaults[key].default
        if key in limits.LIMITS:
            out[key] = _number(key, value)
        elif isinstance(default, bool):
            out[key] = _flag(key, value)
        elif isinstance(default, str) or default is None:
            out[key] = _string(key, value, 40)
        elif not isinstance(value, dict) or confined:
            raise UserError(f"{key} must be an object of settings")
        else:
            out[key] = dict(value)
    return out


def _model_kwargs(value: Any) -> Mapping[str, Any] | None:
    """An object of at most 32 keyword names to JSON scalars or short lists of them."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise UserError(f"model_kwargs must be an object, e.g. {{\"small_input\": true}}, got {type(value).__name__}")
    if len(value) > 32:
        raise UserError(f"model_kwargs has {len(value)} keys; a model takes at most 32")
    for key, item in value.items():
        if not isinstance(key, str) or not _KWARG_NAME.fullmatch(key):
            raise UserError(f"model_kwargs key {short(key)} is not a keyword name (letters, digits, _; at most 40)")
        if not _kwarg_value(item, depth=2, budget=[4096]):
            raise UserError(f"model_kwargs {key} must be a number (at most {limits.LIMITS['model_kwarg'].high:,.0f} "
                            f"across), true/false, a string of at most 200 characters, or a list of them (lists "
                            f"of lists too, 4,096 values in all); got {short(item)}")
    return MappingProxyType(dict(value))


def _kwarg_value(v: Any, *, depth: int, budget: list[int]) -> bool:
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if isinstance(v, (list, tuple)):
        return depth > 0 and all(_kwarg_value(x, depth=depth - 1, budget=budget) for x in v)
    return _kwarg_scalar(v)


def _kwarg_scalar(v: Any) -> bool:
    if v is None or isinstance(v, bool):
        return True
    if isinstance(v, str):
        return len(v) <= 200 and "\x00" not in v
    if isinstance(v, numbers.Integral):
        return abs(int(v)) <= limits.LIMITS["model_kwarg"].high
    if isinstance(v, numbers.Real):
        return math.isfinite(v) and abs(v) <= limits.LIMITS["model_kwarg"].high
    return False


def _model(value: Any, confined: bool) -> Any:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        import torch.nn

        if isinstance(value, torch.nn.Module) and not confined:
            return value
        raise UserError(f"model must be a model's name, e.g. \"lenet5\", got {type(value).__name__}")
    from convscope.models import list_models

    if value not in list_models():
        raise UserError(f"unknown model {short(value)}{_did_you_mean(value, list_models())} "
                        f"(`convscope models` lists them)")
    return value


def _data(value: Any, confined: bool, allowed: Iterable[str | Path] | None) -> Any:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        if not confined and hasattr(value, "train") and hasattr(value, "classes"):
            return value  # a convscope.data Dataset object (the library)
        raise UserError(f"data must be a dataset's name ({', '.join(NAMED_DATASETS)}) or folder:PATH, "
                        f"got {type(value).__name__}")
    if len(value) > 4096 or "\x00" in value:
        raise UserError(f"data {short(value)} is not a dataset name or a folder path")
    if value.startswith("folder:"):
        return _folder(value[len("folder:"):], confined, allowed)
    from convscope.data import _canonical  # the dataset names and their aliases, in one place

    try:
        name = _canonical(value)
    except ValueError:
        raise UserError(f"unknown dataset {short(value)}: choose one of {', '.join(NAMED_DATASETS)}"
                        f"{'' if confined else ' or folder:PATH (your own images, one subfolder per class)'}") \
            from None
    return name if confined else value


def _folder(path: str, confined: bool, allowed: Iterable[str | Path] | None) -> str:
    if not path.strip():
        raise UserError("folder: needs a path, e.g. folder:~/pictures/pets")
    if not confined and allowed is None:
        return "folder:" + path
    real = Path(path).expanduser().resolve()
    folders = [Path(a).expanduser().resolve() for a in allowed or ()]
    if real not in folders:
        where = ", ".join(str(f) for f in folders)[:300] if folders else "none"
        raise UserError(f"folder:{short(path)} is not a folder this server "
                        f"may read (it may read: {where}); start it with `convscope serve --train-folder DIR` "
                        f"to train on DIR")
    return f"folder:{real}"


def _check_names(got: dict[str, Any]) -> None:
    """recipe, optimizer and schedule: names their registries know."""
    from convscope.train.config import RECIPES
    from convscope.train.optim import OPTIMIZERS, SCHEDULES

    for key, names in (("recipe", RECIPES), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
        if got[key] is not None and got[key] not in names:
            raise UserError(f"unknown {key} {short(got[key])}{_did_you_mean(got[key], names)} "
                            f"({key}s: {', '.join(names)})")
    augment = got["overrides"].get("augment")
    if augment is not None:
        from convscope.train.augment import PRESETS

        if augment not in ("auto", *PRESETS):
            raise UserError(f"unknown augment {short(augment)}{_did_you_mean(augment, PRESETS)} "
                            f"(choose auto, {', '.join(PRESETS)})")


def _device(text: str) -> str:
    import argparse

    try:
        return limits.device(text)
    except argparse.ArgumentTypeError as exc:
        raise UserError(f"device {str(exc).replace(repr(text), short(text))}"[:300]) from None


def _out(value: Any, got: dict[str, Any], runs_root: str | Path | None) -> Path | None:
    if value is not None and value != "" and not isinstance(value, (str, Path)):
        raise UserError(f"out must be a folder name, e.g. \"my-run\", got {type(value).__name__} {short(value)}")
    text = str(value) if value not in (None, "") else None
    if text is not None and (len(text) > 1024 or "\x00" in text):
        raise UserError(f"out {short(text)} is not a folder path (too long, or a NUL in it)")
    if runs_root is None:
        if text is None and got["resume"]:
            raise UserError("--resume needs --out RUN (the run folder to continue)")
        return Path(text) if text is not None else None
    root = Path(runs_root).expanduser().resolve()
    if text is None:
        named = TrainRequest(model=got["model"], data=got["data"], recipe=got["recipe"])
        return default_out(root, named.model_name() or "model", named.data_name() or "data")
    if Path(text).is_absolute() or text.startswith("~"):
        raise UserError(f"out {short(text)} must be a folder name inside the runs folder (e.g. \"my-run\"), "
                        f"not an absolute path: this server writes only under {root}")
    target = (root / text).resolve()
    if root not in target.parents:
        raise UserError(f"out {short(text)} leads outside the runs folder (.., or a link): this server writes "
                        f"only under {root}; give a name inside it, e.g. \"my-run\"")
    return target


def default_out(root: Path, model: str, data: str) -> Path:
    """ROOT/MODEL-DATA, or ROOT/MODEL-DATA-2, -3, ... the first that does not exist yet."""
    base = Path(root) / f"{model}-{data}".replace(":", "-").replace("/", "-")
    out, i = base, 2
    while out.exists():
        out, i = base.with_name(f"{base.name}-{i}"), i + 1
    return out
