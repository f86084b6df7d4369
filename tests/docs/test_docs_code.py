"""Every code block of the user guide and the README runs, as a reader would run it.

Conventions for fenced blocks in ``docs/*.md`` and ``README.md``:

- ```` ```python ````: run, in page order, in one fresh process per page, in a temporary working
  folder, so later blocks use the names earlier ones defined.
- ```` ```python title="NAME" ```` (any language with a ``title``, e.g. ``toml``): a file the
  reader saves: written to ``NAME`` in the working folder, not run.
- ```` ```bash ```` / ```` ```console ````: each line that starts with ``labsession `` or
  ``python `` (in a console block after ``$ ``; ``NAME=value`` settings may come first) is run
  by bash in the working folder, ``labsession`` being ``sys.executable -m labsession``; it must
  exit with status 0. Other lines (comments, output, other programs) are not run.
- ```` ```toml ```` / ```` ```yaml ```` / ```` ```json ```` without a title: must parse.
- ```` ```text ````: shown, never run (trees, output).
- ``<!-- no-test -->`` on the line before a block: shown, never run (a window, a batch system).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NO_TEST = "<!-- no-test -->"

_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_TITLE = re.compile(r"""title=(?:"([^"]*)"|'([^']*)'|(\S+))""")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")
PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell", "console"}
DATA = {"toml", "yaml", "yml", "json"}


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its title, its text, and whether it is run."""

    page: Path
    line: int  # line number (1-based) of the block's first line of code
    lang: str
    title: str | None
    code: str
    no_test: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        """``python``, ``file``, ``commands``, ``data``, ``text`` or ``skip`` (marked)."""
        if self.no_test:
            return "skip"
        if self.title:
            return "file"
        if self.lang in PYTHON:
            return "python"
        if self.lang in SHELL:
            return "commands"
        if self.lang in DATA:
            return "data"
        return "text"

    def commands(self) -> list[str]:
        """The command lines a shell block runs (continuation lines joined)."""
        lines = self.code.splitlines()
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            if self.lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:].strip()
            while line.endswith("\\") and i < len(lines):
                line = line[:-1] + " " + lines[i].strip()
                i += 1
            if is_command(line):
                out.append(line)
        return out


def is_command(line: str) -> bool:
    """Whether a shell line runs ``labsession`` or ``python`` (after ``NAME=value`` settings)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return False
    while words and _ENV.match(words[0]):
        words = words[1:]
    return bool(words) and words[0] in ("labsession", "python")


def parse(page: Path) -> list[Block]:
    """Every fenced block of ``page``, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        start = i + 1
        i = start
        body: list[str] = []
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        title = _TITLE.search(info)
        blocks.append(
            Block(
                page=page,
                line=start + 1,
                lang=info.split()[0].lower() if info else "",
                title=next(g for g in title.groups() if g is not None) if title else None,
                code="\n".join(body) + "\n",
                no_test=before == NO_TEST,
            )
        )
    return blocks


def pages() -> list[Path]:
    """The pages whose blocks are tested: every ``docs/*.md`` and the README."""
    return [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]


#: Seconds one page's blocks may take (the slowest page, on a 2-core machine, takes about a
#: minute; the first motion correction on a fresh machine also compiles the flow kernels).
PAGE_TIMEOUT_S = 420
#: ``<!-- no-test -->`` is for what cannot run in a test (a window, a batch system, an
#: install): at most this many in all.
MAX_NO_TEST = 12


def blocks_to_run(page: Path) -> list[dict]:
    """What the driver (``_driver.py``) gets for ``page``: its blocks that run, in order."""
    return [
        {
            "where": b.where,
            "kind": b.kind,
            "page": str(b.page),
            "line": b.line,
            "lang": b.lang,
            "title": b.title,
            "code": b.code,
            "commands": b.commands() if b.kind == "commands" else [],
        }
        for b in parse(page)
        if b.kind not in ("text", "skip")
    ]


def _runnable(page: Path) -> bool:
    return any(b.kind in ("python", "commands", "data") for b in parse(page))


@pytest.mark.timeout(PAGE_TIMEOUT_S + 60)
@pytest.mark.parametrize("page", [p for p in pages() if _runnable(p)], ids=lambda p: p.name)
def test_page_code_runs(page, tmp_path):
    """The page's blocks, in order, in one fresh process in an empty folder, all succeed."""
    payload = blocks_to_run(page)
    work = tmp_path / "work"
    work.mkdir()
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps(payload), encoding="utf-8")
    driver = tmp_path / "docs_driver.py"
    shutil.copyfile(Path(__file__).with_name("_driver.py"), driver)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", "COLUMNS": "100"}
    env.pop("DISPLAY", None)
    try:
        done = subprocess.run(
            [sys.executable, str(driver), str(spec)],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=PAGE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        pytest.fail(f"{page.name}: blocks still running after {PAGE_TIMEOUT_S} s\n{output[-6000:]}")
    assert done.returncode == 0, f"{page.name}: a block failed\n{done.stdout[-8000:]}"
    ran = [line for line in done.stdout.splitlines() if line.startswith("--- ")]
    assert len(ran) == len(payload), done.stdout[-4000:]


def test_every_block_says_how_it_is_treated():
    """No fence without a language; a run command is in a block that runs; markers are rare."""
    problems = []
    no_test = 0
    for page in pages():
        for block in parse(page):
            no_test += block.no_test
            if not block.lang:
                problems.append(f"{block.where}: fence without a language (```text for output)")
            if block.lang in SHELL and not block.no_test:
                for line in block.code.splitlines():
                    stripped = line.strip()
                    if stripped.startswith(("labsession", "python")) and not is_command(stripped):
                        problems.append(f"{block.where}: {stripped!r} does not parse as a command")
    assert not problems, "\n".join(problems)
    assert no_test <= MAX_NO_TEST, f"{no_test} blocks marked {NO_TEST}: keep them rare"


def test_the_block_reader_sees_each_kind(tmp_path):
    """The conventions above, on a page written for the purpose."""
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python\nx = 1\n```\n\n"
        '```python title="tool.py"\nprint(1)\n```\n\n'
        "```console\n$ labsession info s.zip   # the session\nstreams: 1\n"
        "$ FOO=1 python tool.py \\\n    --flag\n$ pip install x\n```\n\n"
        "- item\n\n    ```toml\n    a = 1\n    ```\n\n"
        "<!-- no-test -->\n```bash\nlabsession gui\n```\n\n```text\ntree\n```\n",
        encoding="utf-8",
    )
    blocks = parse(page)
    assert [b.kind for b in blocks] == ["python", "file", "commands", "data", "skip", "text"]
    assert blocks[0].line == 4
    assert blocks[1].title == "tool.py"
    assert blocks[2].commands() == [
        "labsession info s.zip   # the session",
        "FOO=1 python tool.py  --flag",
    ]
    assert blocks[3].code == "a = 1\n"
