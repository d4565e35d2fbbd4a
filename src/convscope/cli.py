"""The `convscope` command: parse, call the library, print.

Each subcommand lives in its own module under `convscope.commands` and exposes
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`. Modules are
discovered, so adding a command never edits this file. Commands import their
heavy dependencies inside `run`, so `convscope --help` stays fast.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys
import traceback
from types import ModuleType, TracebackType

import convscope.commands as _commands
from convscope.errors import ConvscopeError, UserError, one_line

__all__ = ["UserError", "build_parser", "describe_error", "main"]


def _command_modules() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(_commands.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"convscope.commands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: getattr(m, "ORDER", 50))


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as the one line every other error is (no usage block)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from convscope import __version__

    parser = _Parser(
        prog="convscope",
        description="See, build, train, measure and transfer convolutional neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"convscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=_Parser)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def _debug() -> bool:
    return os.environ.get("CONVSCOPE_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Run one command; the one error boundary of the command line.

    A mistake the user can fix (convscope's own errors, a file that is missing,
    unreadable, corrupt or in the way, a full disk) is one line on stderr and exit
    status 2; Ctrl-C is exit 130; anything else is a bug: one line, exit 1.
    CONVSCOPE_DEBUG=1 shows the traceback instead.
    """
    from convscope.limits import check_options

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "_parser", None) is not None:
            check_options(args._parser, args)  # the one table of limits, for every command
    except SystemExit as exc:  # --help, --version, or argparse's own "error:" (status 2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        if _debug():
            raise
        print(f"\nconvscope {args.command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BrokenPipeError:  # `convscope ... | head`: the reader left; nothing to say
        _quiet_stdout()
        return 1
    except Exception as exc:
        if _debug():
            raise
        code, message = describe_error(exc)
        print(f"convscope {args.command}: {message}", file=sys.stderr)
        return code


def _quiet_stdout() -> None:
    try:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (so the interpreter's final flush is silent)
    except OSError:
        pass


# Libraries whose exceptions mean "this file is damaged", and the local variable of
# their loading frame that holds the file's name.
_FILE_READERS = (
    ("safetensors", ("filename", "path")),
    ("torch/serialization", ("f", "filename")),
    ("PIL", ("filename", "fp")),
    ("json", ()),
)


def _file_in_traceback(tb: TracebackType | None) -> tuple[str | None, str | None]:
    """(library, file name) of the innermost frame of a known file reader, if any."""
    found: tuple[str | None, str | None] = (None, None)
    while tb is not None:
        frame = tb.tb_frame
        where = frame.f_code.co_filename.replace(os.sep, "/")
        for lib, names in _FILE_READERS:
            if f"/{lib}/" in where or where.endswith(f"/{lib}.py"):
                for name in names:
                    value = frame.f_locals.get(name)
                    if isinstance(value, (str, os.PathLike)):
                        found = (lib, os.fspath(value))
                        break
                else:
                    found = (lib, found[1])
        tb = tb.tb_next
    return found


def _raised_by_convscope(tb: TracebackType | None) -> bool:
    """True when the innermost frame is convscope's own code (a message written for people)."""
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return False
    module = last.tb_frame.f_globals.get("__name__", "")
    return module == "convscope" or module.startswith("convscope.")


def _os_message(exc: OSError) -> str:
    name = exc.filename
    if name is None:
        return str(exc)
    reason = exc.strerror or str(exc)
    hint = {
        errno.ENOSPC: "free some space or choose another --out",
        errno.EDQUOT: "free some space or choose another --out",
        errno.EACCES: "check its permissions or choose another path",
        errno.EPERM: "check its permissions or choose another path",
        errno.EROFS: "choose a path on a writable disk",
        errno.ENOTDIR: "a folder on the way is a file; choose another path",
        errno.EISDIR: "it is a folder; give a file",
        errno.ENOENT: "check the path",
        errno.EEXIST: "remove it or choose another path",
        errno.ENAMETOOLONG: "choose a shorter path",
    }.get(exc.errno)
    return f"{name}: {reason}" + (f"; {hint}" if hint else "")


def describe_error(exc: BaseException) -> tuple[int, str]:
    """(exit status, one line) for an exception that reached the top of a command."""
    tb = exc.__traceback__
    if isinstance(exc, ConvscopeError):
        return 2, "error: " + one_line(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return 2, "error: out of memory; try a smaller --batch-size, a smaller --image-size or a smaller model"
    lib, filename = _file_in_traceback(tb)
    if type(exc).__name__ == "DecompressionBombError":
        from convscope.limits import too_large

        return 2, "error: " + one_line(too_large(filename or "the image"))
    if lib in ("safetensors", "torch/serialization") and not isinstance(exc, (OSError, ConvscopeError)) \
            or type(exc).__name__ == "SafetensorError":
        what = filename or ("a .safetensors weights file" if lib == "safetensors" else "a saved state file")
        return 2, (f"error: {what} is damaged or not a {'safetensors' if lib == 'safetensors' else 'torch'} "
                   f"file ({one_line(exc)[:120]}); restore it or train the run again")
    if isinstance(exc, OSError):  # FileNotFoundError, PermissionError, IsADirectoryError, ENOSPC, ...
        if type(exc).__name__ == "UnidentifiedImageError":
            return 2, f"error: {one_line(exc)}; use a PNG, JPEG, BMP, GIF, TIFF or WebP file"
        return 2, "error: " + one_line(_os_message(exc))
    if isinstance(exc, UnicodeDecodeError) and filename:
        return 2, f"error: {filename} is not a text file ({exc.reason})"
    if isinstance(exc, ValueError) and _raised_by_convscope(tb):
        # convscope's library still raises plain ValueError for bad input in places:
        # its messages are written for people.
        return 2, "error: " + one_line(exc)
    where = traceback.extract_tb(tb)[-1] if tb is not None else None
    at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
    return 1, (f"internal error: {type(exc).__name__}: {one_line(exc)[:200]}{at}; this is a bug in convscope. "
               "Set CONVSCOPE_DEBUG=1 for the traceback")


if __name__ == "__main__":
    raise SystemExit(main())
