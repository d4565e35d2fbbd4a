"""What several commands share: option groups, `--model-arg` parsing, `UserError`.

Option choices come from the registries that own them (`train.optim`,
`train.augment`), read only when a choice is checked or the help is shown:
building the parser never imports torch, so `convscope conv` stays light.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from convscope.errors import UserError

__all__ = ["UserError", "RegistryChoices", "add_data_options", "add_optim_options", "add_runtime_options",
           "add_output_options", "add_model_arg_option", "parse_model_args", "runtime", "print_experiment"]


class RegistryChoices:
    """argparse choices read lazily from `module.attribute` (a tuple of names), plus `extra`."""

    def __init__(self, module: str, attribute: str, *, extra: tuple[str, ...] = ()) -> None:
        self.module, self.attribute, self.extra = module, attribute, extra

    def names(self) -> tuple[str, ...]:
        return (*self.extra, *getattr(importlib.import_module(self.module), self.attribute))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, value: object) -> bool:
        return value in self.names()

    def __repr__(self) -> str:
        return ", ".join(self.names())


OPTIMIZERS = RegistryChoices("convscope.train.optim", "OPTIMIZERS")
SCHEDULES = RegistryChoices("convscope.train.optim", "SCHEDULES")
AUGMENTS = RegistryChoices("convscope.train.augment", "PRESETS", extra=("auto",))


def _choice(p: argparse.ArgumentParser, flag: str, choices: RegistryChoices, help: str, **kw: Any) -> None:
    # an explicit metavar keeps argparse from listing (importing) the choices while building the parser
    p.add_argument(flag, choices=choices, metavar="NAME", help=f"{help}: %(choices)s", **kw)


def add_data_options(p: argparse.ArgumentParser, *, required: bool = False, default_help: str = "") -> None:
    """--data, --image-size, --data-root, --download."""
    p.add_argument("--data", required=required,
                   help="mnist, fashion-mnist, cifar10, synthetic or folder:PATH" + default_help)
    p.add_argument("--image-size", type=int, help="resize the dataset's images to this square size")
    p.add_argument("--data-root", help="where the dataset files are")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")


def add_optim_options(p: argparse.ArgumentParser, *, epochs: int | None = None, epochs_help: str = "",
                      lr: float | None = None, lr_help: str = "peak learning rate",
                      batch_size: int | None = None, optimizer: str | None = None) -> None:
    """--epochs, --batch-size, --lr, --optimizer, --weight-decay, --augment, --seed."""
    p.add_argument("--epochs", type=int, default=epochs, help=epochs_help or None)
    p.add_argument("--batch-size", type=int, default=batch_size, help="global batch size (split over DDP processes)")
    p.add_argument("--lr", type=float, default=lr, help=lr_help)
    _choice(p, "--optimizer", OPTIMIZERS, "the optimizer", default=optimizer)
    p.add_argument("--weight-decay", type=float)
    _choice(p, "--augment", AUGMENTS, "batched augmentation (auto: by the dataset's kind)")
    p.add_argument("--seed", type=int, default=0)


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--threads", type=int, help="CPU threads (default: the idle cores, see docs/training.md)")


def add_output_options(p: argparse.ArgumentParser, *, json_help: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run already in --out (the old one is kept until the new one has an epoch)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help=json_help)


def add_model_arg_option(p: argparse.ArgumentParser, example: str = "dropout=0.2") -> None:
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help=f"keyword for the model builder, e.g. {example} (repeatable)")


def parse_model_args(items: list[str]) -> dict[str, Any]:
    """["dropout=0.2", "small_input=true"] -> {"dropout": 0.2, "small_input": True} (JSON values, else strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--model-arg {item!r} must look like KEY=VALUE, e.g. dropout=0.2")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@contextlib.contextmanager
def runtime(args: argparse.Namespace) -> Iterator[Any]:
    """The device and thread settings of --device/--threads, undone afterwards."""
    from convscope.train.runtime import setup, teardown

    rt = setup(args.device, args.threads)
    try:
        yield rt
    finally:
        teardown(rt)


def print_experiment(args: argparse.Namespace, result: dict, format_table: Callable[[dict], str],
                     figure: str) -> None:
    """An experiment's results.json (--json), or its table and where its files are."""
    if args.json:
        print(json.dumps(result))
        return
    print(format_table(result))
    print(f"-> {Path(args.out) / 'results.json'}, {Path(args.out) / figure}")
