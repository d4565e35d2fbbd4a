"""The `convscope` command: parse, call the library, print.

Each subcommand lives in its own module under `convscope.commands` and exposes
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`. Modules are
discovered, so adding a command never edits this file. Commands import their
heavy dependencies inside `run`, so `convscope --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from types import ModuleType

import convscope.commands as _commands
from convscope.errors import UserError  # kept here for code that imports it from the CLI


def _command_modules() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(_commands.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"convscope.commands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: getattr(m, "ORDER", 50))


def build_parser() -> argparse.ArgumentParser:
    from convscope import __version__

    parser = argparse.ArgumentParser(
        prog="convscope",
        description="See, build, train, measure and transfer convolutional neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"convscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"convscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Library errors raised for bad input carry a message written for people;
        # CONVSCOPE_DEBUG=1 shows the traceback instead.
        if os.environ.get("CONVSCOPE_DEBUG"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"convscope {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
