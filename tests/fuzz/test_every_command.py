"""Every subcommand against generated bad input: exit 2, one line naming the argument
or file, no traceback, and the finished run beside it left byte-identical.

The commands are discovered from `convscope.cli.build_parser()`, so a command
added by any branch is fuzzed without editing this file. What each argument is
(a run, an image, an output path, a number) is read from its name, metavar and
type; the generated values are ones the one table of limits (`convscope.limits`)
refuses, so no case ever starts real work.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._bad import config_damage, png_header, weights_damage
from .conftest import assert_fails_well, cli, snapshot

RUN_DESTS = {"run", "run_dir", "target", "source"}
IMAGE_DESTS = {"image", "images"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    from convscope.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = _subparsers()


def _role(action: argparse.Action) -> str:
    meta = str(action.metavar or "")
    if action.dest in RUN_DESTS or "RUN" in meta:
        return "run"
    if action.dest in IMAGE_DESTS or "IMAGE" in meta:
        return "image"
    if action.dest == "out":
        return "out-file" if Path(meta).suffix or "FILE" in meta.upper() else "out-dir"
    return "other"


def _suffix(action: argparse.Action) -> str:
    """The extension an output file takes: from its metavar (FILE.png) or its help (e.g. model.onnx)."""
    import re

    meta = Path(str(action.metavar or ""))
    if meta.suffix:
        return meta.suffix
    found = re.search(r"\b[A-Za-z_]\w+(\.[a-z][a-z0-9]{1,4})\b", str(action.help or ""))  # not "e.g."
    return found.group(1) if found else ".out"


def _numeric(action: argparse.Action) -> str | None:
    """"int"/"float" for an option that takes a number (by its type or its limit), else None."""
    from convscope.limits import LIMITS, Limit

    limit = getattr(action.type, "limit", None)
    if isinstance(limit, Limit):
        return limit.kind.__name__
    if action.type in (int, float):
        return action.type.__name__
    if action.dest in LIMITS and action.type is None and action.option_strings:
        return LIMITS[action.dest].kind.__name__
    return None


def _valid(action: argparse.Action, ctx: dict) -> list[str]:
    """A value that lets the rest of the command line parse."""
    role = _role(action)
    if role == "run":
        return [str(ctx["run"])]
    if role == "image":
        return [str(ctx["image"])]
    if role == "out-file":
        return [str(ctx["tmp"] / f"out{_suffix(action)}")]
    if role == "out-dir":
        return [str(ctx["tmp"] / "out")]
    if action.dest == "data":
        return ["synthetic"]
    if action.dest == "layer":
        return ["conv1"]
    if action.dest == "model":
        return ["lenet5"]
    if action.choices:
        return [str(next(iter(action.choices)))]
    return ["1"]


def base_argv(name: str, ctx: dict, *, skip: str | None = None) -> list[str]:
    """`name` with every positional and required option filled with a usable value."""
    parser = COMMANDS[name]
    words: list[str] = [name]
    for action in parser._actions:
        if action.dest in (skip, "help") or isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            if action.nargs in ("*", "?"):
                continue
            words += _valid(action, ctx)
        elif action.required or (action.dest in RUN_DESTS and _role(action) == "run"):
            words += [action.option_strings[0], *_valid(action, ctx)]
    return words


def _actions(name: str, want) -> list[argparse.Action]:
    return [a for a in COMMANDS[name]._actions if want(a)]


def _cases(want) -> list:
    return [pytest.param(name, a.dest, id=f"{name}:{a.dest}") for name in COMMANDS for a in _actions(name, want)]


def _action(name: str, dest: str) -> argparse.Action:
    return next(a for a in COMMANDS[name]._actions if a.dest == dest)


@pytest.fixture()
def ctx(finished_run, digit_png, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # defaults like kernels.png land here, not in the repository
    return {"run": finished_run, "image": digit_png, "tmp": tmp_path}


@pytest.fixture(scope="module", autouse=True)
def the_finished_run_is_never_touched(finished_run):
    before = snapshot(finished_run)
    yield
    assert snapshot(finished_run) == before, "a fuzz case changed the finished run"


def test_every_command_is_discovered():
    assert {"train", "evaluate", "predict", "finetune", "serve", "kernels", "saliency"} <= set(COMMANDS)


# ---- numbers ------------------------------------------------------------------------------------

def _is_bad(action: argparse.Action, text: str) -> bool:
    """True when the one table of limits (or the number's own syntax) refuses `text`."""
    from convscope.limits import LIMITS, Limit

    kind = _numeric(action)
    try:
        value = int(text, 10) if kind == "int" else float(text)
    except ValueError:
        return True
    limit = getattr(action.type, "limit", None)
    limit = limit if isinstance(limit, Limit) else LIMITS.get(action.dest)
    if limit is not None:
        return limit.check(value) is not None
    return kind == "float" and not math.isfinite(value)


NUMBER_TEXT = st.one_of(
    st.sampled_from(["-1", "0", "-0.5", "nan", "inf", "-inf", "1e308", "abc", "", "1.5", "0x10", "99999999999",
                     "１", "1_000", " 3", "NaN"]),
    st.integers(min_value=-10**15, max_value=10**15).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)


@pytest.mark.parametrize("name, dest", _cases(lambda a: a.option_strings and _numeric(a)))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=NUMBER_TEXT)
def test_bad_numbers(ctx, name, dest, text):
    action = _action(name, dest)
    if not _is_bad(action, text):
        return  # a good value: the command would start real work
    argv = [*base_argv(name, ctx, skip=dest), f"{action.option_strings[0]}={text}"]
    res = cli(*argv)
    assert_fails_well(res, *action.option_strings)
    assert len(res.err.strip().splitlines()) == 1, str(res)


# ---- runs ---------------------------------------------------------------------------------------

def _bad_run(kind: str, tmp: Path, good: Path) -> tuple[Path, tuple[str, ...]]:
    """A folder that is not a usable run, and the names a message may name it by."""
    import shutil

    if kind == "missing":
        return tmp / "no" / "such-run", (str(tmp / "no" / "such-run"),)
    if kind == "a-file":
        path = tmp / "a-file"
        path.write_text("x")
        return path, (str(path),)
    if kind == "empty-folder":
        path = tmp / "empty"
        path.mkdir()
        return path, (str(path), "config.json")
    path = tmp / kind
    shutil.copytree(good, path)
    if kind.startswith("weights-"):
        (path / "model.safetensors").write_bytes(weights_damage((good / "model.safetensors").read_bytes())[kind[8:]])
        return path, ("model.safetensors",)
    import json

    (path / "config.json").write_text(config_damage(json.loads((good / "config.json").read_text()))[kind[7:]])
    return path, ("config.json",)


RUN_KINDS = ["missing", "a-file", "empty-folder", "weights-zero-byte", "weights-truncated", "weights-random",
             "weights-header-only", "config-a-list", "config-no-model", "config-std-zero", "config-not-json"]


@pytest.mark.parametrize("kind", RUN_KINDS)
@pytest.mark.parametrize("name, dest", _cases(lambda a: _role(a) == "run" and a.dest in RUN_DESTS))
def test_bad_runs(ctx, name, dest, kind):
    bad, names = _bad_run(kind, ctx["tmp"], ctx["run"])
    action = _action(name, dest)
    argv = base_argv(name, ctx, skip=dest)
    argv += [str(bad)] if not action.option_strings else [action.option_strings[0], str(bad)]
    if not action.option_strings:  # keep positionals in order: rebuild with the bad run first
        argv = [name, str(bad), *base_argv(name, ctx, skip=dest)[1:]]
    res = cli(*argv)
    if res.code == 0 and (kind.startswith("weights-") or kind == "config-std-zero"):
        return  # a command that reads no weights (summary: the architecture only) may succeed
    if res.code == 0 and "NAME" in str(action.metavar) and kind in ("missing",) and "/" not in str(bad):
        return
    assert_fails_well(res, *names)


# ---- images ------------------------------------------------------------------------------------

def _bad_image(kind: str, tmp: Path) -> Path:
    path = tmp / f"{kind}.png"
    if kind == "folder":
        path.mkdir()
    elif kind == "bomb":
        path.write_bytes(png_header(30000, 30000))
    elif kind == "over-limit":
        path.write_bytes(png_header(9000, 9000))
    elif kind == "random":
        path.write_bytes(os.urandom(512))
    elif kind == "zero-byte":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("kind", ["missing", "folder", "bomb", "over-limit", "random", "zero-byte"])
@pytest.mark.parametrize("name, dest", _cases(lambda a: _role(a) == "image"))
def test_bad_images(ctx, name, dest, kind):
    bad = _bad_image(kind, ctx["tmp"])
    words = []
    for word in base_argv(name, ctx):
        words.append(str(bad) if word == str(ctx["image"]) else word)
    res = cli(*words)
    assert_fails_well(res, str(bad))
    if kind in ("bomb", "over-limit"):
        assert "megapixels" in res.err, str(res)


# ---- output paths ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, dest", _cases(lambda a: _role(a).startswith("out-")))
def test_out_under_a_file(ctx, name, dest):
    action = _action(name, dest)
    blocker = ctx["tmp"] / "blocker"
    blocker.write_text("x")
    suffix = _suffix(action) if _role(action) == "out-file" else ""
    argv = [*base_argv(name, ctx, skip=dest), action.option_strings[0], str(blocker / f"inside{suffix}")]
    assert_fails_well(cli(*argv), str(blocker))


@pytest.mark.parametrize("name, dest", _cases(lambda a: _role(a) == "out-file"))
def test_out_with_another_extension(ctx, name, dest):
    action = _action(name, dest)
    target = ctx["tmp"] / "picture.jpeg.txt"
    argv = [*base_argv(name, ctx, skip=dest), action.option_strings[0], str(target)]
    res = cli(*argv)
    assert not target.exists() or res.code == 0
    if res.code != 0:
        assert_fails_well(res, str(target))


@pytest.mark.parametrize("name", [n for n in COMMANDS if any(a.dest == "overwrite" for a in COMMANDS[n]._actions)
                                  and any(_role(a) == "out-dir" for a in COMMANDS[n]._actions)])
def test_a_finished_run_in_out_is_kept(ctx, name):
    """A run-writing command pointed at a finished run, without --overwrite, refuses."""
    before = snapshot(ctx["run"])
    argv = [*base_argv(name, ctx, skip="out"), "--out", str(ctx["run"])]
    res = cli(*argv)
    assert_fails_well(res, str(ctx["run"]))
    assert "--overwrite" in res.err
    assert snapshot(ctx["run"]) == before


@pytest.mark.parametrize("name, dest", _cases(lambda a: a.option_strings and _numeric(a) == "float"))
def test_nan_into_a_finished_runs_folder_changes_nothing(ctx, name, dest):
    """--overwrite with a bad number must not cost the finished run anything."""
    action = _action(name, dest)
    if not any(a.dest == "out" for a in COMMANDS[name]._actions):
        pytest.skip("no --out")
    before = snapshot(ctx["run"])
    argv = [*base_argv(name, ctx, skip="out"), "--out", str(ctx["run"]), f"{action.option_strings[0]}=nan"]
    if any(a.dest == "overwrite" for a in COMMANDS[name]._actions):
        argv.append("--overwrite")
    res = cli(*argv)
    assert_fails_well(res, *action.option_strings)
    assert snapshot(ctx["run"]) == before
