"""The lecture companion runs: every ```python block, every ```console command, every link.

How docs/lecture.md (and docs/lecture/*.md) are checked:

- ```python blocks are doctests (`>>>` lines and the output they print), run
  section by section (a `## ` heading starts one): the blocks of a section
  share one namespace, each section starts fresh. NORMALIZE_WHITESPACE and
  ELLIPSIS are on, so `...` stands for any text.
- ```console blocks hold `$ convscope ...` lines followed by what the command
  prints (stdout, then stderr); they run through convscope.cli.main in this
  process and the output must match (same flags as the doctests).
- ```sh blocks are the commands a reader runs next (training, serving): they
  are not run, but each `convscope ...` line must parse, so a renamed option
  or command breaks the test; so must every `convscope ...` code span in the text.
- every relative link and image must point to a file that exists (and, within
  the lecture's pages, to a heading that exists).
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
DOCS = ROOT / "docs"
PAGES = [DOCS / "lecture.md", *sorted((DOCS / "lecture").glob("*.md"))]
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(path: Path) -> list[dict]:
    """Fenced blocks of a page: {"lang", "text", "line" (of the first code line), "section"}."""
    out, section, current = [], "(top)", None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = FENCE.match(line)
        if current is None and fence:
            current = {"lang": fence.group(1), "lines": [], "line": number + 1, "section": section}
        elif current is not None and line.rstrip() == "```":
            out.append({**current, "text": "\n".join(current.pop("lines")) + "\n"})
            current = None
        elif current is not None:
            current["lines"].append(line)
        elif line.startswith("## "):
            section = line[3:].strip()
    assert current is None, f"{path.name}: a code fence opened on line {current['line'] - 1} is never closed"
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _sections() -> list[tuple[Path, str]]:
    seen = []
    for page in PAGES:
        for b in blocks(page):
            if b["lang"] == "python" and (page, b["section"]) not in seen:
                seen.append((page, b["section"]))
    return seen


def _of_lang(lang: str) -> list[tuple[Path, dict]]:
    return [(page, b) for page in PAGES for b in blocks(page) if b["lang"] == lang]


@pytest.mark.parametrize("page, section", _sections(), ids=lambda v: _rel(v) if isinstance(v, Path) else v[:40])
def test_python_blocks(page, section, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files a block writes land here, not in the tree
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    globs: dict = {"__name__": "__lecture__"}
    ran = 0
    for b in blocks(page):
        if b["lang"] != "python" or b["section"] != section:
            continue
        test = parser.get_doctest(b["text"], globs, f"{page.name} [{section}]", str(page), b["line"] - 1)
        assert test.examples, f"{_rel(page)} line {b['line']}: a python block without `>>>` examples is never run"
        out = io.StringIO()
        runner.run(test, out=out.write, clear_globs=False)
        globs = test.globs  # DocTest copies the namespace: carry it to the section's next block
        ran += len(test.examples)
        assert runner.failures == 0, f"{_rel(page)}, section {section!r}:\n{out.getvalue()}"
    assert ran


def _console_cases() -> list:
    cases = []
    for page, b in _of_lang("console"):
        parts = re.split(r"^\$ ", b["text"], flags=re.M)
        assert parts[0].strip() == "", f"{_rel(page)} line {b['line']}: a console block starts with `$ convscope`"
        offset = 0
        for part in parts[1:]:
            command, _, expected = part.partition("\n")
            cases.append(pytest.param(command, expected, id=f"{page.name}:{b['line'] + offset}"))
            offset += part.count("\n")
    return cases


@pytest.mark.parametrize("command, expected", _console_cases())
def test_console_blocks(command, expected, tmp_path, monkeypatch):
    from convscope.cli import main

    argv = shlex.split(command)
    assert argv[0] == "convscope", f"only convscope commands run here: {command!r}"
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv[1:])
    got = out.getvalue() + err.getvalue()
    checker = doctest.OutputChecker()
    assert checker.check_output(expected, got, FLAGS), (
        f"$ {command}  (exit status {status})\n"
        + checker.output_difference(doctest.Example(command, expected), got, FLAGS))
    assert (status == 0) == ("error:" not in expected), f"$ {command}: exit status {status}"


def _sh_commands() -> list:
    """`convscope ...` lines of ```sh blocks, and `convscope ...` code spans in the prose ("Next: ...")."""
    cases = []
    for page, b in _of_lang("sh"):
        for i, line in enumerate(b["text"].splitlines()):
            words = shlex.split(line, comments=True)
            if words and words[0].endswith("convscope"):
                cases.append(pytest.param(words, id=f"{page.name}:{b['line'] + i}"))
    for page in PAGES:
        prose = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
        for span in re.findall(r"`(convscope [^`]+)`", prose):
            words = shlex.split(span)
            words += ["--help"] if len(words) == 2 else []  # a bare command name: it must exist
            cases.append(pytest.param(words, id=f"{page.name}:`{span}`"))
    return cases


@pytest.mark.parametrize("words", _sh_commands())
def test_sh_commands_parse(words):
    from convscope.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as exc:
            assert exc.code == 0, f"`{' '.join(words)}` does not parse:\n{err.getvalue()}"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_links_resolve(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    links = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert links, f"{_rel(page)} links nothing"
    broken = []
    for link in links:
        target, _, anchor = link.partition("#")
        path = (page.parent / target) if target else page
        # headings are checked in the lecture's own pages; other pages only need to exist
        # (their authors may retitle a section without running this test)
        if not path.exists() or (anchor and path.resolve() in PAGES and anchor not in _anchors(path)):
            broken.append(link)
    assert not broken, f"{_rel(page)} links files or headings that do not exist: {broken}"


def test_every_lecture_figure_is_shown_and_built():
    from convscope import docs_build

    shown = set()
    for page in PAGES:
        shown |= {Path(t).name for t in LINK.findall(page.read_text()) if "img/lecture-" in t}
    built = {f"lecture-{name}.png" for name in docs_build.FIGURES}
    on_disk = {p.name for p in (DOCS / "img").glob("lecture-*.png")}
    assert shown <= on_disk, f"shown but not generated: {shown - on_disk} (run `make docs`)"
    assert on_disk <= built, f"in docs/img but no code builds them: {on_disk - built}"
    assert built <= shown, f"built but the guide never shows them: {built - shown}"
